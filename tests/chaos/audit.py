"""BL-1's verdict: the billing database read directly, held against the oracle.

A proof may read the tables (services/billing/models.py): holds, transfers (the
double-entry ledger), usage records, wallets. Every check is an exact integer
comparison; each violation is kept with its request or account so the failure message
says what broke.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from services.billing.models import HoldRow, TransferRow, UsageRecordRow, WalletRow
from tests.chaos.oracle import Expected, Observation, Seen, UpstreamCall, client_id
from tests.chaos.plan import RequestPlan
from tests.chaos.world import Account

WALLET = "wallet:"


@dataclass(frozen=True, slots=True)
class HoldFact:
    """One hold row."""

    request_id: str
    account_id: str
    status: str
    amount_nanos: int
    charged_nanos: int


@dataclass(frozen=True, slots=True)
class WalletFact:
    """One wallet row."""

    account_id: str
    balance_nanos: int
    held_nanos: int
    credit_limit_nanos: int

    @property
    def available_nanos(self) -> int:
        """What new requests may still reserve."""
        return self.balance_nanos + self.credit_limit_nanos - self.held_nanos


@dataclass
class LedgerSnapshot:
    """The billing tables after the run."""

    holds: dict[str, HoldFact] = field(default_factory=dict)
    charges: dict[str, list[int]] = field(default_factory=dict)  # client id -> amounts
    usage_costs: dict[str, list[int]] = field(default_factory=dict)  # client id -> costs
    wallets: dict[str, WalletFact] = field(default_factory=dict)
    # Ledger account -> credits - debits over all transfers.
    sums: Counter[str] = field(default_factory=Counter)


async def read_ledger(database_url: str) -> LedgerSnapshot:
    """Read holds, transfers, usage records and wallets."""
    engine = create_async_engine(database_url)
    snapshot = LedgerSnapshot()
    try:
        async with engine.connect() as conn:
            for h in await conn.execute(select(HoldRow.request_id, HoldRow.account_id,
                                               HoldRow.status, HoldRow.amount_nanos,
                                               HoldRow.charged_nanos)):
                snapshot.holds[h.request_id] = HoldFact(*h)
            for t in await conn.execute(select(TransferRow.debit_account,
                                               TransferRow.credit_account,
                                               TransferRow.amount_nanos, TransferRow.kind,
                                               TransferRow.request_id)):
                snapshot.sums[t.credit_account] += t.amount_nanos
                snapshot.sums[t.debit_account] -= t.amount_nanos
                if t.kind == "charge" and t.request_id is not None:
                    snapshot.charges.setdefault(client_id(t.request_id), []).append(
                        t.amount_nanos)
            for u in await conn.execute(select(UsageRecordRow.request_id,
                                               UsageRecordRow.cost_nanos)):
                snapshot.usage_costs.setdefault(client_id(u.request_id), []).append(
                    u.cost_nanos)
            for w in await conn.execute(select(WalletRow.account_id, WalletRow.balance_nanos,
                                               WalletRow.held_nanos,
                                               WalletRow.credit_limit_nanos)):
                snapshot.wallets[w.account_id] = WalletFact(*w)
    finally:
        await engine.dispose()
    return snapshot


@dataclass
class Findings:
    """Every violation found, by check; empty lists mean BL-1 holds."""

    charge_mismatches: list[str] = field(default_factory=list)
    double_charges: list[str] = field(default_factory=list)
    open_holds: list[str] = field(default_factory=list)
    unbilled_completions: list[str] = field(default_factory=list)
    phantom_charges: list[str] = field(default_factory=list)
    overdrafts: list[str] = field(default_factory=list)
    balance_errors: list[str] = field(default_factory=list)
    ledger_errors: list[str] = field(default_factory=list)
    shown_cost_errors: list[str] = field(default_factory=list)
    unexpected_outcomes: list[str] = field(default_factory=list)
    spool_leftovers: list[str] = field(default_factory=list)
    usage_log_errors: list[str] = field(default_factory=list)
    exact: int = 0  # requests whose charge had one right value
    bounded: int = 0  # client-disconnect requests checked against their set of values
    bounded_as: Counter[str] = field(default_factory=Counter)  # how those were billed

    def failed(self) -> dict[str, list[str]]:
        """The checks with violations."""
        return {name: value for name, value in vars(self).items()
                if isinstance(value, list) and value}


def check_requests(
    findings: Findings, plans: Sequence[RequestPlan], seen: Mapping[str, Observation],
    expected: Mapping[str, Expected], calls: Mapping[str, Sequence[UpstreamCall]],
    ledger: LedgerSnapshot,
) -> None:
    """Per request: the charge, one post at most, completions billed, no phantom charge."""
    for plan in plans:
        rid = plan.request_id
        want, got = expected[rid], ledger.charges.get(rid, [])
        observed = seen[rid]
        if len(got) > 1:
            findings.double_charges.append(f"{rid}: charged {got}")
        amount = sum(got)
        if amount not in want.amounts:
            findings.charge_mismatches.append(
                f"{rid}: charged {amount}, expected {_shown(want)} ({want.why}; "
                f"client {observed.seen.value} after {observed.chunks} chunks; upstream "
                f"{[(c.status, c.end, c.sent) for c in calls.get(rid, [])]})")
        elif want.exact:
            findings.exact += 1
        else:
            findings.bounded += 1
            findings.bounded_as[want.labels.get(amount, "?")] += 1
        if observed.seen is Seen.OK and len(got) != 1:
            findings.unbilled_completions.append(f"{rid}: {len(got)} charges")
        if amount and not any(c.status == 200 for c in calls.get(rid, [])):
            findings.phantom_charges.append(f"{rid}: charged {amount}, no upstream answer")
        if observed.shown_cost is not None and observed.shown_cost != amount:
            findings.shown_cost_errors.append(
                f"{rid}: the answer showed {observed.shown_cost}, the ledger charged {amount}")
        logged = ledger.usage_costs.get(rid, [])
        if len(logged) > 1 or sum(logged) != amount:
            findings.usage_log_errors.append(f"{rid}: usage log {logged}, ledger {amount}")
        if observed.seen is Seen.TRANSPORT_ERROR:
            findings.unexpected_outcomes.append(f"{rid}: {observed.error_code}")
    planned = {p.request_id for p in plans}
    for rid, amounts in ledger.charges.items():
        if rid not in planned:
            findings.phantom_charges.append(f"{rid}: charged {amounts}, never requested")


def check_holds(findings: Findings, ledger: LedgerSnapshot) -> None:
    """No hold is left open (after the expiry sweep)."""
    for hold in ledger.holds.values():
        if hold.status == "open":
            findings.open_holds.append(f"{hold.request_id}: {hold.amount_nanos} held")


def check_wallets(findings: Findings, accounts: Sequence[Account], ledger: LedgerSnapshot,
                  plans: Sequence[RequestPlan]) -> None:
    """Balances: seeded minus charges, equal to the sum of transfers; no overdraft."""
    charged: Counter[int] = Counter()
    for plan in plans:
        charged[plan.account] += sum(ledger.charges.get(plan.request_id, []))
    for account in accounts:
        wallet = ledger.wallets.get(account.account_id)
        if wallet is None:
            findings.balance_errors.append(f"{account.account_id}: no wallet")
            continue
        want = account.seeded_nanos - charged[account.index]
        if wallet.balance_nanos != want:
            findings.balance_errors.append(
                f"{account.account_id}: balance {wallet.balance_nanos}, seeded - charges {want}")
        summed = ledger.sums[WALLET + account.account_id]
        if wallet.balance_nanos != summed:
            findings.ledger_errors.append(
                f"{account.account_id}: balance {wallet.balance_nanos}, transfers sum {summed}")
        if wallet.held_nanos != 0:
            findings.open_holds.append(f"{account.account_id}: wallet still holds "
                                       f"{wallet.held_nanos}")
        if wallet.available_nanos < 0 or wallet.balance_nanos < 0:
            findings.overdrafts.append(f"{account.account_id}: balance {wallet.balance_nanos}, "
                                       f"available {wallet.available_nanos}")
    net = sum(ledger.sums.values())
    if net != 0:
        findings.ledger_errors.append(f"the transfers do not net to 0: {net}")


def _shown(want: Expected) -> str:
    amounts = sorted(want.amounts)
    if len(amounts) <= 4:
        return str(amounts)
    return f"one of {len(amounts)} values in [{amounts[0]}, {amounts[-1]}]"
