"""The embedded home: admin key creation, precedence and the config fallback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cli.addresses import Addresses
from cli.home import Home


def test_admin_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.ensure()
    key, created = home.ensure_admin_key({})
    assert created and key.startswith("ak-") and len(key) > 40
    assert stat.S_IMODE(os.stat(home.admin_key_file).st_mode) == 0o600
    again, created_again = home.ensure_admin_key({})
    assert (again, created_again) == (key, False)


def test_environment_admin_key_wins(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.ensure()
    home.ensure_admin_key({})
    assert home.read_admin_key({"APIRELAY_ADMIN_KEY": "ak-env"}) == "ak-env"
    assert not (tmp_path / "unused").exists()


def test_config_falls_back_to_a_copy_of_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = Home(tmp_path / "h")
    home.ensure()
    path = home.resolve_config({})
    assert path == tmp_path / "h" / "apirelay.yaml" and "demo" in path.read_text()
    assert home.resolve_config({"APIRELAY_CONFIG": "x.yaml"}) == (tmp_path / "x.yaml")


def test_addresses_default_and_override() -> None:
    default = Addresses.from_env({})
    assert default.listen["billing"] == "127.0.0.1:50054" and default.edge_port == 8080
    custom = Addresses.from_env({"AUTH_LISTEN_ADDR": "0.0.0.0:6001", "APIRELAY_PORT": "9000"})
    assert custom.dial("auth", {}) == "127.0.0.1:6001"
    assert custom.dial("auth", {"AUTH_SERVICE_ADDR": "auth:1"}) == "auth:1"
    env = custom.child_env()
    assert env["AUTH_SERVICE_ADDR"] == "127.0.0.1:6001" and env["APIRELAY_PORT"] == "9000"
