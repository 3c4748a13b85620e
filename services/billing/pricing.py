"""Prices in memory, the tariff of a request, and its charge in integer nano-USD.

The charge formula itself is the shared one (`services.common.charges.cost_nanos`), so
the edge, reporting a request's cost from its hold's tariff, computes the same number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
    """Per-model price histories and per-group multipliers, loaded once at startup.

    Each model's history is oldest first (services.common.gateway_models); the price
    of a request is the one in effect when its hold is placed, and the hold keeps it,
    so a price change never touches requests already reserved or charged.
    """

    prices: Mapping[str, tuple[ModelPrice, ...]]
    multipliers_bps: Mapping[str, int]

    @classmethod
    def from_config(cls, config: GatewayConfig) -> PriceBook:
        """Take the priced models and the group multipliers of the gateway config."""
        prices = {m.id: m.prices for m in config.models if m.prices}
        return cls(MappingProxyType(prices), MappingProxyType(dict(config.group_multipliers_bps)))

    def price(self, model: str, at: datetime | None = None) -> ModelPrice | None:
        """The model's price in effect at `at` (now when None): its newest entry that
        took effect at or before `at`; None when it has none in effect (then refused)."""
        when = datetime.now(UTC) if at is None else at
        for price in reversed(self.prices.get(model, ())):
            if price.effective_from is None or price.effective_from <= when:
                return price
        return None

    def multiplier_bps(self, group: str) -> int:
        """The group's multiplier; an unknown group pays the default group's."""
        if (bps := self.multipliers_bps.get(group)) is not None:
            return bps
        return self.multipliers_bps.get(DEFAULT_GROUP, FULL_MULTIPLIER_BPS)

    def tariff(self, model: str, group: str, at: datetime | None = None) -> Tariff | None:
        """The resolved prices for a request at `at`, or None when the model is not priced."""
        price = self.price(model, at)
        return None if price is None else self.tariff_of(price, group)

    def tariff_of(self, price: ModelPrice, group: str) -> Tariff:
        """The tariff of `price` for `group`; a model without token prices gets 0 for them.

        Those zeros never bill tokens the model does not price: reserve refuses such a
        request (`covers`) before it gets a hold. Cache hits and cache writes without a
        price of their own pay the prompt price, reasoning tokens the completion price.
        """
        prompt = price.prompt or 0
        completion = price.completion or 0
        return Tariff(
            prompt,
            completion,
            prompt if price.cached_prompt is None else price.cached_prompt,
            self.multiplier_bps(group),
            price.units,
            cache_write_nanos=(
                prompt if price.cache_write_prompt is None else price.cache_write_prompt),
            reasoning_nanos=completion if price.reasoning is None else price.reasoning,
            request_nanos=price.request,
        )
