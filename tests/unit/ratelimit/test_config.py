"""Settings.from_env: defaults, parsing and refusals."""

from __future__ import annotations

import pytest

from services.ratelimit import defaults
from services.ratelimit.config import Settings
from services.ratelimit.outage import FailMode


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.listen_addr == "127.0.0.1:50052"
    assert settings.redis_url == "" and settings.redis_prefix == "apirelay:rl:"
    assert settings.lease_ttl_ms == 600_000 and settings.window_ms == 60_000
    assert settings.replicas == 1 and settings.fail_mode is FailMode.OPEN
    assert settings.metrics_addr == ""
    config = settings.limiter_config()
    assert (config.windows.minute_ms, config.windows.day_ms) == (60_000, 86_400_000)
    assert settings.outage_policy().probe_interval_ms == 1_000


def test_values_from_the_environment() -> None:
    settings = Settings.from_env({
        "RATELIMIT_LISTEN_ADDR": "0.0.0.0:6000",
        "RATELIMIT_REDIS_URL": "redis://127.0.0.1:6379/0",
        "RATELIMIT_REDIS_PREFIX": "x:",
        "RATELIMIT_LEASE_TTL_S": "30",
        "RATELIMIT_REPLICAS": "4",
        "RATELIMIT_FAIL_MODE": "CLOSED",
        "RATELIMIT_WINDOW_S": "0.5",
        "RATELIMIT_DAY_WINDOW_S": "7",
        "RATELIMIT_PROBE_INTERVAL_S": "0.25",
    })
    assert settings.listen_addr == "0.0.0.0:6000"
    assert settings.redis_prefix == "x:" and settings.lease_ttl_ms == 30_000
    assert settings.replicas == 4 and settings.fail_mode is FailMode.CLOSED
    assert settings.window_ms == 500
    config = settings.limiter_config()
    assert (config.default_ttl_ms, config.windows.day_ms) == (30_000, 7_000)
    assert settings.outage_policy() == settings.outage_policy().__class__(
        FailMode.CLOSED, 4, 250)


@pytest.mark.parametrize(
    ("name", "value"),
    [("REPLICAS", "0"), ("FAIL_MODE", "maybe"), ("LEASE_TTL_S", "0"), ("WINDOW_S", "-1"),
     ("REPLICAS", "two"), ("DAY_WINDOW_S", "0"), ("PROBE_INTERVAL_S", "-1")],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({f"RATELIMIT_{name}": value})


def test_the_default_key_limits_are_the_issue_s() -> None:
    assert (defaults.DEFAULT_KEY_RPM, defaults.DEFAULT_KEY_TPM,
            defaults.DEFAULT_KEY_CONCURRENCY) == (3_000, 1_000_000, 100)
