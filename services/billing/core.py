"""The ledger rules: reserve the maximum cost, settle the real cost once, release.

The store makes each step atomic; this module decides amounts and what an outcome means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from services.billing.domain import (
    Hold,
    HoldStatus,
    NewHold,
    TopUp,
    Usage,
    UsageReport,
    UsageSource,
    Wallet,
    no_units,
)
from services.billing.errors import (
    AmountOutOfRange,
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
    InvalidBillingRequest,
    ModelNotPriced,
)
from services.billing.pricing import PriceBook, charge_nanos, covers
from services.billing.store import BillingStore
from services.common.charges import INT64_MAX, Tariff
from services.common.gateway_config import ModelPrice

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)


class ReserveDecision(Enum):
    """The outcome of a reserve."""

    RESERVED = "reserved"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    MODEL_NOT_PRICED = "model_not_priced"


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """A request asking for a hold of its maximum cost."""

    request_id: str
    account_id: str
    key_id: str
    group: str
    model: str
    prompt_tokens: int
    max_completion_tokens: int
    # The most of each non-token unit the request may consume (see domain.unit_quantities).
    max_units: Mapping[str, int] = field(default_factory=no_units)


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """The decision, the amount held (0 unless reserved), the wallet, the hold's tariff."""

    decision: ReserveDecision
    held_nanos: int
    wallet: Wallet
    # What the hold was placed at (the stored snapshot on a replay); None unless reserved.
    tariff: Tariff | None = None


@dataclass(frozen=True, slots=True)
class SettleRequest:
    """The real usage of a reserved request."""

    request_id: str
    usage: Usage
    usage_source: UsageSource
    channel: str


@dataclass(frozen=True, slots=True)
class SettleResult:
    """The charge, the wallet, whether this call settled it and whether it beat the hold."""

    charged_nanos: int
    wallet: Wallet
    newly_settled: bool
    exceeded_hold: bool = False


def _require(value: str, name: str) -> None:
    if not value:
        raise InvalidBillingRequest(f"{name} is required")


class Ledger:
    """Reserve, settle, release and top up, on top of an atomic store."""

    def __init__(self, store: BillingStore, prices: PriceBook, clock: Clock = utc_now) -> None:
        self._store = store
        self._prices = prices
        self._clock = clock

    def price(self, model: str) -> ModelPrice:
        """The model's price; ModelNotPriced when it has none."""
        _require(model, "model")
        price = self._prices.price(model)
        if price is None:
            raise ModelNotPriced(model)
        return price

    async def reserve(self, req: ReserveRequest) -> ReserveResult:
        """Hold the request's maximum cost (prompt, largest completion, most units); idempotent.

        MODEL_NOT_PRICED when the model has no price or its price does not cover the
        request: tokens on a model priced by units only, or a unit it does not price.
        """
        _require(req.request_id, "request_id")
        _require(req.account_id, "account_id")
        _require(req.model, "model")
        maximum = Usage(req.prompt_tokens, req.max_completion_tokens, units=req.max_units)
        price = self._prices.price(req.model)
        if price is None or not covers(price, maximum):
            wallet = await self._store.get_wallet(req.account_id)
            return ReserveResult(ReserveDecision.MODEL_NOT_PRICED, 0, wallet)
        tariff = self._prices.tariff_of(price, req.group)
        amount = charge_nanos(tariff, maximum)
        outcome = await self._store.place_hold(
            NewHold(
                req.request_id,
                req.account_id,
                req.key_id,
                req.group,
                req.model,
                tariff,
                amount,
                self._clock(),
            )
        )
        hold = outcome.hold
        if hold is None:
            return ReserveResult(ReserveDecision.INSUFFICIENT_BALANCE, 0, outcome.wallet)
        if not outcome.created:
            # A replay: the same request must be the same request, and still open.
            if (hold.account_id, hold.model) != (req.account_id, req.model):
                raise IdempotencyConflict(
                    f"request {req.request_id!r} was reserved for another account or model"
                )
            if hold.status is not HoldStatus.OPEN:
                raise HoldNotOpen(req.request_id, hold.status.value)
        return ReserveResult(
            ReserveDecision.RESERVED, hold.amount_nanos, outcome.wallet, hold.tariff
        )

    async def settle(self, req: SettleRequest) -> SettleResult:
        """Charge the real cost of an open hold exactly once; replays return the first result.

        UnpricedUsage (nothing changed) when the usage holds a unit the hold's tariff does
        not price.
        """
        _require(req.request_id, "request_id")
        usage = req.usage

        def price(tariff: Tariff) -> int:
            # Billed with the tariff snapshot taken at reserve time, so a price change
            # between reserve and settle cannot make a request free or unbillable. Raised
            # inside the store's transaction, an error rolls the whole settle back.
            return charge_nanos(tariff, usage)

        report = UsageReport(req.request_id, usage, req.usage_source, req.channel, self._clock())
        outcome = await self._store.settle_hold(report, price)
        if outcome is None:
            raise HoldNotFound(req.request_id)
        hold = outcome.hold
        if outcome.settled_now:
            return self._settled(hold, outcome.wallet)
        # A replay, or another settle or a release won: report what it did.
        if hold.status is not HoldStatus.SETTLED:
            raise HoldNotOpen(req.request_id, hold.status.value)
        return SettleResult(hold.charged_nanos, outcome.wallet, False)

    @staticmethod
    def _settled(hold: Hold, wallet: Wallet) -> SettleResult:
        # The hold is an upper bound only if the caller kept to max_completion_tokens and
        # its prompt estimate; when the real cost is higher we still charge all of it, so
        # the balance may go below zero by the estimate error.
        exceeded = hold.charged_nanos > hold.amount_nanos
        if exceeded:
            logger.info(
                "charge %s exceeds hold %s of request %s",
                hold.charged_nanos,
                hold.amount_nanos,
                hold.request_id,
            )
        return SettleResult(hold.charged_nanos, wallet, True, exceeded)

    async def release(self, request_id: str) -> bool:
        """Drop an open hold without charge; False when there was no open hold."""
        _require(request_id, "request_id")
        return await self._store.release_hold(request_id, self._clock())

    async def add_credit(
        self, account_id: str, amount_nanos: int, reference: str, note: str
    ) -> Wallet:
        """Add funds, creating the wallet if needed; idempotent by a non-empty reference."""
        _require(account_id, "account_id")
        if amount_nanos <= 0:
            raise InvalidBillingRequest("amount_nanos must be positive")
        if amount_nanos > INT64_MAX:
            raise AmountOutOfRange("amount_nanos does not fit in int64")
        outcome = await self._store.add_credit(
            TopUp(account_id, amount_nanos, reference, note, self._clock())
        )
        if not outcome.created and (outcome.account_id, outcome.amount_nanos) != (
            account_id,
            amount_nanos,
        ):
            raise IdempotencyConflict(f"reference {reference!r} was used for a different top-up")
        return outcome.wallet

    async def balance(self, account_id: str) -> Wallet:
        """The account's wallet (zero when it has none)."""
        _require(account_id, "account_id")
        return await self._store.get_wallet(account_id)
