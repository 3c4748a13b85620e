"""Settings.from_env: defaults, parsing and refusals."""

from __future__ import annotations

import pytest

from services.ratelimit.config import Settings
from services.ratelimit.core import FailMode


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.listen_addr == "127.0.0.1:50052"
    assert settings.redis_url == "" and settings.redis_prefix == "apirelay:rl:"
    assert settings.lease_ttl_ms == 600_000 and settings.window_ms == 60_000
    assert settings.replicas == 1 and settings.fail_mode is FailMode.OPEN
    assert settings.metrics_addr == ""


def test_values_from_the_environment() -> None:
    settings = Settings.from_env({
        "RATELIMIT_LISTEN_ADDR": "0.0.0.0:6000",
        "RATELIMIT_REDIS_URL": "redis://127.0.0.1:6379/0",
        "RATELIMIT_REDIS_PREFIX": "x:",
        "RATELIMIT_LEASE_TTL_S": "30",
        "RATELIMIT_REPLICAS": "4",
        "RATELIMIT_FAIL_MODE": "CLOSED",
        "RATELIMIT_WINDOW_S": "0.5",
    })
    assert settings.listen_addr == "0.0.0.0:6000"
    assert settings.redis_prefix == "x:" and settings.lease_ttl_ms == 30_000
    assert settings.replicas == 4 and settings.fail_mode is FailMode.CLOSED
    assert settings.window_ms == 500


@pytest.mark.parametrize(
    ("name", "value"),
    [("REPLICAS", "0"), ("FAIL_MODE", "maybe"), ("LEASE_TTL_S", "0"), ("WINDOW_S", "-1"),
     ("REPLICAS", "two")],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({f"RATELIMIT_{name}": value})
