"""The shared configuration file (`apirelay.yaml`): models, prices, channels, groups.

Router reads models and channels; billing reads prices and groups. Parsing happens
once, here, into frozen dataclasses, so a typo fails at startup with the path of the
bad entry. The model catalog (prices, capability flags, aliases, the built-in models)
is parsed by `gateway_models`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from services.common.affinity_config import AffinityConfig, parse_affinity
from services.common.gateway_models import (
    ConfigError,
    ModelEntry,
    ModelPrice,
    flag,
    int_at_least,
    parse_models,
)
from services.common.limits_config import LimitsConfig, parse_limits

__all__ = [
    "AUTH_STYLES",
    "CONFIG_ENV",
    "DEFAULT_GROUP",
    "FULL_MULTIPLIER_BPS",
    "TOKEN_LIMIT_FIELDS",
    "Caps",
    "ChannelEntry",
    "ConfigError",
    "GatewayConfig",
    "MockSettings",
    "ModelEntry",
    "ModelPrice",
    "QueueConfig",
    "load_gateway_config",
    "parse_gateway_config",
    "with_channels",
]

CONFIG_ENV = "APIRELAY_CONFIG"
DEFAULT_GROUP = "default"
FULL_MULTIPLIER_BPS = 10_000
MAX_MULTIPLIER_BPS = 2**31 - 1
DEFAULT_MOCK_REPLY = "Hello from apirelay! This is the demo model answering your request."
# How a channel sends its key: `Authorization: Bearer`, Azure's `api-key`, or not at all.
AUTH_STYLES = ("bearer", "api-key", "none")
# The name under which a channel's upstream wants the completion token limit.
TOKEN_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")
DEFAULT_QUEUE_WAIT_S = 5.0
DEFAULT_QUEUE_SIZE = 100


@dataclass(frozen=True, slots=True)
class MockSettings:
    """How the built-in mock provider answers."""

    reply: str = DEFAULT_MOCK_REPLY
    tokens_per_second: float = 0.0
    first_token_delay_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Caps:
    """Requests per minute, tokens per minute and requests in flight; 0 means no cap."""

    rpm: int = 0
    tpm: int = 0
    concurrency: int = 0

    def __bool__(self) -> bool:
        return bool(self.rpm or self.tpm or self.concurrency)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """The `queue:` section: how long and how many requests wait when every target is at
    its caps, and the priority of each account group (higher first; absent: 0)."""

    max_wait_s: float = DEFAULT_QUEUE_WAIT_S
    max_size: int = DEFAULT_QUEUE_SIZE
    priorities: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelEntry:
    """One upstream: a provider type, where it is, its key, and the models it serves.

    `preset` names an OpenAI-compatible vendor whose defaults fill what the channel
    leaves unset (see services/router/presets.py). The quirk options, unset by default:
    `auth` (one of AUTH_STYLES), `stream_usage` (whether the upstream takes
    `stream_options.include_usage`), `token_limit_field` (one of TOKEN_LIMIT_FIELDS: the
    client's limit is renamed to it), `responses_api` (whether it serves /responses).
    `api_version` is Azure's `api-version`; Azure's `deployments` fill `model_map`.
    `api_key_envs` names more variables holding keys of the same account pool (each key
    is tried and health-tracked on its own); `first_byte_timeout_s` bounds one try until
    its first output (0: the channel's `timeout_s`), after which the router fails over.
    `caps: {rpm, tpm, concurrency}` caps the channel, `key_caps: {...}` each of its keys
    (kept as flat integers so the router's store keeps them as plain options).
    """

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
    preset: str = ""
    api_version: str = ""
    auth: str = ""
    stream_usage: bool | None = None
    token_limit_field: str = ""
    responses_api: bool | None = None
    api_key_envs: tuple[str, ...] = ()
    first_byte_timeout_s: float = 0.0
    cap_rpm: int = 0
    cap_tpm: int = 0
    cap_concurrency: int = 0
    key_cap_rpm: int = 0
    key_cap_tpm: int = 0
    key_cap_concurrency: int = 0

    @property
    def caps(self) -> Caps:
        """The caps of the whole channel."""
        return Caps(self.cap_rpm, self.cap_tpm, self.cap_concurrency)

    @property
    def key_caps(self) -> Caps:
        """The caps of each of the channel's upstream keys."""
        return Caps(self.key_cap_rpm, self.key_cap_tpm, self.key_cap_concurrency)

    @property
    def try_timeout_s(self) -> float:
        """How long one try may wait for its first output."""
        return self.first_byte_timeout_s or self.timeout_s

    def api_key(self, environ: Mapping[str, str] = os.environ) -> str:
        """The upstream key from the environment variable the channel names ("" if none)."""
        return environ.get(self.api_key_env, "") if self.api_key_env else ""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole file.

    `models` holds every name a client may use, aliases included (an alias's entry has
    `alias_of` set). `auto_channels` allows the router to add channels from the vendors'
    environment variables (services/router/catalog.py).
    """

    models: tuple[ModelEntry, ...]
    channels: tuple[ChannelEntry, ...]
    group_multipliers_bps: Mapping[str, int]
    auto_channels: bool = True
    # The `limits:` section (services.common.limits_config), read by the edge.
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # The `queue:` section, read by the router.
    queue: QueueConfig = field(default_factory=QueueConfig)
    # The `affinity:` section (services.common.affinity_config), read by the router.
    affinity: AffinityConfig = field(default_factory=AffinityConfig)

    def model(self, model_id: str) -> ModelEntry | None:
        """The catalog entry for `model_id` (a model's id or one of its aliases), if any."""
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
    builtin = flag(raw.get("builtin_models", True), f"{source}: builtin_models")
    models = parse_models(raw.get("models"), source, builtin)
    channels = tuple(
        _channel(c, f"{source}: channels[{i}]") for i, c in enumerate(raw.get("channels") or [])
    )
    groups = _groups(raw.get("groups"), f"{source}: groups")
    config = GatewayConfig(models, (), groups,
                           flag(raw.get("auto_channels", True), f"{source}: auto_channels"),
                           limits=parse_limits(raw.get("limits"), f"{source}: limits"),
                           affinity=parse_affinity(raw.get("affinity"), f"{source}: affinity"),
                           queue=_queue(raw.get("queue"), f"{source}: queue"))
    return with_channels(config, channels, source)


def with_channels(
    config: GatewayConfig, channels: Iterable[ChannelEntry], source: str = "<config>"
) -> GatewayConfig:
    """`config` with `channels` added: names unique, models known, aliases served too."""
    known = {m.id: m for m in config.models}
    names = {c.name for c in config.channels}
    added: list[ChannelEntry] = []
    for channel in channels:
        if channel.name in names:
            raise ConfigError(f"{source}: channel name {channel.name!r} is used twice")
        names.add(channel.name)
        for model_id in channel.models:
            if model_id not in known:
                raise ConfigError(
                    f"{source}: channel {channel.name!r} serves unknown model {model_id!r}")
        added.append(_serve_aliases(channel, config.models, known))
    return replace(config, channels=(*config.channels, *added))


def _serve_aliases(
    channel: ChannelEntry, models: tuple[ModelEntry, ...], known: Mapping[str, ModelEntry]
) -> ChannelEntry:
    """A channel serving one name of a model serves all of them, under the model's id."""
    served = {known[m].canonical for m in channel.models}
    names = list(channel.models)
    model_map = dict(channel.model_map)
    for entry in models:
        if entry.canonical not in served:
            continue
        if entry.id not in names:
            names.append(entry.id)
        if entry.alias_of and entry.id not in model_map:
            model_map[entry.id] = model_map.get(entry.alias_of, entry.alias_of)
    return replace(channel, models=tuple(names), model_map=MappingProxyType(model_map))


def _groups(raw: Any, where: str) -> dict[str, int]:
    """Each account group's price multiplier in basis points (8500 = 0.85); an account
    whose group is not listed pays the `default` group's (1.0 unless set)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of group name to basis points")
    groups: dict[str, int] = {}
    for name, bps in raw.items():
        # The multiplier travels as an int32 (billing.v1.Tariff.multiplier_bps).
        if int_at_least(bps, f"{where}.{name}") > MAX_MULTIPLIER_BPS:
            raise ConfigError(f"{where}.{name}: at most {MAX_MULTIPLIER_BPS} basis points")
        groups[str(name)] = bps
    groups.setdefault(DEFAULT_GROUP, FULL_MULTIPLIER_BPS)
    return groups


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value is None:
        return ""
    if value not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _optional_flag(raw: Mapping[str, Any], key: str, where: str) -> bool | None:
    return None if raw.get(key) is None else flag(raw[key], f"{where}.{key}")


def _string_map(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of model id to upstream name")
    return {str(k): str(v) for k, v in raw.items()}


def _model_map(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    """`model_map`, with Azure's `deployments` (the same thing under its Azure name)."""
    model_map = _string_map(raw.get("model_map"), f"{where}.model_map")
    for model, deployment in _string_map(raw.get("deployments"), f"{where}.deployments").items():
        if model_map.setdefault(model, deployment) != deployment:
            raise ConfigError(f"{where}: model_map and deployments map {model!r} differently")
    return model_map


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
        model_map=_model_map(raw, where),
        priority=int(raw.get("priority", 0)),
        weight=int_at_least(raw.get("weight", 1), f"{where}.weight", 1),
        enabled=bool(raw.get("enabled", True)),
        timeout_s=float(raw.get("timeout_s", 600.0)),
        mock=mock,
        preset=str(raw.get("preset", "")),
        api_version=str(raw.get("api_version", "")),
        auth=_choice(raw.get("auth"), AUTH_STYLES, f"{where}.auth"),
        stream_usage=_optional_flag(raw, "stream_usage", where),
        token_limit_field=_choice(raw.get("token_limit_field"), TOKEN_LIMIT_FIELDS,
                                  f"{where}.token_limit_field"),
        responses_api=_optional_flag(raw, "responses_api", where),
        api_key_envs=_names(raw.get("api_key_envs"), f"{where}.api_key_envs"),
        first_byte_timeout_s=float(raw.get("first_byte_timeout_s", 0.0)),
        **_caps(raw.get("caps"), "cap_", f"{where}.caps"),
        **_caps(raw.get("key_caps"), "key_cap_", f"{where}.key_caps"),
    )


def _caps(raw: Any, prefix: str, where: str) -> dict[str, int]:
    """A `caps`/`key_caps` mapping as ChannelEntry's flat fields (`prefix` + kind)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not set(raw) <= {"rpm", "tpm", "concurrency"}:
        raise ConfigError(f"{where}: expected a mapping of rpm, tpm and concurrency")
    return {prefix + k: int_at_least(v, f"{where}.{k}") for k, v in raw.items()}


def _queue(raw: Any, where: str) -> QueueConfig:
    if raw is None:
        return QueueConfig()
    if not isinstance(raw, dict) or not set(raw) <= {"max_wait_s", "max_size", "priorities"}:
        raise ConfigError(f"{where}: expected a mapping of max_wait_s, max_size, priorities")
    wait = raw.get("max_wait_s", DEFAULT_QUEUE_WAIT_S)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        raise ConfigError(f"{where}.max_wait_s: expected a number >= 0, got {wait!r}")
    priorities = raw.get("priorities") or {}
    if not isinstance(priorities, dict):
        raise ConfigError(f"{where}.priorities: expected a mapping of group to priority")
    return QueueConfig(
        float(wait), int_at_least(raw.get("max_size", DEFAULT_QUEUE_SIZE), f"{where}.max_size"),
        MappingProxyType({str(g): int_at_least(p, f"{where}.priorities.{g}", -1000)
                          for g, p in priorities.items()}))


def _names(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise ConfigError(f"{where}: expected a list of environment variable names")
    return tuple(raw)
