"""The shared configuration file (`apirelay.yaml`): models, prices, channels, groups.

Router reads models and channels; billing reads prices and groups. Parsing happens
once, here, into frozen dataclasses, so a typo fails at startup with the path of the
bad entry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from services.common.units import AUDIO_SECOND, CHARACTER, image_unit

CONFIG_ENV = "APIRELAY_CONFIG"
DEFAULT_GROUP = "default"
FULL_MULTIPLIER_BPS = 10_000
DEFAULT_MOCK_REPLY = "Hello from apirelay! This is the demo model answering your request."
INT64_MAX = 2**63 - 1
_TOKEN_PRICE_KEYS = ("prompt", "completion", "cached_prompt")
# The YAML key of each single-unit price and the billing unit it prices.
_UNIT_PRICE_KEYS = {"audio_second": AUDIO_SECOND, "character": CHARACTER}
_PRICE_KEYS = (*_TOKEN_PRICE_KEYS, "images", *_UNIT_PRICE_KEYS)
# An image size or quality becomes one segment of a unit name ("image/<size>/<quality>").
_UNIT_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ConfigError(ValueError):
    """The configuration file is missing or invalid."""


def _no_units() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Integer nano-USD per token and per non-token unit (see services.common.units).

    `prompt` and `completion` are both set or both None; None means the model is not
    priced for tokens (a price of 0 must be explicit). None for `cached_prompt` means the
    prompt price applies. `units` maps a unit name to its price, sorted by unit.
    """

    prompt: int | None = None
    completion: int | None = None
    cached_prompt: int | None = None
    units: Mapping[str, int] = field(default_factory=_no_units)

    @property
    def prices_tokens(self) -> bool:
        """Whether the model has token prices."""
        return self.prompt is not None and self.completion is not None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of the catalog."""

    id: str
    owned_by: str = "apirelay"
    created: int = 1_700_000_000
    max_output_tokens: int = 4096
    price: ModelPrice | None = None


@dataclass(frozen=True, slots=True)
class MockSettings:
    """How the built-in mock provider answers."""

    reply: str = DEFAULT_MOCK_REPLY
    tokens_per_second: float = 0.0
    first_token_delay_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ChannelEntry:
    """One upstream: a provider type, where it is, its key, and the models it serves."""

    name: str
    type: str
    models: tuple[str, ...]
    base_url: str = ""
    api_key_env: str = ""
    model_map: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    weight: int = 1
    enabled: bool = True
    timeout_s: float = 600.0
    mock: MockSettings = field(default_factory=MockSettings)

    def api_key(self, environ: Mapping[str, str] = os.environ) -> str:
        """The upstream key from the environment variable the channel names ("" if none)."""
        return environ.get(self.api_key_env, "") if self.api_key_env else ""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole file."""

    models: tuple[ModelEntry, ...]
    channels: tuple[ChannelEntry, ...]
    group_multipliers_bps: Mapping[str, int]

    def model(self, model_id: str) -> ModelEntry | None:
        """The catalog entry for `model_id`, if any."""
        return next((m for m in self.models if m.id == model_id), None)


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and validate the file at `path`."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    return parse_gateway_config(raw, source=str(path))


def parse_gateway_config(raw: Any, source: str = "<config>") -> GatewayConfig:
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    models = tuple(_model(m, f"{source}: models[{i}]") for i, m in enumerate(raw.get("models") or []))
    channels = tuple(
        _channel(c, f"{source}: channels[{i}]") for i, c in enumerate(raw.get("channels") or [])
    )
    groups = {str(k): _int(v, f"{source}: groups.{k}") for k, v in (raw.get("groups") or {}).items()}
    groups.setdefault(DEFAULT_GROUP, FULL_MULTIPLIER_BPS)
    known = {m.id for m in models}
    for ch in channels:
        for model_id in ch.models:
            if model_id not in known:
                raise ConfigError(f"{source}: channel {ch.name!r} serves unknown model {model_id!r}")
    return GatewayConfig(models, channels, groups)


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _model(raw: Any, where: str) -> ModelEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise ConfigError(f"{where}: a model needs a string 'id'")
    price = None if raw.get("price") is None else _price(raw["price"], f"{where}.price")
    return ModelEntry(
        id=raw["id"],
        owned_by=str(raw.get("owned_by", "apirelay")),
        created=_int(raw.get("created", 1_700_000_000), f"{where}.created"),
        max_output_tokens=_int(raw.get("max_output_tokens", 4096), f"{where}.max_output_tokens", 1),
        price=price,
    )


def _nanos(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise ConfigError(f"{where}: expected an integer price in nano-USD >= 0, got {value!r}")
    return value


def _price(raw: Any, where: str) -> ModelPrice:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in raw:
        if key not in _PRICE_KEYS:
            raise ConfigError(f"{where}: unknown price {key!r} (known: {', '.join(_PRICE_KEYS)})")
    tokens = {k: _nanos(raw[k], f"{where}.{k}") for k in _TOKEN_PRICE_KEYS if k in raw}
    if tokens and not {"prompt", "completion"} <= tokens.keys():
        raise ConfigError(f"{where}: token prices need both 'prompt' and 'completion'")
    units = _image_prices(raw["images"], f"{where}.images") if "images" in raw else {}
    for key, unit in _UNIT_PRICE_KEYS.items():
        if key in raw:
            units[unit] = _nanos(raw[key], f"{where}.{key}")
    if not tokens and not units:
        raise ConfigError(f"{where}: expected token prices or unit prices")
    return ModelPrice(
        prompt=tokens.get("prompt"),
        completion=tokens.get("completion"),
        cached_prompt=tokens.get("cached_prompt"),
        units=MappingProxyType(dict(sorted(units.items()))),
    )


def _image_prices(raw: Any, where: str) -> dict[str, int]:
    """{size: {quality: nanos}} as unit prices ("image/<size>/<quality>": nanos)."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a mapping of image size to {{quality: price}}")
    prices: dict[str, int] = {}
    for size, qualities in raw.items():
        if not isinstance(size, str) or not _UNIT_PART.fullmatch(size):
            raise ConfigError(f"{where}: {size!r} is not an image size such as '1024x1024'")
        if not isinstance(qualities, dict) or not qualities:
            raise ConfigError(f"{where}.{size}: expected a mapping of quality to price")
        for quality, nanos in qualities.items():
            if not isinstance(quality, str) or not _UNIT_PART.fullmatch(quality):
                raise ConfigError(f"{where}.{size}: {quality!r} is not an image quality")
            prices[image_unit(size, quality)] = _nanos(nanos, f"{where}.{size}.{quality}")
    return prices


def _channel(raw: Any, where: str) -> ChannelEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"{where}: a channel needs a string 'name'")
    if not isinstance(raw.get("type"), str):
        raise ConfigError(f"{where}: a channel needs a string 'type'")
    models = raw.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ConfigError(f"{where}.models: expected a list of model ids")
    mock_raw = raw.get("mock") or {}
    mock = MockSettings(
        reply=str(mock_raw.get("reply", DEFAULT_MOCK_REPLY)),
        tokens_per_second=float(mock_raw.get("tokens_per_second", 0.0)),
        first_token_delay_ms=float(mock_raw.get("first_token_delay_ms", 0.0)),
    )
    return ChannelEntry(
        name=raw["name"],
        type=raw["type"],
        models=tuple(models),
        base_url=str(raw.get("base_url", "")).rstrip("/"),
        api_key_env=str(raw.get("api_key_env", "")),
        model_map={str(k): str(v) for k, v in (raw.get("model_map") or {}).items()},
        priority=int(raw.get("priority", 0)),
        weight=_int(raw.get("weight", 1), f"{where}.weight", 1),
        enabled=bool(raw.get("enabled", True)),
        timeout_s=float(raw.get("timeout_s", 600.0)),
        mock=mock,
    )
