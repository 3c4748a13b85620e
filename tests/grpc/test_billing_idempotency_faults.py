"""BL-3: reserve and settle are applied exactly once when their answers get lost.

The real BillingService (services.billing.server.start) on a SQLite file and on
PostgreSQL, behind a FaultProxy (tests/faults.py) that executes every ReserveCredit and
SettleCredit but loses 10 % of the answers (UNAVAILABLE after the commit). Callers retry
with the same request id until they get an answer, as the edge does. The oracle reads
the database itself (tests/ledger_audit.py): each request id must have exactly one
hold, one charge transfer and one usage record, of the amounts computed here from the
prices; wallets must add up; the service's own CheckLedger must find nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc
import pytest
import yaml
from google.protobuf.message import Message

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from services.billing.config import Settings
from services.billing.server import start
from tests.faults import RESERVE, SETTLE, FaultProxy, Faults, billing_request_ids
from tests.grpc.billing_helpers import ADMIN, ADMIN_KEY, RESERVED, balance, fund, settle, uid
from tests.ledger_audit import LedgerAudit

if TYPE_CHECKING:
    from tests.grpc.billing_helpers import Stub

T = TypeVar("T")

REQUESTS = int(os.environ.get("BL3_REQUESTS", "1000"))
SEED = int(os.environ.get("BL3_SEED", "20261123"))
DROP_RATE = 0.10
WORKERS = 10
ACCOUNTS = 20
CREDIT = 10**12
MAX_ATTEMPTS = 30  # 30 lost answers in a row at 10 %: never (1e-30)
REPLAY_EVERY = 5  # also replay every 5th job directly (the retries replay the rest)
CALL_TIMEOUT_S = 10.0
PRICES = {"m": (150, 600), "m2": (300, 1200)}  # nano-USD per prompt, completion token
CONFIG = {
    "models": [{"id": model, "price": {"prompt": prompt, "completion": completion}}
               for model, (prompt, completion) in PRICES.items()],
    "groups": {"default": 10_000},
}
REVENUE = "system:revenue"


@dataclass
class Rig:
    """The billing service, a direct stub, a stub through the proxy, the auditor."""

    direct: Stub
    faulty: Stub
    proxy: FaultProxy
    audit: LedgerAudit


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def rig(tmp_path: Path, database_url: str) -> AsyncIterator[Rig]:
    config = tmp_path / "apirelay.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    started = await start(Settings(listen_addr="127.0.0.1:0", database_url=database_url,
                                   config_path=str(config), admin_key=ADMIN_KEY))
    policy = Faults({RESERVE, SETTLE}, DROP_RATE, SEED, billing_request_ids)
    proxy = FaultProxy(f"127.0.0.1:{started.port}", policy)
    await proxy.start()
    direct = grpc.aio.insecure_channel(f"127.0.0.1:{started.port}")
    faulty = grpc.aio.insecure_channel(proxy.address)
    audit = LedgerAudit(database_url)
    try:
        yield Rig(billing_pb2_grpc.BillingServiceStub(direct),
                  billing_pb2_grpc.BillingServiceStub(faulty), proxy, audit)
    finally:
        await audit.close()
        await faulty.close()
        await direct.close()
        await proxy.stop()
        await started.stop(0)


async def until_answered(rpc: Callable[..., Awaitable[T]], request: Message) -> T:
    """Send again (same request) while the answer is lost; any other error is raised."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return await rpc(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
    raise AssertionError(f"no answer after {MAX_ATTEMPTS} attempts")


def reserve_request(
    account: str, request_id: str, prompt: int, max_completion: int, model: str = "m"
) -> billing_pb2.ReserveCreditRequest:
    return billing_pb2.ReserveCreditRequest(
        request_id=request_id, account_id=account, key_id="key-bl3", group="default",
        model=model, prompt_tokens=prompt, max_completion_tokens=max_completion)


def cost(model: str, prompt: int, completion: int) -> int:
    prompt_price, completion_price = PRICES[model]
    return prompt * prompt_price + completion * completion_price


@dataclass(frozen=True)
class Job:
    """One request of the run: who pays, its id, its token counts."""

    account: str
    request_id: str
    prompt: int
    max_completion: int
    completion: int
    replay: bool

    @property
    def hold(self) -> int:
        return cost("m", self.prompt, self.max_completion)

    @property
    def charge(self) -> int:
        return cost("m", self.prompt, self.completion)


async def run_job(rig: Rig, job: Job) -> bool:
    """Reserve and settle through the proxy, checking each answer (and, for some jobs, a
    direct replay); whether the settle answer the caller got said "newly settled"."""
    request = reserve_request(job.account, job.request_id, job.prompt, job.max_completion)
    reserved = await until_answered(rig.faulty.ReserveCredit, request)
    assert (reserved.decision, reserved.held_nanos) == (RESERVED, job.hold)
    if job.replay:
        replay = await rig.direct.ReserveCredit(request, timeout=CALL_TIMEOUT_S)
        assert (replay.decision, replay.held_nanos, replay.tariff) == (
            RESERVED, job.hold, reserved.tariff)
    usage = settle(job.request_id, prompt=job.prompt, completion=job.completion)
    settled = await until_answered(rig.faulty.SettleCredit, usage)
    assert settled.charged_nanos == job.charge
    if job.replay:
        again = await rig.direct.SettleCredit(usage, timeout=CALL_TIMEOUT_S)
        assert (again.charged_nanos, again.newly_settled) == (job.charge, False)
    return settled.newly_settled


def make_jobs(accounts: list[str], count: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        prompt, max_completion = rng.randint(1, 4000), rng.randint(1, 2000)
        jobs.append(Job(accounts[i % len(accounts)], uid(f"bl3-{i}"), prompt, max_completion,
                        rng.randint(0, max_completion), replay=i % REPLAY_EVERY == 0))
    return jobs


async def run_all(rig: Rig, jobs: list[Job]) -> dict[str, bool]:
    """Run the jobs on WORKERS concurrent callers; "newly settled" as told, by request id."""
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    told: dict[str, bool] = {}

    async def worker() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            told[job.request_id] = await run_job(rig, job)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return told


async def check_ledger(stub: Stub, accounts: list[str]) -> None:
    """CheckLedger finds nothing wrong with `accounts` (PostgreSQL is shared by tests)."""
    report = await stub.CheckLedger(billing_pb2.CheckLedgerRequest(), metadata=ADMIN)
    assert [m for m in report.mismatches if m.account_id in accounts] == []
    assert list(report.holds_resolved_twice) == [] and report.net_nanos == 0


async def test_lost_answers_never_apply_a_request_twice(rig: Rig) -> None:
    accounts = [await fund(rig.direct, CREDIT) for _ in range(ACCOUNTS)]
    jobs = make_jobs(accounts, REQUESTS, SEED)
    told = await run_all(rig, jobs)
    policy = rig.proxy.policy
    # The fault really happened, on both calls, at about the rate asked.
    for method in (RESERVE, SETTLE):
        assert REQUESTS * DROP_RATE / 2 < policy.lost_answers[method] < REQUESTS * DROP_RATE * 2
    for job in jobs:
        # The caller hears "newly settled" exactly when the first settle's answer came back.
        first_heard = policy.lost[(SETTLE, job.request_id)] == 0
        assert told[job.request_id] is first_heard, job
    effects = await rig.audit.effects([job.request_id for job in jobs])
    for job in jobs:
        done = effects[job.request_id]
        assert done.charges == [job.charge], job
        assert done.charge_accounts == [(f"wallet:{job.account}", REVENUE)], job
        assert done.usage_costs == [job.charge], job
        assert (done.hold_status, done.hold_amount, done.hold_charged) == (
            "settled", job.hold, job.charge), job
    for account in accounts:
        charged = sum(job.charge for job in jobs if job.account == account)
        wallet = await balance(rig.direct, account)
        assert (wallet.balance_nanos, wallet.held_nanos, wallet.available_nanos) == (
            CREDIT - charged, 0, CREDIT - charged)
        entries = await rig.audit.entries(account)
        assert sum(e.amount_nanos for e in entries) == wallet.balance_nanos
        assert [e.kind for e in entries].count("charge") == REQUESTS // ACCOUNTS
    assert await rig.audit.open_holds(accounts) == {}
    await check_ledger(rig.direct, accounts)


async def test_a_request_id_reused_for_another_account_or_model_is_refused(rig: Rig) -> None:
    owner, other = await fund(rig.direct, CREDIT), await fund(rig.direct, CREDIT)
    rids = [uid("bl3-conflict") for _ in range(40)]
    for rid in rids:
        first = await until_answered(rig.faulty.ReserveCredit,
                                     reserve_request(owner, rid, 100, 50))
        assert first.decision == RESERVED
        for account, model in ((other, "m"), (owner, "m2"), (other, "m2")):
            conflicting = reserve_request(account, rid, 100, 50, model)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await until_answered(rig.faulty.ReserveCredit, conflicting)
            assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    hold = cost("m", 100, 50)
    assert (await balance(rig.direct, other)).held_nanos == 0
    assert (await balance(rig.direct, owner)).held_nanos == hold * len(rids)
    for rid in rids:  # the owner's hold is untouched and settles normally
        settled = await until_answered(rig.faulty.SettleCredit,
                                       settle(rid, prompt=100, completion=10))
        assert settled.charged_nanos == cost("m", 100, 10)
    other_wallet = await balance(rig.direct, other)
    assert (other_wallet.balance_nanos, other_wallet.held_nanos) == (CREDIT, 0)
    assert [e.kind for e in await rig.audit.entries(other)] == ["topup"]
    effects = await rig.audit.effects(rids)
    assert all(effects[rid].charges == [cost("m", 100, 10)] for rid in rids)
    await check_ledger(rig.direct, [owner, other])


FANOUT = 6
CONCURRENT_KEYS = 30


async def test_concurrent_calls_with_one_request_id_have_one_effect(rig: Rig) -> None:
    account = await fund(rig.direct, CREDIT)
    rids = [uid("bl3-twin") for _ in range(CONCURRENT_KEYS)]
    hold, charge = cost("m", 300, 200), cost("m", 300, 120)
    reserves = await asyncio.gather(*(
        rig.direct.ReserveCredit(reserve_request(account, rid, 300, 200), timeout=CALL_TIMEOUT_S)
        for rid in rids for _ in range(FANOUT)), return_exceptions=True)
    answered = accepted_or_aborted(reserves)
    assert {(r.decision, r.held_nanos) for r in answered} == {(RESERVED, hold)}
    assert (await balance(rig.direct, account)).held_nanos == hold * len(rids)
    settles = await asyncio.gather(*(
        rig.direct.SettleCredit(settle(rid, prompt=300, completion=120), timeout=CALL_TIMEOUT_S)
        for rid in rids for _ in range(FANOUT)), return_exceptions=True)
    settled = accepted_or_aborted(settles)
    assert {s.charged_nanos for s in settled} == {charge}
    assert sum(s.newly_settled for s in settled) == len(rids)
    wallet = await balance(rig.direct, account)
    assert (wallet.balance_nanos, wallet.held_nanos) == (CREDIT - charge * len(rids), 0)
    effects = await rig.audit.effects(rids)
    assert all(effects[rid].charges == [charge] for rid in rids)
    assert all(effects[rid].usage_costs == [charge] for rid in rids)
    await check_ledger(rig.direct, [account])


async def test_concurrent_reserves_of_one_request_id_by_two_accounts_hold_once(
    rig: Rig,
) -> None:
    first, second = await fund(rig.direct, CREDIT), await fund(rig.direct, CREDIT)
    rids = [uid("bl3-race") for _ in range(CONCURRENT_KEYS)]
    callers = (first, second) * (FANOUT // 2)
    results = await asyncio.gather(*(
        rig.direct.ReserveCredit(reserve_request(account, rid, 300, 200),
                                 timeout=CALL_TIMEOUT_S)
        for rid in rids for account in callers), return_exceptions=True)
    for i, rid in enumerate(rids):
        told = list(zip(callers, results[i * len(callers):(i + 1) * len(callers)]))
        winners = {account for account, r in told if not isinstance(r, BaseException)}
        # One account holds; every caller of the other one is refused (or told to retry).
        assert len(winners) == 1, (rid, told)
        for account, result in told:
            if account not in winners:
                assert isinstance(result, grpc.aio.AioRpcError), (rid, told)
                assert result.code() == grpc.StatusCode.ALREADY_EXISTS, (rid, told)
            elif isinstance(result, BaseException):
                accepted_or_aborted([result])
    held = (await balance(rig.direct, first)).held_nanos + (
        await balance(rig.direct, second)).held_nanos
    assert held == cost("m", 300, 200) * len(rids)
    await check_ledger(rig.direct, [first, second])


def accepted_or_aborted(results: list[T | BaseException]) -> list[T]:
    """The answers; a concurrent duplicate may instead be told ABORTED (retry later)."""
    answers = []
    for result in results:
        if isinstance(result, BaseException):
            assert isinstance(result, grpc.aio.AioRpcError), result
            assert result.code() == grpc.StatusCode.ABORTED, result
        else:
            answers.append(result)
    return answers
