"""edge.config.Settings.from_env and request id sanitising."""

from __future__ import annotations

import pytest

from edge.config import Settings
from edge.middlewares import MAX_REQUEST_ID_LENGTH, request_ids_from


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.auth_addr == "127.0.0.1:50051"
    assert settings.ratelimit_addr == "127.0.0.1:50052"
    assert settings.router_addr == "127.0.0.1:50053"
    assert settings.billing_addr == "127.0.0.1:50054"
    assert (settings.auth_cache_ttl_s, settings.models_ttl_s, settings.keepalive_s) == (5, 10, 15)
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert settings.request_timeout_s == 600 and settings.metrics_addr == ""
    assert settings.max_upload_bytes == 26 * 1024 * 1024 and settings.report_cost is True


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("0", False), ("OFF", False),
                                               ("true", True), ("1", True), ("", True)])
def test_report_cost_switch(raw: str, expected: bool) -> None:
    assert Settings.from_env({"EDGE_REPORT_COST": raw}).report_cost is expected


def test_upload_limit_and_a_bad_switch() -> None:
    assert Settings.from_env({"EDGE_MAX_UPLOAD_BYTES": "2048"}).max_upload_bytes == 2048
    with pytest.raises(ValueError, match="EDGE_REPORT_COST"):
        Settings.from_env({"EDGE_REPORT_COST": "maybe"})


def test_overrides_and_port_precedence() -> None:
    env = {
        "EDGE_HOST": "0.0.0.0", "APIRELAY_PORT": "9000", "ROUTER_SERVICE_ADDR": "dns:///router",
        "EDGE_AUTH_CACHE_TTL_S": "1.5", "EDGE_MAX_BODY_BYTES": "1024",
        "EDGE_METRICS_ADDR": "127.0.0.1:9100", "EDGE_SHUTDOWN_GRACE_S": "30",
    }
    settings = Settings.from_env(env)
    assert (settings.host, settings.port, settings.router_addr) == ("0.0.0.0", 9000, "dns:///router")
    assert (settings.auth_cache_ttl_s, settings.max_body_bytes) == (1.5, 1024)
    assert (settings.metrics_addr, settings.shutdown_grace_s) == ("127.0.0.1:9100", 30)
    assert Settings.from_env({**env, "EDGE_PORT": "8181"}).port == 8181


@pytest.mark.parametrize(
    ("env", "name"),
    [({"EDGE_KEEPALIVE_S": "soon"}, "EDGE_KEEPALIVE_S"), ({"EDGE_PORT": "x"}, "PORT"),
     ({"EDGE_REQUEST_TIMEOUT_S": "0"}, "EDGE_REQUEST_TIMEOUT_S")],
)
def test_bad_numbers_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env(env)


def test_request_id_is_kept_cleaned_capped_or_made() -> None:
    assert request_ids_from("abc-123_x.y:z")[1] == "abc-123_x.y:z"
    assert request_ids_from("a b\r\nc<d>")[1] == "abcd"
    assert len(request_ids_from("x" * 500)[1]) == MAX_REQUEST_ID_LENGTH
    made, shown = request_ids_from("<>")
    assert made == shown and made.startswith("req_")
    assert request_ids_from(None)[0].startswith("req_")


def test_a_client_request_id_is_shown_but_the_internal_id_is_unique() -> None:
    first, shown = request_ids_from("client-7")
    second, _ = request_ids_from("client-7")
    assert shown == "client-7"
    assert first != second
    assert first.startswith("client-7.") and second.startswith("client-7.")


def test_batch_limits() -> None:
    defaults = Settings.from_env({})
    assert (defaults.batch_max_in_flight, defaults.batch_max_items) == (2, 128)
    env = {"EDGE_BATCH_MAX_IN_FLIGHT": "4", "EDGE_BATCH_MAX_ITEMS": "32"}
    settings = Settings.from_env(env)
    assert (settings.batch_max_in_flight, settings.batch_max_items) == (4, 32)
    with pytest.raises(ValueError, match="EDGE_BATCH_MAX_ITEMS"):
        Settings.from_env({"EDGE_BATCH_MAX_ITEMS": "0"})


def test_the_config_file_is_apirelay_config() -> None:
    assert Settings.from_env({}).config_path == ""
    assert Settings.from_env({"APIRELAY_CONFIG": "/etc/apirelay.yaml"}).config_path == (
        "/etc/apirelay.yaml")
