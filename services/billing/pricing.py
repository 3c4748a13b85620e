"""Prices in memory, the tariff of a request, and its charge in integer nano-USD.

The charge formula itself is the shared one (`services.common.charges.cost_nanos`), so
the edge, reporting a request's cost from its hold's tariff, computes the same number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from services.billing.domain import Usage
from services.billing.errors import AmountOutOfRange, UnpricedUsage
from services.common.charges import ChargeOutOfRange, Tariff, UnpricedUnit, cost_nanos
from services.common.gateway_config import (
    DEFAULT_GROUP,
    FULL_MULTIPLIER_BPS,
    GatewayConfig,
    ModelPrice,
)


def charge_nanos(tariff: Tariff, usage: Usage) -> int:
    """The charge for `usage` under `tariff`: UnpricedUsage or AmountOutOfRange if impossible."""
    try:
        return cost_nanos(tariff, usage.metered)
    except UnpricedUnit as exc:
        raise UnpricedUsage(exc.unit) from exc
    except ChargeOutOfRange as exc:
        raise AmountOutOfRange(str(exc)) from exc


def covers(price: ModelPrice, usage: Usage) -> bool:
    """Whether `price` prices all of `usage`: its tokens, and each unit with a quantity."""
    if (usage.prompt_tokens or usage.completion_tokens) and not price.prices_tokens:
        return False
    return all(q <= 0 or unit in price.units for unit, q in usage.units.items())


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
        return None if price is None else self.tariff_of(price, group)

    def tariff_of(self, price: ModelPrice, group: str) -> Tariff:
        """The tariff of `price` for `group`; a model without token prices gets 0 for them.

        Those zeros never bill tokens the model does not price: reserve refuses such a
        request (`covers`) before it gets a hold.
        """
        prompt = price.prompt or 0
        cached = prompt if price.cached_prompt is None else price.cached_prompt
        return Tariff(
            prompt, price.completion or 0, cached, self.multiplier_bps(group), price.units
        )
