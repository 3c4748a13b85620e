"""An in-memory BillingStore with the SQL store's semantics, for core tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.billing.domain import (
    Hold,
    HoldStatus,
    NewHold,
    PlaceOutcome,
    SettleOutcome,
    TopUp,
    TopUpOutcome,
    Usage,
    UsageReport,
    Wallet,
)
from services.common.charges import Tariff


@dataclass(frozen=True, slots=True)
class Entry:
    """A ledger line."""

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
    ledger: list[Entry] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)

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
        wallet = self._move(hold.account_id, 0, hold.amount_nanos)
        return PlaceOutcome(stored, wallet, True)

    async def settle_hold(
        self, report: UsageReport, price: Callable[[Tariff], int]
    ) -> SettleOutcome | None:
        hold = self.holds.get(report.request_id)
        if hold is None:
            return None
        if hold.status is not HoldStatus.OPEN:
            return SettleOutcome(hold, await self.get_wallet(hold.account_id), False)
        charge = price(hold.tariff)
        settled = replace(hold, status=HoldStatus.SETTLED, charged_nanos=charge)
        self.holds[report.request_id] = settled
        wallet = self._move(hold.account_id, -charge, -hold.amount_nanos)
        self.ledger.append(Entry(hold.account_id, "charge", -charge, wallet.balance_nanos))
        self.usage[report.request_id] = report.usage
        return SettleOutcome(settled, wallet, True)

    async def release_hold(self, request_id: str, at: datetime) -> bool:
        hold = self.holds.get(request_id)
        if hold is None or hold.status is not HoldStatus.OPEN:
            return False
        self.holds[request_id] = replace(hold, status=HoldStatus.RELEASED)
        self._move(hold.account_id, 0, -hold.amount_nanos)
        return True

    async def add_credit(self, top_up: TopUp) -> TopUpOutcome:
        if top_up.reference:
            for entry in self.ledger:
                if entry.reference == top_up.reference:
                    wallet = await self.get_wallet(top_up.account_id)
                    return TopUpOutcome(entry.account_id, entry.amount_nanos, wallet, False)
        wallet = self._move(top_up.account_id, top_up.amount_nanos, 0)
        self.ledger.append(
            Entry(
                top_up.account_id,
                "topup",
                top_up.amount_nanos,
                wallet.balance_nanos,
                top_up.reference,
            )
        )
        return TopUpOutcome(top_up.account_id, top_up.amount_nanos, wallet, True)

    def _move(self, account_id: str, balance_delta: int, held_delta: int) -> Wallet:
        old = self.wallets.get(account_id, Wallet(account_id))
        new = Wallet(account_id, old.balance_nanos + balance_delta, old.held_nanos + held_delta)
        self.wallets[account_id] = new
        return new
