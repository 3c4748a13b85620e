"""Wire forms of prices and tariffs (what a model costs, what a hold was placed at)."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from apirelay.billing.v1 import billing_pb2
from services.common.charges import Tariff
from services.common.gateway_config import ModelPrice


def unit_prices_to_proto(prices: Mapping[str, int]) -> list[billing_pb2.UnitPrice]:
    """Unit prices on the wire, sorted by unit."""
    return [
        billing_pb2.UnitPrice(unit=unit, nanos_per_unit=nanos)
        for unit, nanos in sorted(prices.items())
    ]


def tariff_to_proto(tariff: Tariff) -> billing_pb2.Tariff:
    """The wire form of a hold's tariff (every price resolved)."""
    return billing_pb2.Tariff(
        prompt_nanos_per_token=tariff.prompt_nanos,
        completion_nanos_per_token=tariff.completion_nanos,
        cached_prompt_nanos_per_token=tariff.cached_prompt_nanos,
        unit_prices=unit_prices_to_proto(tariff.unit_nanos),
        multiplier_bps=tariff.multiplier_bps,
        cache_write_nanos_per_token=tariff.cache_write_nanos,
        reasoning_nanos_per_token=tariff.reasoning_nanos,
        request_nanos=tariff.request_nanos,
    )


def price_to_proto(model: str, price: ModelPrice) -> billing_pb2.Price:
    """The wire form of a model's price; token prices a model does not set are 0 (for
    cached, cache-write and reasoning tokens: the prompt or completion price applies)."""
    message = billing_pb2.Price(
        model=model,
        prompt_nanos_per_token=price.prompt or 0,
        completion_nanos_per_token=price.completion or 0,
        cached_prompt_nanos_per_token=price.cached_prompt or 0,
        unit_prices=unit_prices_to_proto(price.units),
        cache_write_nanos_per_token=price.cache_write_prompt or 0,
        reasoning_nanos_per_token=price.reasoning or 0,
        request_nanos=price.request,
    )
    if price.effective_from is not None:
        since = Timestamp()
        since.FromDatetime(price.effective_from)
        message.effective_from.CopyFrom(since)
    return message
