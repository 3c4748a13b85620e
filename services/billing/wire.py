"""Wire forms of the billing vocabulary: protos in and out, validated on the way in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from services.billing.core import ReserveRequest
from services.billing.domain import Usage, Wallet, unit_quantities
from services.common.charges import Tariff
from services.common.gateway_config import ModelPrice


def wallet_to_proto(wallet: Wallet) -> billing_pb2.Wallet:
    """The wire form of a wallet."""
    return billing_pb2.Wallet(
        account_id=wallet.account_id,
        balance_nanos=wallet.balance_nanos,
        held_nanos=wallet.held_nanos,
        available_nanos=wallet.available_nanos,
    )


def units_from_proto(units: Iterable[usage_pb2.UnitUsage]) -> Mapping[str, int]:
    """Unit quantities from the wire; a nameless, repeated or negative unit is invalid."""
    return unit_quantities((u.unit, u.quantity) for u in units)


def usage_from_proto(usage: usage_pb2.Usage) -> Usage:
    """Token counts and units from the wire; invalid ones raise InvalidBillingRequest."""
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        units=units_from_proto(usage.units),
    )


def reserve_from_proto(request: billing_pb2.ReserveCreditRequest) -> ReserveRequest:
    """A reserve request from the wire; malformed units raise InvalidBillingRequest."""
    return ReserveRequest(
        request_id=request.request_id,
        account_id=request.account_id,
        key_id=request.key_id,
        group=request.group,
        model=request.model,
        prompt_tokens=request.prompt_tokens,
        max_completion_tokens=request.max_completion_tokens,
        max_units=units_from_proto(request.max_units),
    )


def unit_prices_to_proto(prices: Mapping[str, int]) -> list[billing_pb2.UnitPrice]:
    """Unit prices on the wire, sorted by unit."""
    return [
        billing_pb2.UnitPrice(unit=unit, nanos_per_unit=nanos)
        for unit, nanos in sorted(prices.items())
    ]


def tariff_to_proto(tariff: Tariff) -> billing_pb2.Tariff:
    """The wire form of a hold's tariff."""
    return billing_pb2.Tariff(
        prompt_nanos_per_token=tariff.prompt_nanos,
        completion_nanos_per_token=tariff.completion_nanos,
        cached_prompt_nanos_per_token=tariff.cached_prompt_nanos,
        unit_prices=unit_prices_to_proto(tariff.unit_nanos),
        multiplier_bps=tariff.multiplier_bps,
    )


def price_to_proto(model: str, price: ModelPrice) -> billing_pb2.Price:
    """The wire form of a model's price; token prices a model does not set are 0."""
    return billing_pb2.Price(
        model=model,
        prompt_nanos_per_token=price.prompt or 0,
        completion_nanos_per_token=price.completion or 0,
        cached_prompt_nanos_per_token=price.cached_prompt or 0,
        unit_prices=unit_prices_to_proto(price.units),
    )
