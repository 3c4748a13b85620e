"""An in-memory BillingStore with the SQL store's semantics, for core tests (no budgets)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from services.billing.domain import (
    Hold,
    HoldStatus,
    Movement,
    MovementOutcome,
    NewHold,
    PlaceOutcome,
    ReleaseReport,
    SettleOutcome,
    Usage,
    UsageReport,
    Wallet,
)
from services.billing.store import PriceOf


@dataclass(frozen=True, slots=True)
class Entry:
    """A transfer seen from its wallet: + in, - out."""

    account_id: str
    kind: str
    amount_nanos: int
    balance_after_nanos: int
    reference: str = ""


@dataclass(slots=True)
class FakeBillingStore:
    """Dicts instead of tables; every method is trivially atomic (no awaits inside)."""

    wallets: dict[str, Wallet] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    deadlines: dict[str, datetime] = field(default_factory=dict)
    ledger: list[Entry] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)
    late: set[str] = field(default_factory=set)

    async def get_wallet(self, account_id: str) -> Wallet:
        return self.wallets.get(account_id, Wallet(account_id))

    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        wallet = await self.get_wallet(hold.account_id)
        if (existing := self.holds.get(hold.request_id)) is not None:
            return PlaceOutcome(existing, wallet, False)
        if wallet.available_nanos < hold.amount_nanos:
            return PlaceOutcome(None, wallet, False)
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
        self.holds[hold.request_id] = stored
        self.deadlines[hold.request_id] = hold.expires_at
        wallet = self._move(hold.account_id, 0, hold.amount_nanos)
        return PlaceOutcome(stored, wallet, True)

    async def settle_hold(self, report: UsageReport, price: PriceOf) -> SettleOutcome | None:
        hold = self.holds.get(report.request_id)
        if hold is None:
            return None
        if hold.status not in (HoldStatus.OPEN, HoldStatus.EXPIRED):
            late = report.request_id in self.late
            return SettleOutcome(hold, await self.get_wallet(hold.account_id), False, late)
        charge = price(hold.tariff)
        late = hold.status is HoldStatus.EXPIRED
        settled = replace(hold, status=HoldStatus.SETTLED, charged_nanos=charge)
        self.holds[report.request_id] = settled
        wallet = self._move(hold.account_id, -charge, 0 if late else -hold.amount_nanos)
        if charge:
            self.ledger.append(Entry(hold.account_id, "charge", -charge, wallet.balance_nanos))
        self.usage[report.request_id] = report.usage
        if late:
            self.late.add(report.request_id)
        return SettleOutcome(settled, wallet, True, late)

    async def release_hold(self, report: ReleaseReport) -> bool:
        return self._void(report.request_id, HoldStatus.RELEASED)

    async def expire_holds(self, now: datetime, limit: int) -> int:
        due = [r for r, at in self.deadlines.items() if at <= now][:limit]
        return sum(self._void(request_id, HoldStatus.EXPIRED) for request_id in due)

    async def post_movement(self, movement: Movement) -> MovementOutcome:
        if movement.reference:
            for entry in self.ledger:
                if entry.reference == f"{movement.kind}:{movement.reference}":
                    wallet = await self.get_wallet(movement.account_id)
                    return MovementOutcome(entry.account_id, entry.amount_nanos, wallet, False)
        wallet = self._move(movement.account_id, movement.amount_nanos, 0)
        reference = f"{movement.kind}:{movement.reference}" if movement.reference else ""
        self.ledger.append(
            Entry(
                movement.account_id,
                movement.kind.value,
                movement.amount_nanos,
                wallet.balance_nanos,
                reference,
            )
        )
        return MovementOutcome(movement.account_id, movement.amount_nanos, wallet, True)

    def _void(self, request_id: str, status: HoldStatus) -> bool:
        hold = self.holds.get(request_id)
        if hold is None or hold.status is not HoldStatus.OPEN:
            return False
        self.holds[request_id] = replace(hold, status=status)
        self._move(hold.account_id, 0, -hold.amount_nanos)
        return True

    def _move(self, account_id: str, balance_delta: int, held_delta: int) -> Wallet:
        old = self.wallets.get(account_id, Wallet(account_id))
        new = replace(
            old,
            balance_nanos=old.balance_nanos + balance_delta,
            held_nanos=old.held_nanos + held_delta,
        )
        self.wallets[account_id] = new
        return new
