"""Settings of the rate-limit service, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.ratelimit.core import FailMode
from services.ratelimit.store import DEFAULT_REDIS_PREFIX

DEFAULT_LISTEN_ADDR = "127.0.0.1:50052"
DEFAULT_SHUTDOWN_GRACE_S = 10.0
DEFAULT_LEASE_TTL_S = 600.0
DEFAULT_WINDOW_S = 60.0
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
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S
    replicas: int = 1
    fail_mode: FailMode = FailMode.OPEN
    window_s: float = DEFAULT_WINDOW_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `RATELIMIT_*` variables; raises ValueError on a bad value."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            return env.get(f"RATELIMIT_{name}", "").strip() or default

        settings = cls(
            listen_addr=get("LISTEN_ADDR", DEFAULT_LISTEN_ADDR),
            metrics_addr=get("METRICS_ADDR", ""),
            shutdown_grace_s=float(get("SHUTDOWN_GRACE_S", str(DEFAULT_SHUTDOWN_GRACE_S))),
            log_level=get("LOG_LEVEL", "INFO"),
            redis_url=get("REDIS_URL", ""),
            redis_prefix=get("REDIS_PREFIX", DEFAULT_REDIS_PREFIX),
            redis_timeout_s=float(get("REDIS_TIMEOUT_S", str(DEFAULT_REDIS_TIMEOUT_S))),
            lease_ttl_s=float(get("LEASE_TTL_S", str(DEFAULT_LEASE_TTL_S))),
            replicas=int(get("REPLICAS", "1")),
            fail_mode=FailMode(get("FAIL_MODE", FailMode.OPEN.value).lower()),
            window_s=float(get("WINDOW_S", str(DEFAULT_WINDOW_S))),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ValueError if a value is out of range."""
        if self.replicas < 1:
            raise ValueError("RATELIMIT_REPLICAS must be at least 1")
        if self.lease_ttl_s <= 0 or self.window_s <= 0 or self.redis_timeout_s <= 0:
            raise ValueError("RATELIMIT_LEASE_TTL_S, _WINDOW_S and _REDIS_TIMEOUT_S must be > 0")

    @property
    def lease_ttl_ms(self) -> int:
        """The default lease TTL in milliseconds."""
        return round(self.lease_ttl_s * 1000)

    @property
    def window_ms(self) -> int:
        """The RPM/TPM window in milliseconds (60 s; shorter only for tests and benches)."""
        return round(self.window_s * 1000)
