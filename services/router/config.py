"""The router's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.gateway_config import CONFIG_ENV

DEFAULT_LISTEN_ADDR = "127.0.0.1:50053"
DEFAULT_CONFIG_PATH = "./apirelay.yaml"
DEFAULT_SHUTDOWN_GRACE_S = 120.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_UPSTREAM_CONNECTIONS = 1000
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_HOME = "./.apirelay"
DATABASE_FILE = "router.db"
SECRET_FILE = "router_secret"
# No home (tests, throwaway runs): channels live in memory for the process's life.
MEMORY_DATABASE_URL = "sqlite+aiosqlite:///:memory:"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the router listens, where its config file is, how it talks to upstreams."""

    listen_addr: str = DEFAULT_LISTEN_ADDR
    metrics_addr: str = ""
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    config_path: str = DEFAULT_CONFIG_PATH
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    max_upstream_connections: int = DEFAULT_MAX_UPSTREAM_CONNECTIONS
    log_level: str = DEFAULT_LOG_LEVEL
    # None: an in-memory database and a per-process encryption key (nothing persists).
    home: Path | None = None
    # Empty: SQLite at $APIRELAY_HOME/router.db.
    database_url: str = ""
    # Base64 of 32 bytes; empty: read (or create) $APIRELAY_HOME/router_secret.
    encryption_key: str = field(default="", repr=False)
    # Empty: every admin RPC is refused.
    admin_key: str = field(default="", repr=False)
    # The ratelimit service holding channel and key caps; empty: caps are not enforced.
    ratelimit_addr: str = ""

    @property
    def effective_database_url(self) -> str:
        """ROUTER_DATABASE_URL, else SQLite in $APIRELAY_HOME, else in memory."""
        if self.database_url:
            return self.database_url
        if self.home is None:
            return MEMORY_DATABASE_URL
        return f"sqlite+aiosqlite:///{self.home / DATABASE_FILE}"

    @property
    def secret_file(self) -> Path | None:
        """Where the encryption key is kept when ROUTER_ENCRYPTION_KEY is unset."""
        return None if self.home is None else self.home / SECRET_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ROUTER_*, APIRELAY_CONFIG, APIRELAY_HOME, APIRELAY_ADMIN_KEY and
        RATELIMIT_SERVICE_ADDR."""
        return cls(
            listen_addr=environ.get("ROUTER_LISTEN_ADDR", DEFAULT_LISTEN_ADDR),
            metrics_addr=environ.get("ROUTER_METRICS_ADDR", ""),
            shutdown_grace_s=float(
                environ.get("ROUTER_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S)),
            config_path=environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
            connect_timeout_s=float(
                environ.get("ROUTER_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S)),
            max_upstream_connections=int(
                environ.get("ROUTER_MAX_UPSTREAM_CONNECTIONS", DEFAULT_MAX_UPSTREAM_CONNECTIONS)),
            log_level=environ.get("ROUTER_LOG_LEVEL", DEFAULT_LOG_LEVEL),
            home=Path(environ.get("APIRELAY_HOME") or DEFAULT_HOME),
            database_url=environ.get("ROUTER_DATABASE_URL", ""),
            encryption_key=environ.get("ROUTER_ENCRYPTION_KEY", ""),
            admin_key=environ.get("APIRELAY_ADMIN_KEY", ""),
            ratelimit_addr=environ.get("RATELIMIT_SERVICE_ADDR", ""),
        )
