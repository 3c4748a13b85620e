"""The model catalog of `apirelay.yaml`: entries, prices, capability flags and aliases.

The file's models are merged over the built-in catalog (`builtin_models.yaml`, the
well-known models with their vendors' public prices) unless `builtin_models: false`.
An alias (`claude-sonnet-4` for a dated id) becomes an entry of its own, a copy of its
model's with `alias_of` set: routing, pricing and /v1/models treat it like the model,
and a channel serving either name serves both (sending the channel's id of the model).

A model has one `price:` or a price history, `prices:` (a list of prices, each with
`since:`, the instant it takes effect, except at most one base entry that always
applied); billing charges a request at the entry in effect when its hold is placed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from services.common.units import AUDIO_SECOND, CHARACTER, image_unit

INT64_MAX = 2**63 - 1
BUILTIN_CATALOG = Path(__file__).with_name("builtin_models.yaml")
CAPABILITIES = ("tools", "vision", "json")
_TOKEN_PRICE_KEYS = ("prompt", "completion", "cached_prompt", "cache_write", "reasoning")
# The YAML key of each single-unit price and the billing unit it prices.
_UNIT_PRICE_KEYS = {"audio_second": AUDIO_SECOND, "character": CHARACTER}
_PRICE_KEYS = (*_TOKEN_PRICE_KEYS, "images", *_UNIT_PRICE_KEYS, "request", "since")
# An image size or quality becomes one segment of a unit name ("image/<size>/<quality>").
_UNIT_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ConfigError(ValueError):
    """The configuration file is missing or invalid."""


def _no_units() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Integer nano-USD per token and per non-token unit (see services.common.units).

    `prompt` and `completion` are both set or both None; None means the model is not
    priced for tokens (a price of 0 must be explicit). None for `cached_prompt` (cache
    hits) or `cache_write_prompt` (prompt tokens written to the cache) means the prompt
    price applies; None for `reasoning` means the completion price applies. `units` maps
    a unit name to its price, sorted by unit. `request` is charged once per request.
    `effective_from` is when the price takes effect (None: it always applied).
    """

    prompt: int | None = None
    completion: int | None = None
    cached_prompt: int | None = None
    units: Mapping[str, int] = field(default_factory=_no_units)
    cache_write_prompt: int | None = None
    reasoning: int | None = None
    request: int = 0
    effective_from: datetime | None = None

    @property
    def prices_tokens(self) -> bool:
        """Whether the model has token prices."""
        return self.prompt is not None and self.completion is not None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of the catalog.

    `context_window` is 0 when unknown. `tools`, `vision` and `json` say whether the
    model takes function tools, image input and JSON mode. `aliases` are the other
    names of a model; an alias's own entry has `alias_of` = the model's id.
    `price_history` holds every price of the model, oldest first (a base price without
    `effective_from`, if any, comes first); `price` is its newest entry, which may not
    be in effect yet: billing picks the entry in effect (services.billing.pricing).
    """

    id: str
    owned_by: str = "apirelay"
    created: int = 1_700_000_000
    max_output_tokens: int = 4096
    price: ModelPrice | None = None
    context_window: int = 0
    tools: bool = False
    vision: bool = False
    json: bool = False
    aliases: tuple[str, ...] = ()
    alias_of: str = ""
    # Models whose channels serve a request when every channel of this one failed
    # before the first output; the request stays billed at this model's price.
    fallbacks: tuple[str, ...] = ()
    price_history: tuple[ModelPrice, ...] = ()

    @property
    def canonical(self) -> str:
        """The id of the model this entry names (its own id unless it is an alias)."""
        return self.alias_of or self.id

    @property
    def prices(self) -> tuple[ModelPrice, ...]:
        """Every price of the model, oldest first (`price` alone for an entry built
        without a history)."""
        if self.price_history:
            return self.price_history
        return () if self.price is None else (self.price,)


def parse_models(raw: Any, source: str, builtin: bool) -> tuple[ModelEntry, ...]:
    """The file's `models` list over the built-in catalog, aliases expanded."""
    if raw is not None and not isinstance(raw, list):
        raise ConfigError(f"{source}: models: expected a list")
    own = [parse_model(m, f"{source}: models[{i}]") for i, m in enumerate(raw or [])]
    _check_unique(own, source)
    taken = {m.id for m in own} | {a for m in own for a in m.aliases}
    # A built-in model the file redefines (by id or by one of its names) gives way.
    base = [m for m in builtin_models() if m.id not in taken] if builtin else []
    merged = [replace(m, aliases=tuple(a for a in m.aliases if a not in taken)) for m in base]
    entries = [*merged, *own]
    _check_unique(entries, source)
    return tuple(entries) + tuple(
        replace(m, id=alias, aliases=(), alias_of=m.id) for m in entries for alias in m.aliases
    )


def builtin_models() -> tuple[ModelEntry, ...]:
    """The shipped catalog of well-known models and their public prices."""
    raw = yaml.safe_load(BUILTIN_CATALOG.read_text(encoding="utf-8"))
    where = str(BUILTIN_CATALOG.name)
    return tuple(parse_model(m, f"{where}: models[{i}]") for i, m in enumerate(raw["models"]))


def _check_unique(entries: list[ModelEntry], source: str) -> None:
    seen: set[str] = set()
    for entry in entries:
        for name in (entry.id, *entry.aliases):
            if name in seen:
                raise ConfigError(f"{source}: model name {name!r} is defined twice")
            seen.add(name)


def int_at_least(value: Any, where: str, minimum: int = 0) -> int:
    """`value` as an integer >= `minimum`, else ConfigError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def flag(value: Any, where: str) -> bool:
    """`value` as a YAML boolean, else ConfigError naming `where`."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def parse_model(raw: Any, where: str) -> ModelEntry:
    """One entry of a `models` list."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise ConfigError(f"{where}: a model needs a string 'id'")
    history = _price_history(raw, where)
    flags = _capabilities(raw.get("capabilities") or [], f"{where}.capabilities")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ConfigError(f"{where}.aliases: expected a list of model names")
    fallbacks = raw.get("fallbacks") or []
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) and f for f in fallbacks):
        raise ConfigError(f"{where}.fallbacks: expected a list of model names")
    return ModelEntry(
        id=raw["id"],
        owned_by=str(raw.get("owned_by", "apirelay")),
        created=int_at_least(raw.get("created", 1_700_000_000), f"{where}.created"),
        max_output_tokens=int_at_least(raw.get("max_output_tokens", 4096),
                                       f"{where}.max_output_tokens", 1),
        price=history[-1] if history else None,
        price_history=history,
        context_window=int_at_least(raw.get("context_window", 0), f"{where}.context_window"),
        tools="tools" in flags,
        vision="vision" in flags,
        json="json" in flags,
        aliases=tuple(aliases),
        fallbacks=tuple(fallbacks),
    )


def _capabilities(raw: Any, where: str) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise ConfigError(f"{where}: expected a list of {', '.join(CAPABILITIES)}")
    for flag in raw:
        if flag not in CAPABILITIES:
            raise ConfigError(f"{where}: unknown capability {flag!r} "
                              f"(known: {', '.join(CAPABILITIES)})")
    return frozenset(raw)


def _nanos(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise ConfigError(f"{where}: expected an integer price in nano-USD >= 0, got {value!r}")
    return value


def _price_history(raw: dict[str, Any], where: str) -> tuple[ModelPrice, ...]:
    """The model's `price` (one entry) or `prices` (its history), oldest first."""
    if raw.get("price") is not None and raw.get("prices") is not None:
        raise ConfigError(f"{where}: give either 'price' or 'prices' (a price history), not both")
    if raw.get("price") is not None:
        return (_price(raw["price"], f"{where}.price"),)
    if raw.get("prices") is None:
        return ()
    if not isinstance(raw["prices"], list) or not raw["prices"]:
        raise ConfigError(f"{where}.prices: expected a non-empty list of prices")
    history = [_price(p, f"{where}.prices[{i}]") for i, p in enumerate(raw["prices"])]
    bases = [i for i, p in enumerate(history) if p.effective_from is None]
    if len(bases) > 1:
        raise ConfigError(f"{where}.prices: only one price may lack 'since' (the base price); "
                          f"entries {bases[0]} and {bases[1]} both do")
    seen: dict[datetime, int] = {}
    for i, price in enumerate(history):
        since = price.effective_from
        if since is not None and (first := seen.setdefault(since, i)) != i:
            raise ConfigError(f"{where}.prices: entries {first} and {i} both take effect "
                              f"at {since.isoformat()}")
    dated = sorted((p for p in history if p.effective_from is not None),
                   key=lambda p: p.effective_from or _EPOCH)
    return (*(history[i] for i in bases), *dated)


def _since(value: Any, where: str) -> datetime:
    """A `since` instant: a timestamp with a time zone, or a date (midnight UTC)."""
    if isinstance(value, str):
        parse = date.fromisoformat if len(value) == len("2026-12-01") else datetime.fromisoformat
        try:
            value = parse(value)
        except ValueError:
            pass
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigError(f"{where}: {value.isoformat()} has no time zone "
                              "(write it as 2026-12-01T00:00:00Z)")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ConfigError(f"{where}: expected a timestamp such as 2026-12-01T00:00:00Z, "
                      f"got {value!r}")


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
        cache_write_prompt=tokens.get("cache_write"),
        reasoning=tokens.get("reasoning"),
        request=_nanos(raw.get("request", 0), f"{where}.request"),
        effective_from=None if "since" not in raw else _since(raw["since"], f"{where}.since"),
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
