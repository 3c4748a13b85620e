"""Billing persistence: the `BillingStore` protocol and its SQL implementation.

Each method is one transaction, atomic on its own, and one await: its body (see
`ledger_tx.py`) is a sync function over a Core `Connection`, run whole by a
`TransactionRunner` (synchronously on the loop for SQLite, `run_sync` on PostgreSQL).
The rules (what to hold, what to charge, what a replay means) live in `core.py`. The
checks done here are the ones only exact inside a row lock: the no-overdraft guard and
the key budget of `place_hold`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.billing import ledger_queries as lq
from services.billing import ledger_tx as tx
from services.billing.domain import (
    Movement,
    MovementOutcome,
    NewHold,
    PlaceOutcome,
    ReleaseReport,
    SettleOutcome,
    UsageReport,
    Wallet,
)
from services.billing.errors import StoreUnavailable
from services.billing.runner import TransactionRunner

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
PriceOf = tx.PriceOf


class BillingStore(Protocol):
    """Atomic operations on wallets, holds, the ledger and usage records."""

    async def get_wallet(self, account_id: str) -> Wallet:
        """The wallet, or the zero wallet when the account has none."""

    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        """Insert the hold if budget and available cover it, or return the existing one."""

    async def settle_hold(self, report: UsageReport, price: PriceOf) -> SettleOutcome | None:
        """Settle an open or expired hold at `price(its tariff)`; None if unknown."""

    async def release_hold(self, report: ReleaseReport) -> bool:
        """Move an open hold to released; False when the hold was not open."""

    async def expire_holds(self, now: datetime, limit: int) -> int:
        """Void up to `limit` open holds past their deadline; how many this call voided."""

    async def post_movement(self, movement: Movement) -> MovementOutcome:
        """Move money into or out of a wallet, or report the movement already recorded."""


def unavailable_on_db_errors(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn "cannot reach or lock the database" into StoreUnavailable (UNAVAILABLE)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (OperationalError, InterfaceError, PoolTimeout, OSError) as exc:
            logger.warning("billing database unavailable: %s", type(exc).__name__)
            raise StoreUnavailable("the billing database is unavailable") from exc

    return wrapper


class SqlBillingStore:
    """BillingStore on SQLAlchemy Core: SQLite or PostgreSQL, one await per operation."""

    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    @unavailable_on_db_errors
    async def get_wallet(self, account_id: str) -> Wallet:
        """The wallet, or the zero wallet when the account has none."""
        return await self._runner.read(tx.wallet, account_id)

    @unavailable_on_db_errors
    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        """Insert the hold if budget and available cover it, or return the existing one."""
        return await self._runner.write(tx.place, hold)

    @unavailable_on_db_errors
    async def settle_hold(self, report: UsageReport, price: PriceOf) -> SettleOutcome | None:
        """Settle an open or expired hold at `price(its tariff)`; None if unknown."""
        return await self._runner.write(tx.settle, report, price)

    @unavailable_on_db_errors
    async def release_hold(self, report: ReleaseReport) -> bool:
        """Move an open hold to released; False when the hold was not open."""
        return await self._runner.write(tx.release, report)

    @unavailable_on_db_errors
    async def expire_holds(self, now: datetime, limit: int) -> int:
        """Void up to `limit` open holds past their deadline; how many this call voided."""
        candidates = await self._runner.read(lq.expired_hold_ids, now, limit)
        expired = 0
        # One short transaction per hold: each takes the same locks, in the same order,
        # as a settle would, and a hold settled meanwhile simply does not match.
        for request_id in candidates:
            if await self._runner.write(tx.expire, request_id, now):
                expired += 1
        return expired

    @unavailable_on_db_errors
    async def post_movement(self, movement: Movement) -> MovementOutcome:
        """Move money into or out of a wallet, or report the movement already recorded."""
        try:
            return await self._runner.write(tx.post_movement, movement)
        except IntegrityError:
            # A concurrent movement with the same reference committed first; the unique
            # reference rolled this one back whole, balance update included.
            if not movement.reference:
                raise
            earlier = await self._runner.read(tx.earlier_movement, movement)
            if earlier is None:
                raise
            return earlier
