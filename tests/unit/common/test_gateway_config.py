"""apirelay.yaml parses into typed entries and rejects mistakes with their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.gateway_config import (
    ConfigError,
    ModelPrice,
    load_gateway_config,
    parse_gateway_config,
)
from services.common.units import AUDIO_SECOND, CHARACTER, image_unit

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_config_parses_and_prices_the_demo_model() -> None:
    config = load_gateway_config(ROOT / "apirelay.yaml")
    demo = config.model("demo")
    assert demo is not None and demo.price is not None
    assert (demo.price.prompt, demo.price.completion) == (150, 600)
    assert config.group_multipliers_bps["default"] == 10_000
    assert any(c.type == "mock" and "demo" in c.models for c in config.channels)


def test_shipped_config_prices_every_model_a_channel_serves() -> None:
    config = load_gateway_config(ROOT / "apirelay.yaml")
    served = {m for c in config.channels for m in c.models}
    assert served <= {m.id for m in config.models}
    assert all(m.price is not None for m in config.models)
    mock = next(c for c in config.channels if c.name == "demo-mock")
    assert mock.models == ("demo", "demo-embed", "demo-image", "demo-whisper", "demo-tts")
    image = config.model("demo-image")
    assert image is not None and image.price is not None and not image.price.prices_tokens
    assert image.price.units[image_unit("1792x1024", "hd")] == 120_000_000
    assert image.price.units[image_unit("256x256", None)] == 16_000_000
    dalle = config.model("dall-e-3")
    assert dalle is not None and dalle.price is not None
    assert len(dalle.price.units) == 6 and image_unit("512x512", None) not in dalle.price.units


def test_packaged_default_equals_the_repository_config() -> None:
    packaged = (ROOT / "cli" / "default_config.yaml").read_text()
    assert packaged == (ROOT / "apirelay.yaml").read_text()


def test_model_without_price_has_none() -> None:
    config = parse_gateway_config({"models": [{"id": "free"}]})
    model = config.model("free")
    assert model is not None and model.price is None


def price_of(price: object) -> ModelPrice | None:
    model = parse_gateway_config({"models": [{"id": "m", "price": price}]}).model("m")
    assert model is not None
    return model.price


def test_every_price_form_parses() -> None:
    assert price_of({"prompt": 150, "completion": 600, "cached_prompt": 75}) == ModelPrice(
        150, 600, 75
    )
    embed = price_of({"prompt": 20, "completion": 0})
    assert embed == ModelPrice(20, 0) and embed.prices_tokens and not embed.units
    images = price_of({"images": {"1024x1024": {"standard": 40_000_000, "hd": 80_000_000},
                                  "512x512": {"standard": 18_000_000}}})
    assert images == ModelPrice(units={
        "image/1024x1024/hd": 80_000_000,
        "image/1024x1024/standard": 40_000_000,
        "image/512x512/standard": 18_000_000,
    })
    assert not images.prices_tokens and images.prompt is None and images.completion is None
    assert list(images.units) == sorted(images.units)
    assert price_of({"audio_second": 100_000}) == ModelPrice(units={AUDIO_SECOND: 100_000})
    assert price_of({"character": 15_000}) == ModelPrice(units={CHARACTER: 15_000})
    mixed = price_of({"prompt": 1, "completion": 2, "character": 0})
    assert mixed == ModelPrice(1, 2, None, {CHARACTER: 0}) and mixed.prices_tokens


@pytest.mark.parametrize(
    ("price", "where"),
    [
        ({"prompt": 1, "completion": 1, "image": 5}, r"models\[0\]\.price: unknown price 'image'"),
        ({"prompt": 1}, r"models\[0\]\.price: token prices need both"),
        ({"completion": 1, "character": 1}, "token prices need both"),
        ({"cached_prompt": 1, "character": 1}, "token prices need both"),
        ({}, r"models\[0\]\.price: expected token prices or unit prices"),
        ({"character": -1}, r"price\.character: expected an integer"),
        ({"audio_second": 1.5}, r"price\.audio_second: expected an integer"),
        ({"audio_second": True}, r"price\.audio_second: expected an integer"),
        ({"audio_second": None}, r"price\.audio_second: expected an integer"),
        ({"character": 2**63}, r"price\.character: expected an integer"),
        ({"prompt": 1, "completion": "2"}, r"price\.completion: expected an integer"),
        ({"images": {"1024x1024": {"hd": -5}}}, r"price\.images\.1024x1024\.hd: expected"),
        ({"images": {"1024x1024": {"hd": 0.5}}}, r"price\.images\.1024x1024\.hd: expected"),
        ({"images": {"1024x1024": 5}}, r"price\.images\.1024x1024: expected a mapping"),
        ({"images": {"1024x1024": {}}}, r"price\.images\.1024x1024: expected a mapping"),
        ({"images": {1024: {"hd": 1}}}, r"price\.images: 1024 is not an image size"),
        ({"images": {"a/b": {"hd": 1}}}, r"price\.images: 'a/b' is not an image size"),
        ({"images": {"1024x1024": {"h d": 1}}}, r"1024x1024: 'h d' is not an image quality"),
        ({"images": []}, r"price\.images: expected a mapping"),
        ({"images": {}}, r"price\.images: expected a mapping"),
        ([150, 600], r"models\[0\]\.price: expected a mapping"),
    ],
)
def test_price_mistakes_name_their_place(price: object, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        price_of(price)


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
