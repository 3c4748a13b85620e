"""The embedded installation: `$APIRELAY_HOME`, the admin key and the config file."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "APIRELAY_HOME"
CONFIG_ENV = "APIRELAY_CONFIG"
ADMIN_KEY_ENV = "APIRELAY_ADMIN_KEY"
DEFAULT_HOME = ".apirelay"
DEFAULT_CONFIG = "apirelay.yaml"
ADMIN_KEY_FILE = "admin_key"


@dataclass(frozen=True, slots=True)
class Home:
    """Where the embedded gateway keeps its files."""

    path: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Home:
        """`$APIRELAY_HOME`, else `./.apirelay`, as an absolute path."""
        return cls(Path(environ.get(HOME_ENV) or DEFAULT_HOME).resolve())

    @property
    def admin_key_file(self) -> Path:
        """The file holding the admin key."""
        return self.path / ADMIN_KEY_FILE

    def ensure(self) -> None:
        """Create the folder, readable by its owner only."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o700)

    def read_admin_key(self, environ: Mapping[str, str] = os.environ) -> str:
        """The admin key from the environment, else from the file ("" if neither)."""
        if key := environ.get(ADMIN_KEY_ENV, "").strip():
            return key
        try:
            return self.admin_key_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return ""

    def ensure_admin_key(self, environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
        """The admin key, creating the file (mode 0600) on first start; True if created."""
        if key := self.read_admin_key(environ):
            return key, False
        key = "ak-" + secrets.token_urlsafe(32)
        fd = os.open(self.admin_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
        return key, True

    def resolve_config(self, environ: Mapping[str, str] = os.environ) -> Path:
        """`$APIRELAY_CONFIG`, else `./apirelay.yaml`, else a copy of the default in the home."""
        if explicit := environ.get(CONFIG_ENV):
            return Path(explicit).resolve()
        local = Path(DEFAULT_CONFIG)
        if local.is_file():
            return local.resolve()
        target = self.path / DEFAULT_CONFIG
        if not target.exists():
            shutil.copyfile(Path(__file__).with_name("default_config.yaml"), target)
        return target
