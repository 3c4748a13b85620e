"""apirelay.yaml parses into typed entries and rejects mistakes with their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.gateway_config import (
    ConfigError,
    load_gateway_config,
    parse_gateway_config,
)

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_config_parses_and_prices_the_demo_model() -> None:
    config = load_gateway_config(ROOT / "apirelay.yaml")
    demo = config.model("demo")
    assert demo is not None and demo.price is not None
    assert (demo.price.prompt, demo.price.completion) == (150, 600)
    assert config.group_multipliers_bps["default"] == 10_000
    assert any(c.type == "mock" and "demo" in c.models for c in config.channels)


def test_packaged_default_equals_the_repository_config() -> None:
    packaged = (ROOT / "cli" / "default_config.yaml").read_text()
    assert packaged == (ROOT / "apirelay.yaml").read_text()


def test_model_without_price_has_none() -> None:
    config = parse_gateway_config({"models": [{"id": "free"}]})
    model = config.model("free")
    assert model is not None and model.price is None


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"models": [{"id": "m", "price": {"prompt": 1.5, "completion": 1}}]}, "price.prompt"),
        ({"models": [{"id": "m", "price": {"prompt": -1, "completion": 1}}]}, "price.prompt"),
        ({"models": [{"name": "m"}]}, "models[0]"),
        ({"models": [], "channels": [{"name": "c", "type": "mock", "models": ["x"]}]},
         "unknown model"),
        ({"channels": [{"name": "c"}]}, "type"),
        ([1, 2], "top level"),
    ],
)
def test_mistakes_name_their_place(raw: object, where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_gateway_config(raw)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_gateway_config(tmp_path / "nope.yaml")
