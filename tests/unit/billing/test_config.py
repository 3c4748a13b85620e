"""Settings from the environment."""

from __future__ import annotations

from pathlib import Path

from services.billing.config import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.listen_addr == "127.0.0.1:50054"
    assert settings.metrics_addr == ""
    assert settings.config_path == "./apirelay.yaml"
    assert settings.admin_key == ""
    expected = (Path(".apirelay").resolve() / "billing.db").as_posix()
    assert settings.database_url == f"sqlite+aiosqlite:///{expected}"


def test_environment_overrides(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "BILLING_LISTEN_ADDR": "127.0.0.1:0",
            "BILLING_METRICS_ADDR": "127.0.0.1:9104",
            "BILLING_SHUTDOWN_GRACE_S": "2.5",
            "APIRELAY_HOME": str(tmp_path),
            "APIRELAY_CONFIG": "/etc/apirelay.yaml",
            "APIRELAY_ADMIN_KEY": "secret-admin",
        }
    )
    assert settings.listen_addr == "127.0.0.1:0"
    assert settings.metrics_addr == "127.0.0.1:9104"
    assert settings.shutdown_grace_s == 2.5
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/billing.db"
    assert settings.config_path == "/etc/apirelay.yaml"
    assert settings.admin_key == "secret-admin"
    assert "secret-admin" not in repr(settings)


def test_explicit_database_url_wins(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://u@127.0.0.1/billing"
    settings = Settings.from_env({"BILLING_DATABASE_URL": url, "APIRELAY_HOME": str(tmp_path)})
    assert settings.database_url == url
