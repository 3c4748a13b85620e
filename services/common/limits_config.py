"""The `limits:` section of apirelay.yaml: rate limits by default, account group and model.

    limits:
      defaults:                  # every key (built in: 3000 RPM, 1,000,000 TPM, 100 concurrent)
        rpm: 3000
        rpd: 0                   # 0 = no limit
        account: {rpm: 20000}    # all keys of one account together (none unless configured)
      groups:
        vip:                     # accounts in group "vip": overrides `defaults` field by field
          rpm: 10000
          account: {rpm: 100000, tpm: 50000000}
      models:
        gpt-4o: {rpm: 500, tpm: 300000}    # per (key, model), on top of the key's own limits

The kinds are rpm, tpm, concurrency and rpd. A key's own limit (auth's KeyLimits) wins,
then its group's, then `defaults`, then the built-in defaults (services.ratelimit.defaults).
An absent kind inherits; 0 means no limit; a positive number is the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from services.ratelimit.defaults import (
    DEFAULT_KEY_CONCURRENCY,
    DEFAULT_KEY_RPD,
    DEFAULT_KEY_RPM,
    DEFAULT_KEY_TPM,
)

KINDS = ("rpm", "tpm", "concurrency", "rpd")
ACCOUNT = "account"
# Far above any real limit; the limiter refuses larger quantities.
MAX_LIMIT = 10**12


class LimitsConfigError(ValueError):
    """The `limits:` section is invalid (the message names the bad entry)."""


@dataclass(frozen=True, slots=True)
class LimitValues:
    """Limits by kind: None inherits, 0 means no limit, a positive number is the limit."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    rpd: int | None = None

    def over(self, base: LimitValues) -> LimitValues:
        """These values where set, else `base`'s."""
        return LimitValues(*(
            mine if mine is not None else theirs
            for mine, theirs in zip(self._values(), base._values(), strict=True)
        ))

    def finite(self) -> Iterator[tuple[str, int]]:
        """(kind, limit) of every kind with a limit, in KINDS order."""
        for kind, value in zip(KINDS, self._values(), strict=True):
            if value:
                yield kind, value

    def _values(self) -> tuple[int | None, ...]:
        return (self.rpm, self.tpm, self.concurrency, self.rpd)


NO_VALUES = LimitValues()
BUILT_IN_KEY = LimitValues(DEFAULT_KEY_RPM, DEFAULT_KEY_TPM, DEFAULT_KEY_CONCURRENCY,
                           DEFAULT_KEY_RPD)


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """The limits of each key, and of each account (all its keys together)."""

    key: LimitValues = NO_VALUES
    account: LimitValues = NO_VALUES


def _no_groups() -> Mapping[str, ScopeLimits]:
    return MappingProxyType({})


def _no_models() -> Mapping[str, LimitValues]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """The whole `limits:` section; the methods give the effective limits of a request."""

    defaults: ScopeLimits = ScopeLimits()
    groups: Mapping[str, ScopeLimits] = field(default_factory=_no_groups)
    models: Mapping[str, LimitValues] = field(default_factory=_no_models)

    def key_limits(self, group: str, own: LimitValues) -> LimitValues:
        """A key's limits: its own, else its group's, else the defaults, else built in."""
        group_key = self.groups.get(group, ScopeLimits()).key
        return own.over(group_key).over(self.defaults.key).over(BUILT_IN_KEY)

    def account_limits(self, group: str) -> LimitValues:
        """The limits of all keys of an account of `group` together."""
        return self.groups.get(group, ScopeLimits()).account.over(self.defaults.account)

    def model_limits(self, model: str) -> LimitValues:
        """The limits of one key on `model` (none unless configured)."""
        return self.models.get(model, NO_VALUES)


def parse_limits(raw: Any, where: str = "limits") -> LimitsConfig:
    """Validate the `limits:` mapping (None means no section: the built-in defaults)."""
    if raw is None:
        return LimitsConfig()
    table = _mapping(raw, where, ("defaults", "groups", "models"))
    groups = _mapping(table.get("groups") or {}, f"{where}.groups")
    models = _mapping(table.get("models") or {}, f"{where}.models")
    return LimitsConfig(
        defaults=_scope(table.get("defaults") or {}, f"{where}.defaults"),
        groups=MappingProxyType({
            str(name): _scope(value or {}, f"{where}.groups.{name}")
            for name, value in groups.items()
        }),
        models=MappingProxyType({
            str(name): _values(value or {}, f"{where}.models.{name}")
            for name, value in models.items()
        }),
    )


def _scope(raw: Any, where: str) -> ScopeLimits:
    table = _mapping(raw, where, (*KINDS, ACCOUNT))
    key = {kind: value for kind, value in table.items() if kind != ACCOUNT}
    account = _values(table.get(ACCOUNT) or {}, f"{where}.{ACCOUNT}")
    return ScopeLimits(_values(key, where), account)


def _values(raw: Any, where: str) -> LimitValues:
    table = _mapping(raw, where, KINDS)
    return LimitValues(**{kind: _limit(value, f"{where}.{kind}") for kind, value in table.items()})


def _limit(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise LimitsConfigError(
            f"{where}: expected an integer from 0 (no limit) to {MAX_LIMIT}, got {value!r}")
    return value


def _mapping(raw: Any, where: str, known: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise LimitsConfigError(f"{where}: expected a mapping, got {raw!r}")
    for key in raw:
        if known and key not in known:
            raise LimitsConfigError(f"{where}: unknown entry {key!r} (known: {', '.join(known)})")
    return raw

