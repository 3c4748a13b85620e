"""The shared configuration file (`apirelay.yaml`): models, prices, channels, groups.

Router reads models and channels; billing reads prices and groups. Parsing happens
once, here, into frozen dataclasses, so a typo fails at startup with the path of the
bad entry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_ENV = "APIRELAY_CONFIG"
DEFAULT_GROUP = "default"
FULL_MULTIPLIER_BPS = 10_000
DEFAULT_MOCK_REPLY = "Hello from apirelay! This is the demo model answering your request."


class ConfigError(ValueError):
    """The configuration file is missing or invalid."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Integer nano-USD per token; None for cached means the prompt price applies."""

    prompt: int
    completion: int
    cached_prompt: int | None = None


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
    price = None
    if (p := raw.get("price")) is not None:
        if not isinstance(p, dict):
            raise ConfigError(f"{where}.price: expected a mapping")
        cached = p.get("cached_prompt")
        price = ModelPrice(
            prompt=_int(p.get("prompt"), f"{where}.price.prompt"),
            completion=_int(p.get("completion"), f"{where}.price.completion"),
            cached_prompt=None if cached is None else _int(cached, f"{where}.price.cached_prompt"),
        )
    return ModelEntry(
        id=raw["id"],
        owned_by=str(raw.get("owned_by", "apirelay")),
        created=_int(raw.get("created", 1_700_000_000), f"{where}.created"),
        max_output_tokens=_int(raw.get("max_output_tokens", 4096), f"{where}.max_output_tokens", 1),
        price=price,
    )


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
