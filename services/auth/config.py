"""Settings of the auth service, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN_ADDR = "127.0.0.1:50051"
DEFAULT_HOME = "./.apirelay"
DEFAULT_SHUTDOWN_GRACE_S = 5.0
DEFAULT_LOG_LEVEL = "INFO"
DATABASE_FILE = "auth.db"
HASH_SECRET_FILE = "auth_hash_secret"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the auth service reads from its environment."""

    listen_addr: str = DEFAULT_LISTEN_ADDR
    metrics_addr: str = ""
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    log_level: str = DEFAULT_LOG_LEVEL
    home: Path = Path(DEFAULT_HOME)
    # Empty: SQLite at $APIRELAY_HOME/auth.db.
    database_url: str = ""
    # Empty: read (or create) $APIRELAY_HOME/auth_hash_secret at start.
    hash_secret: str = field(default="", repr=False)
    # Empty: every admin RPC is refused.
    admin_key: str = field(default="", repr=False)

    @property
    def effective_database_url(self) -> str:
        """AUTH_DATABASE_URL, else SQLite in $APIRELAY_HOME."""
        return self.database_url or f"sqlite+aiosqlite:///{self.home / DATABASE_FILE}"

    @property
    def hash_secret_file(self) -> Path:
        """Where the server secret is kept when AUTH_HASH_SECRET is unset."""
        return self.home / HASH_SECRET_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read AUTH_*, APIRELAY_HOME and APIRELAY_ADMIN_KEY."""
        home = Path(environ.get("APIRELAY_HOME") or DEFAULT_HOME)
        return cls(
            listen_addr=environ.get("AUTH_LISTEN_ADDR") or DEFAULT_LISTEN_ADDR,
            metrics_addr=environ.get("AUTH_METRICS_ADDR", ""),
            shutdown_grace_s=float(
                environ.get("AUTH_SHUTDOWN_GRACE_S") or DEFAULT_SHUTDOWN_GRACE_S
            ),
            log_level=environ.get("AUTH_LOG_LEVEL") or DEFAULT_LOG_LEVEL,
            home=home,
            database_url=environ.get("AUTH_DATABASE_URL", ""),
            hash_secret=environ.get("AUTH_HASH_SECRET", ""),
            admin_key=environ.get("APIRELAY_ADMIN_KEY", ""),
        )
