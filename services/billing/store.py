"""Billing persistence: the `BillingStore` protocol and its SQL implementation.

Each method is one transaction and is atomic on its own; the rules (what to hold, what
to charge, what a replay means) live in `core.py`. The one check done here is the
no-overdraft guard of `place_hold`, because only inside the wallet lock can it be exact.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.billing import queries as q
from services.billing.database import READ_ONLY
from services.billing.domain import (
    INT64_MAX,
    Charge,
    Hold,
    HoldStatus,
    NewHold,
    PlaceOutcome,
    Settlement,
    TopUp,
    TopUpOutcome,
    Wallet,
)
from services.billing.errors import AmountOutOfRange, StoreUnavailable

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class BillingStore(Protocol):
    """Atomic operations on wallets, holds, the ledger and usage records."""

    async def get_wallet(self, account_id: str) -> Wallet:
        """The wallet, or the zero wallet when the account has none."""

    async def get_hold(self, request_id: str) -> Hold | None:
        """The hold of a request, in whatever state it is."""

    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        """Insert the hold if available covers it, or return the existing one (created=False)."""

    async def settle_hold(self, charge: Charge) -> Settlement | None:
        """Move an open hold to settled and charge it; None when the hold was not open."""

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
    """BillingStore on SQLAlchemy async: SQLite or PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = engine.execution_options(**{READ_ONLY: True})

    @_unavailable_on_db_errors
    async def get_wallet(self, account_id: str) -> Wallet:
        """The wallet, or the zero wallet when the account has none."""
        async with self._reader.connect() as conn:
            row = (await conn.execute(q.read_wallet(account_id))).one_or_none()
        return Wallet(account_id, *(row or (0, 0)))

    @_unavailable_on_db_errors
    async def get_hold(self, request_id: str) -> Hold | None:
        """The hold of a request, in whatever state it is."""
        async with self._reader.connect() as conn:
            row = (await conn.execute(q.read_hold(request_id))).one_or_none()
        return None if row is None else q.hold_from_row(row)

    @_unavailable_on_db_errors
    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        """Insert the hold if available covers it, or return the existing one (created=False)."""
        try:
            async with self._engine.begin() as conn:
                return await self._place(conn, hold)
        except IntegrityError:
            # The same request id was inserted by a transaction that did not lock this
            # wallet (another account): the unique key arbitrated, report the winner.
            existing = await self.get_hold(hold.request_id)
            if existing is None:
                raise
            return PlaceOutcome(existing, await self.get_wallet(hold.account_id), False)

    async def _place(self, conn: AsyncConnection, hold: NewHold) -> PlaceOutcome:
        # Locking the wallet first serializes every reserve of the account, so the
        # available check below and the held increase cannot interleave with another.
        locked = (await conn.execute(q.read_wallet(hold.account_id, lock=True))).one_or_none()
        wallet = Wallet(hold.account_id, *(locked or (0, 0)))
        existing = (await conn.execute(q.read_hold(hold.request_id))).one_or_none()
        if existing is not None:
            return PlaceOutcome(q.hold_from_row(existing), wallet, False)
        if wallet.available_nanos < hold.amount_nanos:
            return PlaceOutcome(None, wallet, False)
        if locked is None:  # only a zero hold gets here without a wallet
            await conn.execute(q.create_wallet(conn.dialect.name, hold.account_id, hold.at))
        await conn.execute(q.insert_hold(hold))
        after = await self._move(conn, hold.account_id, 0, hold.amount_nanos, hold.at)
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
        return PlaceOutcome(stored, after, True)

    @_unavailable_on_db_errors
    async def settle_hold(self, charge: Charge) -> Settlement | None:
        """Move an open hold to settled and charge it; None when the hold was not open."""
        async with self._engine.begin() as conn:
            # The conditional UPDATE is the exactly-once arbiter: of concurrent settles
            # (or a settle racing a release) only one sees status 'open'.
            closing = q.close_hold(
                charge.request_id, HoldStatus.SETTLED, charge.charge_nanos, charge.at
            )
            hold = (await conn.execute(closing)).one_or_none()
            if hold is None:
                return None
            wallet = await self._move(
                conn, hold.account_id, -charge.charge_nanos, -hold.amount_nanos, charge.at
            )
            await conn.execute(q.insert_charge_entry(charge, hold.account_id, wallet.balance_nanos))
            await conn.execute(
                q.insert_usage_record(charge, hold.account_id, hold.key_id, hold.model)
            )
        return Settlement(charge.charge_nanos, wallet)

    @_unavailable_on_db_errors
    async def release_hold(self, request_id: str, at: datetime) -> bool:
        """Move an open hold to released; False when the hold was not open."""
        async with self._engine.begin() as conn:
            closing = q.close_hold(request_id, HoldStatus.RELEASED, 0, at)
            hold = (await conn.execute(closing)).one_or_none()
            if hold is None:
                return False
            await self._move(conn, hold.account_id, 0, -hold.amount_nanos, at)
        return True

    @_unavailable_on_db_errors
    async def add_credit(self, top_up: TopUp) -> TopUpOutcome:
        """Credit the wallet (created if needed), or report the top-up already recorded."""
        if top_up.reference and (earlier := await self._top_up(top_up)) is not None:
            return earlier
        try:
            async with self._engine.begin() as conn:
                return await self._credit(conn, top_up)
        except IntegrityError:
            # A concurrent top-up with the same reference committed first; the unique
            # reference rolled this one back whole, balance update included.
            earlier = await self._top_up(top_up) if top_up.reference else None
            if earlier is None:
                raise
            return earlier

    async def _credit(self, conn: AsyncConnection, top_up: TopUp) -> TopUpOutcome:
        await conn.execute(q.create_wallet(conn.dialect.name, top_up.account_id, top_up.at))
        balance, _ = (await conn.execute(q.read_wallet(top_up.account_id, lock=True))).one()
        # Checked here because SQLite silently turns an overflowing integer into a float.
        if balance + top_up.amount_nanos > INT64_MAX:
            raise AmountOutOfRange("the balance would not fit in int64 nano-USD")
        wallet = await self._move(conn, top_up.account_id, top_up.amount_nanos, 0, top_up.at)
        await conn.execute(q.insert_top_up_entry(top_up, wallet.balance_nanos))
        return TopUpOutcome(top_up.account_id, top_up.amount_nanos, wallet, True)

    async def _top_up(self, top_up: TopUp) -> TopUpOutcome | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(q.read_top_up(top_up.reference))).one_or_none()
        if row is None:
            return None
        wallet = await self.get_wallet(top_up.account_id)
        return TopUpOutcome(row.account_id, row.amount_nanos, wallet, False)

    @staticmethod
    async def _move(
        conn: AsyncConnection, account_id: str, balance_delta: int, held_delta: int, at: datetime
    ) -> Wallet:
        moving = q.move_wallet(account_id, balance_delta, held_delta, at)
        row = (await conn.execute(moving)).one()
        return Wallet(account_id, row.balance_nanos, row.held_nanos)
