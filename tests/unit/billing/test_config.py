"""Settings from the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.billing.config import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.listen_addr == "127.0.0.1:50054"
    assert settings.metrics_addr == ""
    assert settings.config_path == "./apirelay.yaml"
    assert settings.admin_key == ""
    assert settings.hold_ttl_s == 900
    assert settings.expiry_interval == timedelta(seconds=30)
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
    assert settings.shutdown_grace == timedelta(seconds=2.5)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/billing.db"
    assert settings.config_path == "/etc/apirelay.yaml"
    assert settings.admin_key == "secret-admin"
    assert "secret-admin" not in repr(settings)


def test_explicit_database_url_wins(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://u@127.0.0.1/billing"
    settings = Settings.from_env({"BILLING_DATABASE_URL": url, "APIRELAY_HOME": str(tmp_path)})
    assert settings.database_url == url


def test_hold_ttl_and_expiry_interval() -> None:
    settings = Settings.from_env(
        {"BILLING_HOLD_TTL_SECONDS": "120", "BILLING_EXPIRY_INTERVAL_SECONDS": "0.25"}
    )
    assert settings.hold_ttl_s == 120
    assert settings.expiry_interval == timedelta(milliseconds=250)
    for bad in ({"BILLING_HOLD_TTL_SECONDS": "0"}, {"BILLING_HOLD_TTL_SECONDS": "1.5"},
                {"BILLING_EXPIRY_INTERVAL_SECONDS": "-1"},
                {"BILLING_EXPIRY_INTERVAL_SECONDS": "soon"}):
        with pytest.raises(ValueError, match="BILLING_"):
            Settings.from_env(bad)
