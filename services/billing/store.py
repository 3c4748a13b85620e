"""Billing persistence: the `BillingStore` protocol and its SQL implementation.

Each method is one transaction, atomic on its own, and one await: its body is a sync
function over a Core `Connection`, run whole by a `TransactionRunner` (synchronously on
the loop for SQLite, `run_sync` on PostgreSQL). The rules (what to hold, what to charge, what
a replay means) live in `core.py`. The one check done here is the no-overdraft guard of
`place_hold`, because only inside the wallet's row lock can it be exact.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.billing import queries as q
from services.billing.domain import (
    Hold,
    HoldStatus,
    NewHold,
    PlaceOutcome,
    SettleOutcome,
    TopUp,
    TopUpOutcome,
    UsageReport,
    Wallet,
)
from services.billing.errors import AmountOutOfRange, StoreUnavailable
from services.billing.runner import Rollback, TransactionRunner
from services.common.charges import INT64_MAX, Tariff

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
PriceOf = Callable[[Tariff], int]


class BillingStore(Protocol):
    """Atomic operations on wallets, holds, the ledger and usage records."""

    async def get_wallet(self, account_id: str) -> Wallet:
        """The wallet, or the zero wallet when the account has none."""

    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        """Insert the hold if available covers it, or return the existing one (created=False)."""

    async def settle_hold(self, report: UsageReport, price: PriceOf) -> SettleOutcome | None:
        """Settle an open hold at `price(its tariff)`, else report it as is; None if unknown."""

    async def release_hold(self, request_id: str, at: datetime) -> bool:
        """Move an open hold to released; False when the hold was not open."""

    async def add_credit(self, top_up: TopUp) -> TopUpOutcome:
        """Credit the wallet (created if needed), or report the top-up already recorded."""


def _unavailable_on_db_errors(
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

    @_unavailable_on_db_errors
    async def get_wallet(self, account_id: str) -> Wallet:
        """The wallet, or the zero wallet when the account has none."""
        return await self._runner.read(_wallet, account_id)

    @_unavailable_on_db_errors
    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        """Insert the hold if available covers it, or return the existing one (created=False)."""
        return await self._runner.write(_place, hold)

    @_unavailable_on_db_errors
    async def settle_hold(self, report: UsageReport, price: PriceOf) -> SettleOutcome | None:
        """Settle an open hold at `price(its tariff)`, else report it as is; None if unknown."""
        return await self._runner.write(_settle, report, price)

    @_unavailable_on_db_errors
    async def release_hold(self, request_id: str, at: datetime) -> bool:
        """Move an open hold to released; False when the hold was not open."""
        return await self._runner.write(_release, request_id, at)

    @_unavailable_on_db_errors
    async def add_credit(self, top_up: TopUp) -> TopUpOutcome:
        """Credit the wallet (created if needed), or report the top-up already recorded."""
        try:
            return await self._runner.write(_credit, top_up)
        except IntegrityError:
            # A concurrent top-up with the same reference committed first; the unique
            # reference rolled this one back whole, balance update included.
            if not top_up.reference:
                raise
            earlier = await self._runner.read(_earlier_top_up, top_up)
            if earlier is None:
                raise
            return earlier


# The transaction bodies: sync, one per store operation, shared by both databases.


def _wallet(conn: Connection, account_id: str) -> Wallet:
    return q.read_wallet(conn, account_id) or Wallet(account_id)


def _place(conn: Connection, hold: NewHold) -> PlaceOutcome:
    # The hold goes in first: the unique request id arbitrates replays (a concurrent
    # duplicate waits for this transaction, then finds the row), and the conditional
    # UPDATE of the wallet arbitrates the money; no read is needed on the happy path.
    if not q.insert_hold(conn, hold):
        existing = q.read_hold(conn, hold.request_id)
        return PlaceOutcome(existing, _wallet(conn, hold.account_id), False)
    wallet = q.hold_on_wallet(conn, hold.account_id, hold.amount_nanos, hold.at)
    if wallet is None:
        current = q.read_wallet(conn, hold.account_id)
        if current is not None or hold.amount_nanos > 0:
            # Available does not cover it: undo the hold row, report the wallet.
            raise Rollback(PlaceOutcome(None, current or Wallet(hold.account_id), False))
        # A zero hold on an account without a wallet: settle will need the row.
        q.create_wallet(conn, hold.account_id, hold.at)
        wallet = Wallet(hold.account_id)
    stored = Hold(
        hold.request_id,
        hold.account_id,
        hold.key_id,
        hold.group,
        hold.model,
        hold.tariff,
        hold.amount_nanos,
        HoldStatus.OPEN,
    )
    return PlaceOutcome(stored, wallet, True)


def _settle(conn: Connection, report: UsageReport, price: PriceOf) -> SettleOutcome | None:
    # Locked first (FOR UPDATE; SQLite's writers are serialized anyway), so concurrent
    # settles and a racing release queue behind this one and then see it closed.
    hold = q.read_hold(conn, report.request_id, lock=True)
    if hold is None:
        return None
    if hold.status is HoldStatus.OPEN:
        # Billed with the tariff snapshot taken at reserve time.
        charge = price(hold.tariff)
        # The conditional UPDATE stays the exactly-once arbiter: it matches only if open.
        if q.close_hold(conn, report.request_id, HoldStatus.SETTLED, charge, report.at):
            wallet = q.move_wallet(conn, hold.account_id, -charge, -hold.amount_nanos, report.at)
            q.insert_charge_entry(conn, report, hold.account_id, charge, wallet.balance_nanos)
            q.insert_usage_record(conn, report, hold, charge)
            settled = replace(hold, status=HoldStatus.SETTLED, charged_nanos=charge)
            return SettleOutcome(settled, wallet, True)
        hold = q.read_hold(conn, report.request_id) or hold
    return SettleOutcome(hold, _wallet(conn, hold.account_id), False)


def _release(conn: Connection, request_id: str, at: datetime) -> bool:
    closed = q.close_hold(conn, request_id, HoldStatus.RELEASED, 0, at)
    if closed is None:
        return False
    account_id, amount = closed
    q.move_wallet(conn, account_id, 0, -amount, at)
    return True


def _credit(conn: Connection, top_up: TopUp) -> TopUpOutcome:
    if top_up.reference and (earlier := _earlier_top_up(conn, top_up)) is not None:
        return earlier
    q.create_wallet(conn, top_up.account_id, top_up.at)
    locked = q.read_wallet(conn, top_up.account_id, lock=True) or Wallet(top_up.account_id)
    # Checked here because SQLite silently turns an overflowing integer into a float.
    if locked.balance_nanos + top_up.amount_nanos > INT64_MAX:
        raise AmountOutOfRange("the balance would not fit in int64 nano-USD")
    wallet = q.move_wallet(conn, top_up.account_id, top_up.amount_nanos, 0, top_up.at)
    q.insert_top_up_entry(conn, top_up, wallet.balance_nanos)
    return TopUpOutcome(top_up.account_id, top_up.amount_nanos, wallet, True)


def _earlier_top_up(conn: Connection, top_up: TopUp) -> TopUpOutcome | None:
    recorded = q.read_top_up(conn, top_up.reference)
    if recorded is None:
        return None
    account_id, amount = recorded
    return TopUpOutcome(account_id, amount, _wallet(conn, top_up.account_id), False)
