"""Reads the billing database behind the service's back, to count what requests did.

An oracle for exactly-once tests: it does not trust the service's own answers (which a
replay may well repeat) but counts the rows a request left: its charge transfers, its
usage records and its hold. Read-only; tests filter by their own unique ids, so the
database may be shared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.billing.models import HoldRow, TransferRow, UsageRecordRow

_CHUNK = 400  # ids per IN (...) list, well under SQLite's bound on parameters


@dataclass
class Effects:
    """What one request id left in the ledger."""

    charges: list[int] = field(default_factory=list)  # amounts of its charge transfers
    charge_accounts: list[tuple[str, str]] = field(default_factory=list)  # (debit, credit)
    usage_costs: list[int] = field(default_factory=list)  # costs of its usage records
    hold_status: str | None = None
    hold_amount: int = 0
    hold_charged: int = 0


@dataclass(frozen=True)
class Entry:
    """One transfer touching an account, signed from the account's side."""

    kind: str
    amount_nanos: int
    request_id: str | None


def _chunks(ids: Collection[str]) -> Iterator[list[str]]:
    ordered = list(ids)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start:start + _CHUNK]


class LedgerAudit:
    """Read-only access to one billing database (its URL as the service was given it)."""

    def __init__(self, database_url: str) -> None:
        self._engine: AsyncEngine = create_async_engine(database_url, poolclass=NullPool)

    async def close(self) -> None:
        """Release the engine."""
        await self._engine.dispose()

    async def effects(self, request_ids: Collection[str]) -> dict[str, Effects]:
        """The charges, usage records and hold of each request id (an entry for each)."""
        found: dict[str, Effects] = defaultdict(Effects)
        async with self._engine.connect() as conn:
            for ids in _chunks(request_ids):
                charges = await conn.execute(
                    select(TransferRow.request_id, TransferRow.amount_nanos,
                           TransferRow.debit_account, TransferRow.credit_account)
                    .where(TransferRow.request_id.in_(ids), TransferRow.kind == "charge"))
                for rid, amount, debit, credit in charges:
                    found[str(rid)].charges.append(amount)
                    found[str(rid)].charge_accounts.append((debit, credit))
                usage = await conn.execute(
                    select(UsageRecordRow.request_id, UsageRecordRow.cost_nanos)
                    .where(UsageRecordRow.request_id.in_(ids)))
                for rid, cost in usage:
                    found[rid].usage_costs.append(cost)
                holds = await conn.execute(
                    select(HoldRow.request_id, HoldRow.status, HoldRow.amount_nanos,
                           HoldRow.charged_nanos).where(HoldRow.request_id.in_(ids)))
                for rid, status, amount, charged in holds:
                    effects = found[rid]
                    effects.hold_status, effects.hold_amount = status, amount
                    effects.hold_charged = charged
        return {rid: found[rid] for rid in request_ids}

    async def entries(self, account_id: str) -> list[Entry]:
        """Every transfer into or out of the account's wallet, signed, oldest first."""
        wallet = f"wallet:{account_id}"
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(TransferRow.kind, TransferRow.amount_nanos, TransferRow.request_id,
                       TransferRow.debit_account)
                .where((TransferRow.debit_account == wallet)
                       | (TransferRow.credit_account == wallet))
                .order_by(TransferRow.id))
            return [Entry(kind, -amount if debit == wallet else amount, rid)
                    for kind, amount, rid, debit in rows]

    async def open_holds(self, account_ids: Iterable[str]) -> dict[str, int]:
        """The accounts' open holds, by request id, with their amounts."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(HoldRow.request_id, HoldRow.amount_nanos)
                .where(HoldRow.account_id.in_(list(account_ids)), HoldRow.status == "open"))
            return {rid: amount for rid, amount in rows}

    async def usage_tokens(self, key_id: str) -> int:
        """Prompt plus completion tokens of the key's usage records."""
        async with self._engine.connect() as conn:
            total = await conn.scalar(
                select(func.coalesce(func.sum(UsageRecordRow.prompt_tokens
                                              + UsageRecordRow.completion_tokens), 0))
                .where(UsageRecordRow.key_id == key_id))
            return int(total or 0)
