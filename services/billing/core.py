"""The ledger rules: reserve the maximum cost, settle the real cost once, release, expire.

The store makes each step atomic; this module decides amounts and what an outcome means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum

from services.billing.domain import (
    INT64_MIN,
    NO_OUTCOME,
    Hold,
    HoldStatus,
    Movement,
    NewHold,
    ReleaseReport,
    RequestOutcome,
    TransferKind,
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
DEFAULT_HOLD_TTL_S = 900
DEFAULT_EXPIRY_BATCH = 1000


def utc_now() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)


class ReserveDecision(Enum):
    """The outcome of a reserve."""

    RESERVED = "reserved"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    MODEL_NOT_PRICED = "model_not_priced"
    KEY_BUDGET_EXCEEDED = "key_budget_exceeded"


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
    # Seconds before the expiry sweep may void the hold; 0 for the service's default.
    hold_ttl_seconds: int = 0


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
    outcome: RequestOutcome = NO_OUTCOME


@dataclass(frozen=True, slots=True)
class SettleResult:
    """The charge, the wallet, whether this call settled it, whether it beat the hold, late."""

    charged_nanos: int
    wallet: Wallet
    newly_settled: bool
    exceeded_hold: bool = False
    # The hold had expired before the settlement (charged anyway; replays say so too).
    late: bool = False


def _require(value: str, name: str) -> None:
    if not value:
        raise InvalidBillingRequest(f"{name} is required")


class Ledger:
    """Reserve, settle, release, expire and top up, on top of an atomic store."""

    def __init__(
        self,
        store: BillingStore,
        prices: PriceBook,
        clock: Clock = utc_now,
        *,
        hold_ttl_s: int = DEFAULT_HOLD_TTL_S,
    ) -> None:
        if hold_ttl_s <= 0:
            raise ValueError("the default hold TTL must be positive")
        self._store = store
        self._prices = prices
        self._clock = clock
        self._hold_ttl_s = hold_ttl_s

    def price(self, model: str, at: datetime | None = None) -> ModelPrice:
        """The model's price in effect at `at` (now by default); ModelNotPriced if none."""
        _require(model, "model")
        price = self._prices.price(model, self._clock() if at is None else at)
        if price is None:
            raise ModelNotPriced(model)
        return price

    async def reserve(self, req: ReserveRequest) -> ReserveResult:
        """Hold the request's maximum cost (prompt, largest completion, most units); idempotent.

        MODEL_NOT_PRICED when the model has no price or its price does not cover the
        request: tokens on a model priced by units only, or a unit it does not price.
        KEY_BUDGET_EXCEEDED when the key's daily or monthly cap would be passed.
        """
        _require(req.request_id, "request_id")
        _require(req.account_id, "account_id")
        _require(req.model, "model")
        if req.hold_ttl_seconds < 0:
            raise InvalidBillingRequest("hold_ttl_seconds must not be negative")
        now = self._clock()
        maximum = Usage(req.prompt_tokens, req.max_completion_tokens, units=req.max_units)
        price = self._prices.price(req.model, now)
        if price is None or not covers(price, maximum):
            wallet = await self._store.get_wallet(req.account_id)
            return ReserveResult(ReserveDecision.MODEL_NOT_PRICED, 0, wallet)
        tariff = self._prices.tariff_of(price, req.group)
        ttl = timedelta(seconds=req.hold_ttl_seconds or self._hold_ttl_s)
        new = NewHold(
            req.request_id,
            req.account_id,
            req.key_id,
            req.group,
            req.model,
            tariff,
            charge_nanos(tariff, maximum),
            now,
            now + ttl,
        )
        outcome = await self._store.place_hold(new)
        hold = outcome.hold
        if hold is None:
            refusal = ReserveDecision.INSUFFICIENT_BALANCE
            if outcome.budget_exceeded:
                refusal = ReserveDecision.KEY_BUDGET_EXCEEDED
            return ReserveResult(refusal, 0, outcome.wallet)
        if not outcome.created:
            _check_replay(req, hold)
        return ReserveResult(
            ReserveDecision.RESERVED, hold.amount_nanos, outcome.wallet, hold.tariff
        )

    async def settle(self, req: SettleRequest) -> SettleResult:
        """Charge the real cost of a hold exactly once; replays return the first result.

        An expired hold is still charged (late). UnpricedUsage (nothing changed) when the
        usage holds a unit the hold's tariff does not price.
        """
        _require(req.request_id, "request_id")
        usage = req.usage

        def price(tariff: Tariff) -> int:
            # Billed with the tariff snapshot taken at reserve time, so a price change
            # between reserve and settle cannot make a request free or unbillable. Raised
            # inside the store's transaction, an error rolls the whole settle back.
            return charge_nanos(tariff, usage)

        report = UsageReport(
            req.request_id, usage, req.usage_source, req.channel, self._clock(), req.outcome
        )
        outcome = await self._store.settle_hold(report, price)
        if outcome is None:
            raise HoldNotFound(req.request_id)
        hold = outcome.hold
        if outcome.settled_now:
            return self._settled(hold, outcome.wallet, outcome.late)
        # A replay, or a release won: report what happened.
        if hold.status is not HoldStatus.SETTLED:
            raise HoldNotOpen(req.request_id, hold.status.value)
        return SettleResult(hold.charged_nanos, outcome.wallet, False, late=outcome.late)

    @staticmethod
    def _settled(hold: Hold, wallet: Wallet, late: bool) -> SettleResult:
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
        if late:
            logger.warning("request %s settled after its hold expired", hold.request_id)
        return SettleResult(hold.charged_nanos, wallet, True, exceeded, late)

    async def release(
        self, request_id: str, outcome: RequestOutcome | None = None, channel: str = ""
    ) -> bool:
        """Drop an open hold without charge; False when there was no open hold.

        With an `outcome`, the usage log records the request at no cost (unless it has a
        record already).
        """
        _require(request_id, "request_id")
        report = ReleaseReport(request_id, self._clock(), outcome, channel)
        return await self._store.release_hold(report)

    async def expire_holds(self, limit: int = 0) -> int:
        """Void open holds past their deadline (at most `limit`, 0: the default batch)."""
        if limit < 0:
            raise InvalidBillingRequest("limit must not be negative")
        return await self._store.expire_holds(self._clock(), limit or DEFAULT_EXPIRY_BATCH)

    async def add_credit(
        self, account_id: str, amount_nanos: int, reference: str, note: str
    ) -> Wallet:
        """Add funds, creating the wallet if needed; idempotent by a non-empty reference."""
        _require(account_id, "account_id")
        if amount_nanos <= 0:
            raise InvalidBillingRequest("amount_nanos must be positive")
        return await self.move(
            Movement(account_id, amount_nanos, TransferKind.TOPUP, reference, note, self._clock())
        )

    async def move(self, movement: Movement) -> Wallet:
        """Post a top-up or an adjustment; a replayed reference must carry the same movement."""
        if not INT64_MIN <= movement.amount_nanos <= INT64_MAX:
            raise AmountOutOfRange("amount_nanos does not fit in int64")
        outcome = await self._store.post_movement(movement)
        if not outcome.created and (outcome.account_id, outcome.amount_nanos) != (
            movement.account_id,
            movement.amount_nanos,
        ):
            raise IdempotencyConflict(
                f"reference {movement.reference!r} was used for a different {movement.kind}"
            )
        return outcome.wallet

    async def balance(self, account_id: str) -> Wallet:
        """The account's wallet (zero when it has none)."""
        _require(account_id, "account_id")
        return await self._store.get_wallet(account_id)


def _check_replay(req: ReserveRequest, hold: Hold) -> None:
    # A replay: the same request must be the same request, and still open.
    if (hold.account_id, hold.model) != (req.account_id, req.model):
        raise IdempotencyConflict(
            f"request {req.request_id!r} was reserved for another account or model"
        )
    if hold.status is not HoldStatus.OPEN:
        raise HoldNotOpen(req.request_id, hold.status.value)
