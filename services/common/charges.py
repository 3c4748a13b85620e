"""The one charge formula, in integer nano-USD, shared by billing and the edge.

Billing settles a request with it; the edge uses it to report a request's cost in the
response (`usage.cost`) from the tariff its hold was placed at, before the settlement
is applied. Both therefore compute the same number by construction.

    cost = round_half_up((plain_prompt * prompt_price + cached * cached_price
                          + cache_write * cache_write_price
                          + (completion - reasoning) * completion_price
                          + reasoning * reasoning_price
                          + sum(quantity * unit_price) + request_price)
                         * multiplier_bps / 10000)

    plain_prompt = prompt - cached - cache_write

Cached and cache-write tokens are subsets of the prompt, reasoning tokens a subset of the
completion; a usage whose subsets exceed their total is clamped (the subsets are billed
at most the whole, and never a negative remainder). The division is the only rounding
step, once per charge; amounts are never negative, so `(x + 5000) // 10000` is exactly
round-half-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

FULL_MULTIPLIER_BPS = 10_000
INT64_MAX = 2**63 - 1
_HALF_BPS = FULL_MULTIPLIER_BPS // 2
_NO_UNITS: Mapping[str, int] = MappingProxyType({})


class ChargeError(ValueError):
    """A usage that cannot be charged under a tariff."""


class UnpricedUnit(ChargeError):
    """The usage holds a unit the tariff has no price for."""

    def __init__(self, unit: str) -> None:
        super().__init__(f"no price for unit {unit!r}")
        self.unit = unit


class ChargeOutOfRange(ChargeError):
    """The charge does not fit in int64 nano-USD."""


@dataclass(frozen=True, slots=True)
class Tariff:
    """The prices one request is billed at: nano-USD per token and per unit, a multiplier."""

    prompt_nanos: int
    completion_nanos: int
    cached_prompt_nanos: int
    multiplier_bps: int
    unit_nanos: Mapping[str, int] = field(default_factory=lambda: _NO_UNITS)
    # Resolved prices (a model without its own cache-write or reasoning price gets the
    # prompt or completion price here), keyword-only and required so no caller can
    # forget one and bill those tokens at 0.
    cache_write_nanos: int = field(kw_only=True)
    reasoning_nanos: int = field(kw_only=True)
    request_nanos: int = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Metered:
    """What a request consumed (or may consume): tokens and non-token units."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    units: Mapping[str, int] = field(default_factory=lambda: _NO_UNITS)
    cache_write_prompt_tokens: int = 0
    reasoning_tokens: int = 0


def unpriced_units(tariff: Tariff, units: Mapping[str, int]) -> list[str]:
    """The units of `units` with a positive quantity that `tariff` has no price for."""
    return sorted(u for u, q in units.items() if q > 0 and u not in tariff.unit_nanos)


def cost_nanos(tariff: Tariff, metered: Metered) -> int:
    """The charge for `metered` under `tariff`; UnpricedUnit / ChargeOutOfRange if impossible."""
    prompt = max(metered.prompt_tokens, 0)
    cached = min(max(metered.cached_prompt_tokens, 0), prompt)
    written = min(max(metered.cache_write_prompt_tokens, 0), prompt - cached)
    completion = max(metered.completion_tokens, 0)
    reasoning = min(max(metered.reasoning_tokens, 0), completion)
    base = (
        (prompt - cached - written) * tariff.prompt_nanos
        + cached * tariff.cached_prompt_nanos
        + written * tariff.cache_write_nanos
        + (completion - reasoning) * tariff.completion_nanos
        + reasoning * tariff.reasoning_nanos
        + tariff.request_nanos
    )
    for unit, quantity in metered.units.items():
        if quantity <= 0:
            continue
        price = tariff.unit_nanos.get(unit)
        if price is None:
            raise UnpricedUnit(unit)
        base += quantity * price
    cost = (base * tariff.multiplier_bps + _HALF_BPS) // FULL_MULTIPLIER_BPS
    if cost > INT64_MAX:
        raise ChargeOutOfRange("the cost of this request does not fit in int64 nano-USD")
    return cost
