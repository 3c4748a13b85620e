"""BL-1, ledger exactness under chaos (reliability-anchors §6.2): every nano-USD accounted.

2 edges, 2 routers, 2 billing replicas (one PostgreSQL database), auth, ratelimit
(Redis), each a real process; a deterministic upstream with a call log. Requests go
through both edges with the openai SDK, 70 % streaming, with client disconnects,
upstream cuts, 5xx before the first byte and answers without usage; a billing replica
is SIGKILLed at 30 % and 60 % of the run, a router at 45 %, and both billing replicas
at 80 % (so settlements must take the durable spool). After quiescence (the spool
drained, the edges stopped gracefully) and an expiry sweep, the ledger must equal the
oracle exactly: per request, per wallet, and in total.

Sizes: `BL1_REQUESTS` (PR default 2,000; the soak variant 10,000), `BL1_SEED` (logged in
the result line, so a failing run can be replayed), `BL1_CONCURRENCY`; `BL1_CODE_ROOT`
runs the gateway's processes from another copy of the tree (a snapshot, or a mutant).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from tests.backends import free_port
from tests.chaos import audit, quiesce
from tests.chaos.cluster import Cluster, ClusterConfig
from tests.chaos.oracle import Observation, Oracle, Seen, by_client_id
from tests.chaos.plan import RequestPlan, make_plans
from tests.chaos.process import ROOT
from tests.chaos.workload import ChaosStep, Workload
from tests.chaos.world import UPSTREAM_KEY_ENV, Account, create_accounts, tariffs, write_config

pytestmark = pytest.mark.integration

ACCOUNTS = 50
HOLD_TTL_S = 20
OUTAGE_S = 2.0  # how long a killed replica stays down


@dataclass
class Env:
    """A running cluster, its upstream, its billing database and its spool stream."""

    cluster: Cluster
    upstream_url: str
    database_url: str
    redis_url: str
    spool_stream: str


@pytest_asyncio.fixture
async def bl1(tmp_path: Path, postgres_url: str, redis_url: str) -> AsyncIterator[Env]:
    """The cluster on a fresh billing database; every process stopped afterwards."""
    run = uuid.uuid4().hex[:12]
    database, spool_stream = f"bl1_{run}", f"bl1:{run}:settlements"
    database_url = postgres_url.rsplit("/", 1)[0] + "/" + database
    port = free_port()
    upstream_url = f"http://127.0.0.1:{port}"
    extra_env = {
        UPSTREAM_KEY_ENV: "sk-bl1-upstream", "BILLING_HOLD_TTL_SECONDS": str(HOLD_TTL_S),
        "EDGE_SPOOL_STREAM": spool_stream, "EDGE_SHUTDOWN_GRACE_S": "30",
        "ROUTER_SHUTDOWN_GRACE_S": "5",
        **{f"{s}_LOG_LEVEL": "WARNING" for s in ("AUTH", "RATELIMIT", "ROUTER", "BILLING", "EDGE")},
    }
    cluster = Cluster(ClusterConfig(
        tmp_path, write_config(tmp_path / "apirelay.yaml", upstream_url), redis_url,
        database_url, extra_env, run_id=f"bl1:{run}",
        code_root=Path(os.environ.get("BL1_CODE_ROOT") or ROOT)))
    cluster.add_helper("upstream", [sys.executable, "-m", "tests.chaos.upstream", str(port)],
                       f"{upstream_url}/_calls")
    await _admin(postgres_url, f'CREATE DATABASE "{database}"')
    try:
        await cluster.start()
        yield Env(cluster, upstream_url, database_url, redis_url, spool_stream)
    finally:
        cluster.close()
        await _admin(postgres_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await quiesce.drop_keys(redis_url, f"bl1:{run}:*")


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def chaos_steps(cluster: Cluster) -> list[ChaosStep]:
    """The kills of a run, each restarted after OUTAGE_S."""
    def outage(*names: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def action() -> None:
            for name in names:
                cluster.kill(name)
            await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for an event
            for name in names:  # one at a time: see Cluster.start
                await cluster.restart(name)
        return action

    return [ChaosStep(0.30, "kill billing-0", outage("billing-0")),
            ChaosStep(0.45, "kill router-1", outage("router-1")),
            ChaosStep(0.60, "kill billing-1", outage("billing-1")),
            ChaosStep(0.80, "kill billing-0+1", outage("billing-0", "billing-1"))]


@dataclass
class Run:
    """What the client side of a run produced."""

    accounts: list[Account]
    plans: list[RequestPlan]
    seen: dict[str, Observation]
    workload: Workload


async def drive(env: Env, requests: int, seed: int, concurrency: int) -> Run:
    """Fund the accounts and send every request, with the chaos steps."""
    cluster = env.cluster
    accounts = await create_accounts(cluster, ACCOUNTS, f"bl1-{seed}-{uuid.uuid4().hex[:6]}")
    plans = make_plans(requests, ACCOUNTS, len(cluster.edge_urls), seed)
    workload = Workload(cluster.edge_urls, [a.secret for a in accounts], concurrency)
    seen = await workload.run(plans, chaos_steps(cluster))
    return Run(accounts, plans, seen, workload)


async def settle_down(env: Env, run: Run, findings: audit.Findings) -> dict[str, Any]:
    """Drain the spool, stop the edges, let lost holds expire, sweep, check the ledger."""
    drained = await quiesce.wait_spool_drained(env.redis_url, env.spool_stream)
    counters = await quiesce.edge_counters(env.cluster.edge_metrics_urls)
    exits = await env.cluster.stop_edges()
    waiting, dead = await quiesce.spool_depth(env.redis_url, env.spool_stream)
    if waiting or dead:
        findings.spool_leftovers.append(f"{waiting} settlements never applied, {dead} refused")
    # A hold whose settlement was lost expires HOLD_TTL_S after it was placed.
    await asyncio.sleep(max(0.0, run.workload.stats.last_start + HOLD_TTL_S + 1
                            - time.monotonic()))
    facts = await quiesce.sweep_and_check(env.cluster, findings)
    facts.update({"spool_before_stop": drained, "spool_after_stop": [waiting, dead],
                  "edge_exit_codes": exits, "edge_settlement": counters})
    return facts


async def judge(env: Env, run: Run, findings: audit.Findings) -> dict[str, Any]:
    """The oracle's expectations against the ledger; the facts for the result line."""
    ledger = await audit.read_ledger(env.database_url)
    calls = by_client_id(await quiesce.upstream_calls(env.upstream_url))
    groups = {a.index: a.group for a in run.accounts}
    oracle = Oracle(tariffs())
    expected = {p.request_id: oracle.expect(p, groups[p.account], run.seen[p.request_id],
                                            calls.get(p.request_id, [])) for p in run.plans}
    audit.check_requests(findings, run.plans, run.seen, expected, calls, ledger)
    audit.check_holds(findings, ledger)
    audit.check_wallets(findings, run.accounts, ledger, run.plans)
    return {
        "upstream_calls": sum(len(c) for c in calls.values()), "holds": len(ledger.holds),
        "charges": sum(len(c) for c in ledger.charges.values()), "exact": findings.exact,
        "bounded": findings.bounded, "disconnects_billed_as": findings.bounded_as,
    }


def _outcomes(seen: Mapping[str, Observation]) -> dict[str, Any]:
    errors = Counter(f"{o.status} {o.error_code}" for o in seen.values()
                     if o.seen in (Seen.HTTP_ERROR, Seen.STREAM_ERROR))
    return {"outcomes": Counter(o.seen.value for o in seen.values()), "errors": errors}


def _report(findings: audit.Findings, facts: Mapping[str, Any], cluster: Cluster) -> str:
    lines = [json.dumps(facts, sort_keys=True)]
    for check, violations in findings.failed().items():
        lines.append(f"{check}: {len(violations)}")
        lines += [f"  {v}" for v in violations[:8]]
    if findings.failed():
        for name, tail in cluster.logs().items():
            errors = [line for line in tail.splitlines() if '"level":"error"' in line]
            lines += [f"{name}: {e[:300]}" for e in errors[-3:]]
    return "\n".join(lines)


async def bl1_proof(env: Env, default_requests: int) -> None:
    """Run BL-1 at the configured size; print the result line; fail on any violation."""
    requests = int(os.environ.get("BL1_REQUESTS") or default_requests)
    seed = int(os.environ.get("BL1_SEED") or random.randrange(1, 1_000_000))
    concurrency = int(os.environ.get("BL1_CONCURRENCY") or 32)
    run = await drive(env, requests, seed, concurrency)
    findings = audit.Findings()
    facts: dict[str, Any] = {
        "test": "BL-1", "seed": seed, "requests": requests, "concurrency": concurrency,
        "run_seconds": round(run.workload.stats.seconds, 1), "chaos": run.workload.stats.steps,
        **_outcomes(run.seen),
    }
    facts.update(await settle_down(env, run, findings))
    facts.update(await judge(env, run, findings))
    facts["violations"] = {k: len(v) for k, v in findings.failed().items()}
    report = _report(findings, facts, env.cluster)
    print(report)
    assert not findings.failed(), report
    # A run where most requests failed would prove little.
    assert facts["outcomes"]["ok"] > requests * 2 // 5, report


@pytest.mark.timeout(240)
async def test_bl1_ledger_exact_under_chaos(bl1: Env) -> None:
    """PR size: 2,000 requests."""
    await bl1_proof(bl1, 2_000)


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_bl1_ledger_exact_under_chaos_nightly(bl1: Env) -> None:
    """Nightly size: 10,000 requests."""
    await bl1_proof(bl1, 10_000)
