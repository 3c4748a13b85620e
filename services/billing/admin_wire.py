"""Wire forms of the admin vocabulary: key budgets, ledger entries, ledger checks."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from apirelay.billing.v1 import billing_pb2
from services.billing.admin_types import LedgerEntry, LedgerReport
from services.billing.budgets import KeyBudget


def timestamp(at: datetime) -> Timestamp:
    """A protobuf timestamp of an aware time."""
    stamp = Timestamp()
    stamp.FromDatetime(at.astimezone(UTC))
    return stamp


def optional_time(message_has: bool, stamp: Timestamp) -> datetime | None:
    """The aware UTC time of a timestamp field, None when unset."""
    return stamp.ToDatetime(tzinfo=UTC) if message_has else None


def key_budget_to_proto(budget: KeyBudget) -> billing_pb2.KeyBudget:
    """The wire form of a (rolled) key budget."""
    return billing_pb2.KeyBudget(
        key_id=budget.key_id,
        daily_limit_nanos=budget.daily_limit_nanos,
        monthly_limit_nanos=budget.monthly_limit_nanos,
        spent_today_nanos=budget.day_spent_nanos,
        spent_month_nanos=budget.month_spent_nanos,
        held_nanos=budget.held_nanos,
    )


def entry_to_proto(entry: LedgerEntry) -> billing_pb2.LedgerEntry:
    """The wire form of a ledger entry."""
    return billing_pb2.LedgerEntry(
        id=entry.id,
        kind=entry.kind,
        amount_nanos=entry.amount_nanos,
        counterparty=entry.counterparty,
        request_id=entry.request_id,
        reference=entry.reference,
        note=entry.note,
        created_at=timestamp(entry.created_at),
    )


def report_to_proto(report: LedgerReport) -> billing_pb2.CheckLedgerResponse:
    """The wire form of a ledger check."""
    return billing_pb2.CheckLedgerResponse(
        wallets=report.wallets,
        transfers=report.transfers,
        mismatches=[
            billing_pb2.LedgerMismatch(
                account_id=m.account_id,
                balance_nanos=m.balance_nanos,
                transfers_nanos=m.transfers_nanos,
                held_nanos=m.held_nanos,
                open_holds_nanos=m.open_holds_nanos,
            )
            for m in report.mismatches
        ],
        holds_resolved_twice=list(report.holds_resolved_twice),
        net_nanos=report.net_nanos,
    )
