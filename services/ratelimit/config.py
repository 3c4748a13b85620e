"""Settings of the rate-limit service, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.ratelimit.core import DEFAULT_LEASE_TTL_MS, LimiterConfig
from services.ratelimit.defaults import DAY_MS, MINUTE_MS
from services.ratelimit.outage import DEFAULT_PROBE_INTERVAL_MS, FailMode, OutagePolicy
from services.ratelimit.redis_store import DEFAULT_REDIS_PREFIX
from services.ratelimit.rules import StandardWindows

DEFAULT_LISTEN_ADDR = "127.0.0.1:50052"
DEFAULT_SHUTDOWN_GRACE_S = 10.0
DEFAULT_REDIS_TIMEOUT_S = 0.1


@dataclass(frozen=True, slots=True)
class Settings:
    """Where to listen, which store to use, and how to behave when it is down."""

    listen_addr: str = DEFAULT_LISTEN_ADDR
    metrics_addr: str = ""
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    log_level: str = "INFO"
    redis_url: str = ""
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    redis_timeout_s: float = DEFAULT_REDIS_TIMEOUT_S
    lease_ttl_s: float = DEFAULT_LEASE_TTL_MS / 1000
    replicas: int = 1
    fail_mode: FailMode = FailMode.OPEN
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_MS / 1000
    # The standard windows: shorter only for tests and benches.
    window_s: float = MINUTE_MS / 1000
    day_window_s: float = DAY_MS / 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `RATELIMIT_*` variables; raises ValueError on a bad value."""
        env = os.environ if environ is None else environ

        def get(name: str, default: object) -> str:
            return env.get(f"RATELIMIT_{name}", "").strip() or str(default)

        base = cls()
        settings = cls(
            listen_addr=get("LISTEN_ADDR", base.listen_addr),
            metrics_addr=get("METRICS_ADDR", ""),
            shutdown_grace_s=float(get("SHUTDOWN_GRACE_S", base.shutdown_grace_s)),
            log_level=get("LOG_LEVEL", base.log_level),
            redis_url=get("REDIS_URL", ""),
            redis_prefix=get("REDIS_PREFIX", base.redis_prefix),
            redis_timeout_s=float(get("REDIS_TIMEOUT_S", base.redis_timeout_s)),
            lease_ttl_s=float(get("LEASE_TTL_S", base.lease_ttl_s)),
            replicas=int(get("REPLICAS", base.replicas)),
            fail_mode=FailMode(get("FAIL_MODE", base.fail_mode.value).lower()),
            probe_interval_s=float(get("PROBE_INTERVAL_S", base.probe_interval_s)),
            window_s=float(get("WINDOW_S", base.window_s)),
            day_window_s=float(get("DAY_WINDOW_S", base.day_window_s)),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ValueError if a value is out of range."""
        if self.replicas < 1:
            raise ValueError("RATELIMIT_REPLICAS must be at least 1")
        positive = (self.lease_ttl_s, self.window_s, self.day_window_s, self.redis_timeout_s)
        if min(positive) < 0.001:
            raise ValueError(
                "RATELIMIT_LEASE_TTL_S, _WINDOW_S, _DAY_WINDOW_S and _REDIS_TIMEOUT_S "
                "must be at least 0.001")
        if self.probe_interval_s < 0:
            raise ValueError("RATELIMIT_PROBE_INTERVAL_S must not be negative")

    @property
    def lease_ttl_ms(self) -> int:
        """The default lease TTL in milliseconds."""
        return round(self.lease_ttl_s * 1000)

    @property
    def window_ms(self) -> int:
        """The RPM/TPM window in milliseconds (60 s; shorter only for tests and benches)."""
        return round(self.window_s * 1000)

    def limiter_config(self) -> LimiterConfig:
        """The limiter's lease TTL and standard windows."""
        windows = StandardWindows(self.window_ms, round(self.day_window_s * 1000))
        return LimiterConfig(self.lease_ttl_ms, windows)

    def outage_policy(self) -> OutagePolicy:
        """Fail mode, replica count and probe interval."""
        return OutagePolicy(self.fail_mode, self.replicas, round(self.probe_interval_s * 1000))
