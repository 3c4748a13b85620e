"""Settings of the billing service, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.gateway_config import CONFIG_ENV

DEFAULT_LISTEN_ADDR = "127.0.0.1:50054"
DEFAULT_SHUTDOWN_GRACE_S = 10.0
DEFAULT_HOME = "./.apirelay"
DEFAULT_CONFIG_PATH = "./apirelay.yaml"
DEFAULT_LOG_LEVEL = "INFO"
ADMIN_KEY_ENV = "APIRELAY_ADMIN_KEY"
HOME_ENV = "APIRELAY_HOME"


def default_database_url(home: str) -> str:
    """The embedded database: `<home>/billing.db` on SQLite (absolute path)."""
    return f"sqlite+aiosqlite:///{Path(home).expanduser().resolve() / 'billing.db'}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the billing process needs to start."""

    listen_addr: str = DEFAULT_LISTEN_ADDR
    metrics_addr: str = ""
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    database_url: str = field(default_factory=lambda: default_database_url(DEFAULT_HOME))
    config_path: str = DEFAULT_CONFIG_PATH
    admin_key: str = field(default="", repr=False)
    log_level: str = DEFAULT_LOG_LEVEL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read `BILLING_*`, `APIRELAY_HOME`, `APIRELAY_CONFIG` and `APIRELAY_ADMIN_KEY`."""
        home = environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(
            listen_addr=environ.get("BILLING_LISTEN_ADDR") or DEFAULT_LISTEN_ADDR,
            metrics_addr=environ.get("BILLING_METRICS_ADDR", ""),
            shutdown_grace_s=float(
                environ.get("BILLING_SHUTDOWN_GRACE_S") or DEFAULT_SHUTDOWN_GRACE_S
            ),
            database_url=environ.get("BILLING_DATABASE_URL") or default_database_url(home),
            config_path=environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH,
            admin_key=environ.get(ADMIN_KEY_ENV, "").strip(),
            log_level=environ.get("BILLING_LOG_LEVEL") or DEFAULT_LOG_LEVEL,
        )
