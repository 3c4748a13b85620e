"""Persistence of the admin side: credit limits, key budgets, redemption codes, ledger reads.

Same shape as `store.py`: each method one transaction and one await, the rules in
`admin.py`.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Protocol

from sqlalchemy import Connection, update
from sqlalchemy.exc import IntegrityError

from services.billing import budget_queries as bq
from services.billing import ledger_queries as lq
from services.billing import queries as q
from services.billing.admin_types import (
    LedgerPage,
    LedgerReport,
    NewBatch,
    Redemption,
    RedemptionOutcome,
)
from services.billing.budgets import KeyBudget
from services.billing.domain import REDEMPTIONS, TransferKind, Wallet, wallet_account
from services.billing.errors import AmountOutOfRange
from services.billing.ledger_tx import wallet
from services.billing.models import WalletRow
from services.billing.runner import TransactionRunner
from services.billing.store import unavailable_on_db_errors
from services.common.charges import INT64_MAX


class RedeemRefusal(Enum):
    """Why a code could not be redeemed."""

    UNKNOWN = "unknown"
    TAKEN = "taken"
    EXPIRED = "expired"


class AdminStore(Protocol):
    """Atomic admin operations."""

    async def set_credit_limit(self, account_id: str, limit_nanos: int, at: datetime) -> Wallet:
        """Set the wallet's credit limit (creating the wallet); the wallet after."""

    async def get_key_budget(self, key_id: str) -> KeyBudget | None:
        """The stored budget of a key, None when it has none."""

    async def set_key_budget(self, budget: KeyBudget | None, key_id: str, at: datetime) -> None:
        """Create or change a key's caps (spend kept), or remove the budget (None)."""

    async def create_batch(self, batch: NewBatch) -> bool:
        """Store a batch of codes; False when its reference was used before."""

    async def redeem(self, redemption: Redemption) -> RedemptionOutcome | RedeemRefusal:
        """Credit the code's amount once, or say why not."""

    async def list_entries(self, account_id: str, before_id: int | None, limit: int) -> LedgerPage:
        """A page of a wallet's transfers, newest first."""

    async def check(self) -> LedgerReport:
        """The ledger's invariants, summed by the database."""


class SqlAdminStore:
    """AdminStore on SQLAlchemy Core."""

    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    @unavailable_on_db_errors
    async def set_credit_limit(self, account_id: str, limit_nanos: int, at: datetime) -> Wallet:
        """Set the wallet's credit limit (creating the wallet); the wallet after."""
        return await self._runner.write(_set_limit, account_id, limit_nanos, at)

    @unavailable_on_db_errors
    async def get_key_budget(self, key_id: str) -> KeyBudget | None:
        """The stored budget of a key, None when it has none."""
        return await self._runner.read(bq.read_budget, key_id)

    @unavailable_on_db_errors
    async def set_key_budget(self, budget: KeyBudget | None, key_id: str, at: datetime) -> None:
        """Create or change a key's caps (spend kept), or remove the budget (None)."""
        if budget is None:
            await self._runner.write(bq.delete_budget, key_id)
        else:
            await self._runner.write(bq.set_limits, budget, at)

    @unavailable_on_db_errors
    async def create_batch(self, batch: NewBatch) -> bool:
        """Store a batch of codes; False when its reference was used before."""
        try:
            return await self._runner.write(_create_batch, batch)
        except IntegrityError:
            # A concurrent creation with the same reference won (or, vanishingly
            # unlikely, a 128-bit code collided): report a replay only for the former.
            if not batch.reference:
                raise
            exists: bool = await self._runner.read(lq.batch_exists, batch.reference)
            if exists:
                return False
            raise

    @unavailable_on_db_errors
    async def redeem(self, redemption: Redemption) -> RedemptionOutcome | RedeemRefusal:
        """Credit the code's amount once, or say why not."""
        return await self._runner.write(_redeem, redemption)

    @unavailable_on_db_errors
    async def list_entries(self, account_id: str, before_id: int | None, limit: int) -> LedgerPage:
        """A page of a wallet's transfers, newest first."""
        return await self._runner.read(_page, wallet_account(account_id), before_id, limit)

    @unavailable_on_db_errors
    async def check(self) -> LedgerReport:
        """The ledger's invariants, summed by the database."""
        return await self._runner.read(_check)


def _set_limit(conn: Connection, account_id: str, limit_nanos: int, at: datetime) -> Wallet:
    q.create_wallet(conn, account_id, at)
    conn.execute(
        update(WalletRow)
        .where(WalletRow.account_id == account_id)
        .values(credit_limit_nanos=limit_nanos, updated_at=at)
    )
    return wallet(conn, account_id)


def _create_batch(conn: Connection, batch: NewBatch) -> bool:
    if batch.reference and lq.batch_exists(conn, batch.reference):
        return False
    lq.insert_batch(conn, batch)
    return True


def _redeem(conn: Connection, redemption: Redemption) -> RedemptionOutcome | RedeemRefusal:
    code = lq.lock_code(conn, redemption.code_hash)
    if code is None:
        return RedeemRefusal.UNKNOWN
    amount, expires_at, redeemer = code
    account_id, at = redemption.account_id, redemption.at
    if redeemer == account_id:
        return RedemptionOutcome(amount, wallet(conn, account_id))
    if redeemer is not None:
        return RedeemRefusal.TAKEN
    if expires_at is not None and expires_at <= at:
        return RedeemRefusal.EXPIRED
    # Under the row lock this always matches; it stays the arbiter all the same.
    if not lq.claim_code(conn, redemption.code_hash, account_id, at):
        return RedeemRefusal.TAKEN
    q.create_wallet(conn, account_id, at)
    locked = q.read_wallet(conn, account_id, lock=True) or Wallet(account_id)
    if locked.balance_nanos + amount > INT64_MAX:
        raise AmountOutOfRange("the balance would not fit in int64 nano-USD")
    after = q.move_wallet(conn, account_id, amount, 0, at)
    q.insert_transfer(
        conn,
        REDEMPTIONS,
        wallet_account(account_id),
        amount,
        TransferKind.REDEMPTION.value,
        at,
        reference=f"{TransferKind.REDEMPTION.value}:{redemption.code_hash}",
    )
    return RedemptionOutcome(amount, after)


def _page(conn: Connection, account: str, before_id: int | None, limit: int) -> LedgerPage:
    # One more than asked tells whether another page follows.
    entries = lq.list_entries(conn, account, before_id, limit + 1)
    more = len(entries) > limit
    page = tuple(entries[:limit])
    return LedgerPage(page, page[-1].id if more and page else None)


def _check(conn: Connection) -> LedgerReport:
    wallets, transfers, mismatches = lq.ledger_sums(conn)
    twice = lq.charged_twice(conn)
    return LedgerReport(wallets, transfers, tuple(mismatches), tuple(twice), lq.net_nanos(conn))
