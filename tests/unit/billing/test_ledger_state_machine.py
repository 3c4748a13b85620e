"""BL-7: a hypothesis state machine drives the ledger against an in-memory reference model.

The real Ledger and LedgerAdmin run on the real SQL store (SQLite in memory) with a fake
clock. Each rule computes its expected result from the reference model alone (the charge
with a Fraction oracle, not the shared formula) and checks the ledger's answer; after
every step the invariants must hold: each wallet equals the model, every balance equals
its transfers and every held amount its open holds (CheckLedger), the ledger nets to 0,
no hold is charged twice. Replays of every operation must answer what the first did.

PR size (`make test`): 500 examples x 50 steps, the anchor's minimum (about a minute);
`make soak` runs 2,000 x 50.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)
from sqlalchemy import Connection, select

from services.billing.admin import LedgerAdmin
from services.billing.admin_store import SqlAdminStore
from services.billing.core import Ledger, ReserveDecision, ReserveRequest, SettleRequest
from services.billing.database import create_schema, open_database
from services.billing.domain import Usage, UsageSource
from services.billing.errors import (
    CodeNotFound,
    CodeNotRedeemable,
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
)
from services.billing.models import WalletRow
from services.billing.pricing import PriceBook
from services.billing.runner import TransactionRunner
from services.billing.store import SqlBillingStore
from services.common.gateway_config import parse_gateway_config

T = TypeVar("T")
START = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
PROMPT, COMPLETION, CACHED, WRITE, REASONING, PER_REQUEST = 100, 300, 10, 150, 500, 7
GROUPS = {"default": 10_000, "vip": 8_500}
PRICES = PriceBook.from_config(
    parse_gateway_config(
        {
            "models": [
                {
                    "id": "m",
                    "price": {
                        "prompt": PROMPT,
                        "completion": COMPLETION,
                        "cached_prompt": CACHED,
                        "cache_write": WRITE,
                        "reasoning": REASONING,
                        "request": PER_REQUEST,
                    },
                }
            ],
            "groups": GROUPS,
        }
    )
)
HOLD_TTL_S = 60
# About 25 s of CPU (50 steps, a fresh SQLite database and a CheckLedger per step);
# The full size (2,000 examples) runs under `make soak`.
PR_EXAMPLES = 500
SOAK_EXAMPLES = 2_000
ACCOUNTS = ("a0", "a1", "a2")
REFERENCES = ("", "", "r1", "r2")


def oracle(group: str, prompt: int, cached: int, written: int, completion: int, reasoning: int) -> int:
    """The charge as a Fraction, rounded half up once: independent of the shared formula."""
    base = (
        (prompt - cached - written) * PROMPT
        + cached * CACHED
        + written * WRITE
        + (completion - reasoning) * COMPLETION
        + reasoning * REASONING
        + PER_REQUEST
    )
    exact = Fraction(base * GROUPS[group], 10_000)
    return math.floor(exact + Fraction(1, 2))


@dataclass
class ModelHold:
    """The reference model's view of a hold."""

    account: str
    group: str
    amount: int
    expires_at: datetime
    status: str = "open"
    charged: int = 0
    late: bool = False


@dataclass
class ModelWallet:
    """The reference model's view of a wallet."""

    balance: int = 0
    held: int = 0
    limit: int = 0

    @property
    def available(self) -> int:
        return self.balance + self.limit - self.held


@dataclass
class ModelCode:
    """The reference model's view of a redemption code."""

    amount: int
    expires_at: datetime | None
    redeemed_by: str | None = None


@dataclass
class Reference:
    """The model's record of the state the SUT was built on."""

    wallets: dict[str, ModelWallet] = field(default_factory=dict)
    holds: dict[str, ModelHold] = field(default_factory=dict)
    movements: dict[str, tuple[str, int]] = field(default_factory=dict)
    codes: dict[str, ModelCode] = field(default_factory=dict)
    transfers: int = 0

    def wallet(self, account: str) -> ModelWallet:
        return self.wallets.setdefault(account, ModelWallet())


class LedgerMachine(RuleBasedStateMachine):
    """Drives Ledger + LedgerAdmin on SQLite; checks them against `Reference`."""

    holds = Bundle("holds")
    codes = Bundle("codes")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = START
        self.db: TransactionRunner = open_database("sqlite://")
        self.run(create_schema(self.db))
        self.ledger = Ledger(SqlBillingStore(self.db), PRICES, self.clock, hold_ttl_s=HOLD_TTL_S)
        self.admin = LedgerAdmin(self.ledger, SqlAdminStore(self.db), self.clock)
        self.model = Reference()
        self.ids = itertools.count()

    def clock(self) -> datetime:
        return self.now

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()

    @initialize()
    def fund(self) -> None:
        # a2 starts empty: its reserves are refused until a top-up, a code or a limit.
        self.top_up("a0", 10_000_000, "")
        self.top_up("a1", 1_000_000, "")

    # Money in and out of wallets.

    @rule(
        account=st.sampled_from(ACCOUNTS),
        amount=st.integers(1, 3_000_000),
        reference=st.sampled_from(REFERENCES),
    )
    def top_up(self, account: str, amount: int, reference: str) -> None:
        self.movement("topup", account, amount, reference)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        amount=st.integers(-200_000, 200_000).filter(bool),
        reference=st.sampled_from(REFERENCES),
    )
    def adjust(self, account: str, amount: int, reference: str) -> None:
        self.movement("adjustment", account, amount, reference)

    def movement(self, kind: str, account: str, amount: int, reference: str) -> None:
        key = f"{kind}:{reference}"
        earlier = self.model.movements.get(key) if reference else None
        if kind == "topup":
            call = self.ledger.add_credit(account, amount, reference, "n")
        else:
            call = self.admin.adjust(account, amount, "fix", reference)
        if earlier is not None and earlier != (account, amount):
            with pytest.raises(IdempotencyConflict):
                self.run(call)
            return
        wallet = self.run(call)
        if earlier is None:
            self.model.wallet(account).balance += amount
            self.model.transfers += 1
            if reference:
                self.model.movements[key] = (account, amount)
        assert wallet.balance_nanos == self.model.wallet(account).balance

    @rule(account=st.sampled_from(ACCOUNTS), limit=st.sampled_from([0, 0, 50_000, 400_000]))
    def set_credit_limit(self, account: str, limit: int) -> None:
        wallet = self.run(self.admin.set_credit_limit(account, limit))
        self.model.wallet(account).limit = limit
        assert wallet.available_nanos == self.model.wallet(account).available

    # Two-phase charging.

    @rule(
        target=holds,
        account=st.sampled_from(ACCOUNTS),
        group=st.sampled_from(sorted(GROUPS)),
        prompt=st.integers(0, 1_000),
        max_completion=st.integers(0, 1_000),
        ttl=st.sampled_from([0, 5, 5, 120]),
    )
    def reserve(
        self, account: str, group: str, prompt: int, max_completion: int, ttl: int
    ) -> MultipleResults[str]:
        rid = f"req-{next(self.ids)}"
        request = ReserveRequest(rid, account, "k", group, "m", prompt, max_completion, hold_ttl_seconds=ttl)
        result = self.run(self.ledger.reserve(request))
        amount = oracle(group, prompt, 0, 0, max_completion, 0)
        wallet = self.model.wallet(account)
        if wallet.available >= amount:
            assert result.decision is ReserveDecision.RESERVED and result.held_nanos == amount
            wallet.held += amount
            expires = self.now + timedelta(seconds=ttl or HOLD_TTL_S)
            self.model.holds[rid] = ModelHold(account, group, amount, expires)
            # Admitted only within the available balance (+ credit limit): never over it.
            assert result.wallet.available_nanos == wallet.available >= 0
            return multiple(rid)
        assert result.decision is ReserveDecision.INSUFFICIENT_BALANCE
        assert result.held_nanos == 0
        # Refused: nothing to settle; the request id is unknown to every later call.
        with pytest.raises(HoldNotFound):
            self.run(self.ledger.settle(SettleRequest(rid, Usage(0, 0), UsageSource.UPSTREAM, "")))
        assert self.run(self.ledger.release(rid)) is False
        return multiple()

    @rule(
        target=holds,
        account=st.sampled_from(ACCOUNTS[:2]),
        prompt=st.integers(0, 50),
        max_completion=st.integers(0, 50),
        ttl=st.sampled_from([0, 5]),
    )
    def reserve_small(
        self, account: str, prompt: int, max_completion: int, ttl: int
    ) -> MultipleResults[str]:
        # A second way in, so that holds are common enough to expire, settle and release.
        return self.reserve(account, "vip", prompt, max_completion, ttl)

    @rule(rid=holds)
    def replay_reserve(self, rid: str) -> None:
        hold = self.model.holds[rid]
        request = ReserveRequest(rid, hold.account, "k", "default", "m", 0, 0)
        if hold.status != "open":
            with pytest.raises(HoldNotOpen):
                self.run(self.ledger.reserve(request))
            return
        result = self.run(self.ledger.reserve(request))
        assert result.decision is ReserveDecision.RESERVED and result.held_nanos == hold.amount

    @rule(
        rid=holds,
        prompt=st.integers(0, 3_000),
        shares=st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100)),
        completion=st.integers(0, 3_000),
    )
    def settle(
        self, rid: str, prompt: int, shares: tuple[int, int, int], completion: int
    ) -> None:
        cached = prompt * shares[0] // 100
        written = (prompt - cached) * shares[1] // 100
        reasoning = completion * shares[2] // 100
        usage = Usage(prompt, completion, cached, reasoning, cache_write_prompt_tokens=written)
        request = SettleRequest(rid, usage, UsageSource.UPSTREAM, "ch")
        hold = self.model.holds[rid]
        if hold.status == "released":
            with pytest.raises(HoldNotOpen):
                self.run(self.ledger.settle(request))
            return
        result = self.run(self.ledger.settle(request))
        if hold.status == "settled":
            # A replay answers the first charge, whatever usage it carries.
            assert (result.charged_nanos, result.late, result.newly_settled) == (
                hold.charged,
                hold.late,
                False,
            )
            return
        charge = oracle(hold.group, prompt, cached, written, completion, reasoning)
        wallet = self.model.wallet(hold.account)
        hold.late = hold.status == "expired"
        if not hold.late:
            wallet.held -= hold.amount
        wallet.balance -= charge
        hold.status, hold.charged = "settled", charge
        self.model.transfers += charge > 0
        assert (result.charged_nanos, result.late, result.newly_settled) == (charge, hold.late, True)
        # An immediate replay (a retry after a lost answer), other usage: the first result.
        retry = SettleRequest(rid, Usage(prompt + 1, completion), UsageSource.ESTIMATED, "")
        again = self.run(self.ledger.settle(retry))
        assert (again.charged_nanos, again.late, again.newly_settled) == (charge, hold.late, False)

    @rule(rid=holds)
    def release(self, rid: str) -> None:
        released = self.run(self.ledger.release(rid))
        hold = self.model.holds[rid]
        expected = hold.status == "open"
        assert released is expected
        assert self.run(self.ledger.release(rid)) is False  # a replay releases nothing
        if expected:
            hold.status = "released"
            self.model.wallet(hold.account).held -= hold.amount

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 200]))
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def expire(self) -> None:
        due = [
            (rid, hold)
            for rid, hold in self.model.holds.items()
            if hold.status == "open" and hold.expires_at <= self.now
        ]
        assert self.run(self.ledger.expire_holds()) == len(due)
        assert self.run(self.ledger.expire_holds()) == 0  # another sweeper finds nothing left
        for rid, hold in due:
            hold.status = "expired"
            self.model.wallet(hold.account).held -= hold.amount
            # A release after the sweep is a no-op: the hold stays settleable (late).
            assert self.run(self.ledger.release(rid)) is False

    # Redemption codes.

    @rule(
        target=codes,
        amount=st.integers(1, 500_000),
        lifetime=st.sampled_from([None, 30, 300]),
    )
    def create_code(self, amount: int, lifetime: int | None) -> str:
        expires = None if lifetime is None else self.now + timedelta(seconds=lifetime)
        batch = self.run(self.admin.create_codes(1, amount, expires, "", ""))
        (code,) = batch.codes
        self.model.codes[code] = ModelCode(amount, expires)
        return code

    @rule(account=st.sampled_from(ACCOUNTS), code=codes)
    def redeem(self, account: str, code: str) -> None:
        known = self.model.codes[code]
        wallet = self.model.wallet(account)
        call = self.admin.redeem(account, code)
        if known.redeemed_by is not None and known.redeemed_by != account:
            with pytest.raises(CodeNotRedeemable):
                self.run(call)
            return
        if known.redeemed_by is None and known.expires_at is not None and known.expires_at <= self.now:
            with pytest.raises(CodeNotRedeemable):
                self.run(call)
            return
        amount, after = self.run(call)
        if known.redeemed_by is None:
            known.redeemed_by = account
            wallet.balance += known.amount
            self.model.transfers += 1
        assert (amount, after.balance_nanos) == (known.amount, wallet.balance)

    @rule(code=st.sampled_from(["rc-" + "0" * 32, "nonsense"]))
    def redeem_unknown(self, code: str) -> None:
        with pytest.raises(CodeNotFound):
            self.run(self.admin.redeem("a0", code))

    # Invariants.

    @invariant()
    def wallets_match_the_model(self) -> None:
        # One read of every wallet row (a balance call per account costs three times more).
        rows = self.run(self.db.read(_all_wallets))
        expected = {
            account: (w.balance, w.held, w.limit)
            for account, w in self.model.wallets.items()
            if (w.balance, w.held, w.limit) != (0, 0, 0) or account in rows
        }
        assert rows == expected

    @invariant()
    def ledger_is_consistent(self) -> None:
        report = self.run(self.admin.check())
        assert report.mismatches == () and report.holds_resolved_twice == ()
        assert report.net_nanos == 0 and report.transfers == self.model.transfers


def _all_wallets(conn: Connection) -> dict[str, tuple[int, int, int]]:
    columns = (WalletRow.balance_nanos, WalletRow.held_nanos, WalletRow.credit_limit_nanos)
    rows = conn.execute(select(WalletRow.account_id, *columns))
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _machine_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


LedgerMachine.TestCase.settings = _machine_settings(PR_EXAMPLES)
# About a minute on an idle machine: past the suite's default per-test timeout when loaded.
TestLedgerMachine = pytest.mark.timeout(600)(LedgerMachine.TestCase)


class LedgerMachineSoak(LedgerMachine):
    """The same machine, for the soak run."""


TestLedgerMachineSoak = pytest.mark.timeout(1_800)(pytest.mark.soak(LedgerMachineSoak.TestCase))
TestLedgerMachineSoak.settings = _machine_settings(SOAK_EXAMPLES)
