"""Settings of the billing service, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from services.common.gateway_config import CONFIG_ENV

DEFAULT_LISTEN_ADDR = "127.0.0.1:50054"
DEFAULT_SHUTDOWN_GRACE = timedelta(seconds=10)
DEFAULT_HOME = "./.apirelay"
DEFAULT_CONFIG_PATH = "./apirelay.yaml"
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_HOLD_TTL_S = 900
DEFAULT_EXPIRY_INTERVAL = timedelta(seconds=30)
ADMIN_KEY_ENV = "APIRELAY_ADMIN_KEY"
HOME_ENV = "APIRELAY_HOME"


def default_database_url(home: str) -> str:
    """The embedded database: `<home>/billing.db` on SQLite (absolute path)."""
    return f"sqlite+aiosqlite:///{Path(home).expanduser().resolve() / 'billing.db'}"


def _duration(environ: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    # Decimal, not float: "2.5" seconds is read exactly (no float in billing at all).
    text = environ.get(name)
    if not text:
        return default
    try:
        seconds = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from exc
    if not seconds.is_finite() or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {text!r}")
    return timedelta(microseconds=int(seconds * 1_000_000))


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if not text:
        return default
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError(f"{name} must be a positive whole number, got {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the billing process needs to start."""

    listen_addr: str = DEFAULT_LISTEN_ADDR
    metrics_addr: str = ""
    shutdown_grace: timedelta = DEFAULT_SHUTDOWN_GRACE
    database_url: str = field(default_factory=lambda: default_database_url(DEFAULT_HOME))
    config_path: str = DEFAULT_CONFIG_PATH
    admin_key: str = field(default="", repr=False)
    log_level: str = DEFAULT_LOG_LEVEL
    # How long a hold may stay open before the sweep voids it (a request may ask less).
    hold_ttl_s: int = DEFAULT_HOLD_TTL_S
    # How often each replica sweeps expired holds.
    expiry_interval: timedelta = DEFAULT_EXPIRY_INTERVAL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read `BILLING_*`, `APIRELAY_HOME`, `APIRELAY_CONFIG` and `APIRELAY_ADMIN_KEY`."""
        home = environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(
            listen_addr=environ.get("BILLING_LISTEN_ADDR") or DEFAULT_LISTEN_ADDR,
            metrics_addr=environ.get("BILLING_METRICS_ADDR", ""),
            shutdown_grace=_duration(
                environ, "BILLING_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE
            ),
            database_url=environ.get("BILLING_DATABASE_URL") or default_database_url(home),
            config_path=environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH,
            admin_key=environ.get(ADMIN_KEY_ENV, "").strip(),
            log_level=environ.get("BILLING_LOG_LEVEL") or DEFAULT_LOG_LEVEL,
            hold_ttl_s=_positive_int(environ, "BILLING_HOLD_TTL_SECONDS", DEFAULT_HOLD_TTL_S),
            expiry_interval=_duration(
                environ, "BILLING_EXPIRY_INTERVAL_SECONDS", DEFAULT_EXPIRY_INTERVAL
            ),
        )
