"""Settings from the environment and the server secret's file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.auth.config import Settings
from services.auth.server import load_hash_secret


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.listen_addr == "127.0.0.1:50051"
    assert settings.metrics_addr == ""
    assert settings.admin_key == ""
    assert settings.effective_database_url == "sqlite+aiosqlite:///.apirelay/auth.db"
    assert settings.hash_secret_file == Path(".apirelay/auth_hash_secret")


def test_overrides_and_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env({
        "APIRELAY_HOME": "/srv/relay",
        "AUTH_LISTEN_ADDR": "0.0.0.0:6000",
        "AUTH_METRICS_ADDR": "127.0.0.1:9101",
        "AUTH_SHUTDOWN_GRACE_S": "2.5",
        "AUTH_HASH_SECRET": "hash-secret-value",
        "APIRELAY_ADMIN_KEY": "admin-key-value",
    })
    assert settings.listen_addr == "0.0.0.0:6000"
    assert settings.metrics_addr == "127.0.0.1:9101"
    assert settings.shutdown_grace_s == 2.5
    assert settings.effective_database_url == "sqlite+aiosqlite:////srv/relay/auth.db"
    assert "hash-secret-value" not in repr(settings)
    assert "admin-key-value" not in repr(settings)
    pg = "postgresql+asyncpg://u:p@db/auth"
    assert Settings.from_env({"AUTH_DATABASE_URL": pg}).effective_database_url == pg


def test_hash_secret_from_environment_wins(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, hash_secret="from-the-environment")
    assert load_hash_secret(settings) == b"from-the-environment"
    assert not settings.hash_secret_file.exists()


def test_hash_secret_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "nested" / "home")
    first = load_hash_secret(settings)
    path = settings.hash_secret_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and bytes.fromhex(first.decode())
    assert load_hash_secret(settings) == first


def test_empty_hash_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "auth_hash_secret").write_text("\n")
    with pytest.raises(ValueError):
        load_hash_secret(Settings(home=tmp_path))
