"""Prices in memory and the one cost formula, in integer nano-USD.

cost = ((prompt - cached) * prompt_price + cached * cached_price
        + completion * completion_price) * multiplier_bps / 10000

The division is the only rounding step and rounds half up, once per charge. Amounts are
never negative, so `(x + 5000) // 10000` is exactly round-half-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from services.billing.domain import INT64_MAX, Tariff, TokenUsage
from services.billing.errors import AmountOutOfRange
from services.common.gateway_config import (
    DEFAULT_GROUP,
    FULL_MULTIPLIER_BPS,
    GatewayConfig,
    ModelPrice,
)

_HALF_BPS = FULL_MULTIPLIER_BPS // 2


def cost_nanos(tariff: Tariff, usage: TokenUsage) -> int:
    """The charge for `usage` under `tariff`, rounded half up once; fits in int64."""
    uncached = usage.prompt_tokens - usage.cached_prompt_tokens
    base = (
        uncached * tariff.prompt_nanos
        + usage.cached_prompt_tokens * tariff.cached_prompt_nanos
        + usage.completion_tokens * tariff.completion_nanos
    )
    cost = (base * tariff.multiplier_bps + _HALF_BPS) // FULL_MULTIPLIER_BPS
    if cost > INT64_MAX:
        raise AmountOutOfRange("the cost of this request does not fit in int64 nano-USD")
    return cost


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Per-model prices and per-group multipliers, loaded once at startup."""

    prices: Mapping[str, ModelPrice]
    multipliers_bps: Mapping[str, int]

    @classmethod
    def from_config(cls, config: GatewayConfig) -> PriceBook:
        """Take the priced models and the group multipliers of the gateway config."""
        prices = {m.id: m.price for m in config.models if m.price is not None}
        return cls(MappingProxyType(prices), MappingProxyType(dict(config.group_multipliers_bps)))

    def price(self, model: str) -> ModelPrice | None:
        """The model's price, or None when it has none (it must then be refused)."""
        return self.prices.get(model)

    def multiplier_bps(self, group: str) -> int:
        """The group's multiplier; an unknown group pays the default group's."""
        if (bps := self.multipliers_bps.get(group)) is not None:
            return bps
        return self.multipliers_bps.get(DEFAULT_GROUP, FULL_MULTIPLIER_BPS)

    def tariff(self, model: str, group: str) -> Tariff | None:
        """The resolved prices for a request, or None when the model is not priced."""
        price = self.price(model)
        if price is None:
            return None
        cached = price.prompt if price.cached_prompt is None else price.cached_prompt
        return Tariff(price.prompt, price.completion, cached, self.multiplier_bps(group))
