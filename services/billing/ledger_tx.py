"""The transaction bodies of the ledger: sync, one per store operation, for both databases.

Each body runs whole inside one transaction (see `runner.py`). Locks are always taken
in the same order, hold -> key budget -> wallet, so concurrent reserves, settles,
releases and expiries cannot deadlock one another on PostgreSQL. Every change of a
wallet's balance appends one transfer in the same transaction (double entry), so the
balance always equals the sum of the wallet's transfers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection

from services.billing import budget_queries as bq
from services.billing import ledger_queries as lq
from services.billing import queries as q
from services.billing.domain import (
    ADJUSTMENTS,
    FUNDING,
    INT64_MIN,
    REVENUE,
    WALLET_PREFIX,
    Hold,
    HoldStatus,
    Movement,
    MovementOutcome,
    NewHold,
    PlaceOutcome,
    ReleaseReport,
    SettleOutcome,
    TransferKind,
    Usage,
    UsageReport,
    UsageSource,
    Wallet,
    wallet_account,
)
from services.billing.errors import AmountOutOfRange
from services.billing.runner import Rollback
from services.billing.usage_records import RecordedRequest, insert_record, read_late
from services.common.charges import INT64_MAX, Tariff

PriceOf = Callable[[Tariff], int]
_NOTHING_USED = Usage(0, 0)


def wallet(conn: Connection, account_id: str) -> Wallet:
    """The wallet, or the zero wallet when the account has none."""
    return q.read_wallet(conn, account_id) or Wallet(account_id)


def place(conn: Connection, hold: NewHold) -> PlaceOutcome:
    """Insert the hold if the key budget and the available balance cover it."""
    # The hold goes in first: the unique request id arbitrates replays (a concurrent
    # duplicate waits for this transaction, then finds the row), and the conditional
    # UPDATE of the wallet arbitrates the money.
    if not q.insert_hold(conn, hold):
        existing = q.read_hold(conn, hold.request_id)
        return PlaceOutcome(existing, wallet(conn, hold.account_id), False)
    on_budget = _hold_on_budget(conn, hold)
    held = q.hold_on_wallet(conn, hold.account_id, hold.amount_nanos, hold.at)
    if held is None:
        current = q.read_wallet(conn, hold.account_id)
        if current is not None or hold.amount_nanos > 0:
            # Available does not cover it: undo the hold row (and budget), report the wallet.
            raise Rollback(PlaceOutcome(None, current or Wallet(hold.account_id), False))
        # A zero hold on an account without a wallet: settle will need the row.
        q.create_wallet(conn, hold.account_id, hold.at)
        held = Wallet(hold.account_id)
    if on_budget:
        q.mark_on_budget(conn, hold.request_id)
    stored = Hold(
        hold.request_id,
        hold.account_id,
        hold.key_id,
        hold.group,
        hold.model,
        hold.tariff,
        hold.amount_nanos,
        HoldStatus.OPEN,
        0,
        on_budget,
    )
    return PlaceOutcome(stored, held, True)


def _hold_on_budget(conn: Connection, hold: NewHold) -> bool:
    # Read only inside this transaction and under the row lock: two reserves of the same
    # key queue here, so they cannot pass its cap together.
    budget = bq.lock_budget(conn, hold.key_id) if hold.key_id else None
    if budget is None:
        return False
    rolled = budget.rolled(hold.at)
    if not rolled.admits(hold.amount_nanos):
        refused = PlaceOutcome(None, wallet(conn, hold.account_id), False, budget_exceeded=True)
        raise Rollback(refused)
    bq.write_budget(conn, rolled.with_hold(hold.amount_nanos), hold.at)
    return True


def settle(conn: Connection, report: UsageReport, price: PriceOf) -> SettleOutcome | None:
    """Charge an open (or expired: late) hold at `price(its tariff)`; None if unknown."""
    # Locked first (FOR UPDATE; SQLite's writers are serialized anyway), so concurrent
    # settles, a racing release and the expiry sweep queue behind this one.
    hold = q.read_hold(conn, report.request_id, lock=True)
    if hold is None:
        return None
    if hold.status in (HoldStatus.OPEN, HoldStatus.EXPIRED):
        # Billed with the tariff snapshot taken at reserve time; an error raised by
        # `price` rolls the whole settle back.
        charge = price(hold.tariff)
        late = hold.status is HoldStatus.EXPIRED
        # The conditional UPDATE stays the exactly-once arbiter.
        if q.close_hold(conn, hold.request_id, hold.status, HoldStatus.SETTLED, charge, report.at):
            return _charge(conn, hold, report, charge, late)
        hold = q.read_hold(conn, report.request_id) or hold
    late = hold.status is HoldStatus.SETTLED and read_late(conn, hold.request_id)
    return SettleOutcome(hold, wallet(conn, hold.account_id), False, late)


def _charge(
    conn: Connection, hold: Hold, report: UsageReport, charge: int, late: bool
) -> SettleOutcome:
    at = report.at
    budget = bq.lock_budget(conn, hold.key_id) if hold.key_id else None
    if budget is not None:
        budget = budget.rolled(at).with_charge(charge)
        # An expired hold was taken off the budget (and the wallet) by the sweep already.
        if hold.on_key_budget and not late:
            budget = budget.with_release(hold.amount_nanos)
        bq.write_budget(conn, budget, at)
    held_delta = 0 if late else -hold.amount_nanos
    after = q.move_wallet(conn, hold.account_id, -charge, held_delta, at)
    if after.balance_nanos < INT64_MIN:
        raise AmountOutOfRange("the balance would not fit in int64 nano-USD")
    if charge > 0:  # a zero charge moves nothing; the hold row records it
        account = wallet_account(hold.account_id)
        kind = TransferKind.CHARGE.value
        q.insert_transfer(conn, account, REVENUE, charge, kind, at, request_id=hold.request_id)
    record = RecordedRequest(
        hold, report.usage, report.usage_source, report.channel, charge, report.outcome, late, at
    )
    insert_record(conn, record)
    settled = replace(hold, status=HoldStatus.SETTLED, charged_nanos=charge)
    return SettleOutcome(settled, after, True, late)


def release(conn: Connection, report: ReleaseReport) -> bool:
    """Drop an open hold; record the outcome (at no cost) when given. False if not open."""
    released = _void(conn, report.request_id, HoldStatus.RELEASED, report.at)
    if report.outcome is not None:
        hold = q.read_hold(conn, report.request_id)
        if hold is not None:
            record = RecordedRequest(
                hold,
                _NOTHING_USED,
                UsageSource.NONE,
                report.channel,
                0,
                report.outcome,
                False,
                report.at,
            )
            # A settled (or already recorded) request keeps its record.
            insert_record(conn, record, if_absent=True)
    return released


def expire(conn: Connection, request_id: str, at: datetime) -> bool:
    """Void one open hold (the expiry sweep); False when it was resolved meanwhile."""
    return _void(conn, request_id, HoldStatus.EXPIRED, at)


def _void(conn: Connection, request_id: str, status: HoldStatus, at: datetime) -> bool:
    closed = q.close_hold(conn, request_id, HoldStatus.OPEN, status, 0, at)
    if closed is None:
        return False
    account_id, amount, key_id, on_budget = closed
    if on_budget and (budget := bq.lock_budget(conn, key_id)) is not None:
        bq.write_budget(conn, budget.with_release(amount), at)
    q.move_wallet(conn, account_id, 0, -amount, at)
    return True


def post_movement(conn: Connection, movement: Movement) -> MovementOutcome:
    """Credit or debit a wallet (created if needed) against its system account, once."""
    reference = f"{movement.kind.value}:{movement.reference}" if movement.reference else None
    if reference is not None and (earlier := earlier_movement(conn, movement)) is not None:
        return earlier
    account_id, amount, at = movement.account_id, movement.amount_nanos, movement.at
    q.create_wallet(conn, account_id, at)
    locked = q.read_wallet(conn, account_id, lock=True) or Wallet(account_id)
    # Checked here because SQLite silently turns an overflowing integer into a float.
    if not INT64_MIN <= locked.balance_nanos + amount <= INT64_MAX:
        raise AmountOutOfRange("the balance would not fit in int64 nano-USD")
    after = q.move_wallet(conn, account_id, amount, 0, at)
    system = FUNDING if movement.kind is TransferKind.TOPUP else ADJUSTMENTS
    own = wallet_account(account_id)
    debit, credit = (system, own) if amount > 0 else (own, system)
    q.insert_transfer(
        conn,
        debit,
        credit,
        abs(amount),
        movement.kind.value,
        at,
        reference=reference,
        note=movement.note,
    )
    return MovementOutcome(account_id, amount, after, True)


def earlier_movement(conn: Connection, movement: Movement) -> MovementOutcome | None:
    """The movement already recorded under the reference, with the requested wallet."""
    recorded = lq.read_reference(conn, f"{movement.kind.value}:{movement.reference}")
    if recorded is None:
        return None
    debit, credit, amount = recorded
    incoming = credit.startswith(WALLET_PREFIX)
    account_id = (credit if incoming else debit).removeprefix(WALLET_PREFIX)
    signed = amount if incoming else -amount
    return MovementOutcome(account_id, signed, wallet(conn, movement.account_id), False)
