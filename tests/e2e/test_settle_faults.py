"""BL-3 through the edge: settlements whose answers get lost are still charged once.

An edge (tests/e2e/instrumented_edge.py) reaches billing through a FaultProxy
(tests/faults.py) that applies every settlement but loses 10 % of the answers to
SettleCredit(s), and loses 5 % of those calls before billing sees them; the edge's
Settler retries (and spools what it still cannot confirm).
200 requests through openai.AsyncOpenAI, half of them streamed: every account's balance
must drop by exactly the sum of the `usage.cost` its client was told, nothing may stay
held, and the ledger must hold exactly one charge per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from tests.e2e.harness import CREDIT, Env, open_env, usage_cost
from tests.e2e.instrumented_edge import quiesce, start_edge
from tests.e2e.stack import base_url
from tests.faults import SETTLE, SETTLE_BATCH, FaultProxy, Faults, billing_request_ids
from tests.ledger_audit import LedgerAudit

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CONFIG = """
models:
  - {{id: fake-chat, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
channels:
  - {{name: fake, type: openai, base_url: "{base}", api_key_env: {env}, models: [fake-chat]}}
"""
REQUESTS = 200
ACCOUNTS = 4
CONCURRENCY = 20
DROP_RATE = 0.10  # settlements applied whose answer is lost
LOSE_RATE = 0.05  # settlements lost on the way (so a caller that never retries fails)
SEED = 7


@dataclass
class Rig:
    """The stack, the proxy in front of billing, the edge behind it, the auditor."""

    env: Env
    proxy: FaultProxy
    edge: TestServer
    audit: LedgerAudit


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp = tmp_path_factory.mktemp("settle-faults")
    async with open_env(tmp, CONFIG) as env:
        policy = Faults({SETTLE, SETTLE_BATCH}, DROP_RATE, SEED, billing_request_ids,
                        request_rate=LOSE_RATE)
        proxy = FaultProxy(f"127.0.0.1:{env.stack.services['billing'].port}", policy)
        await proxy.start()
        edge = await start_edge(env.stack, tmp / "apirelay.yaml", billing_addr=proxy.address)
        audit = LedgerAudit(f"sqlite+aiosqlite:///{tmp / 'home' / 'billing.db'}")
        try:
            yield Rig(env, proxy, edge, audit)
        finally:
            await audit.close()
            await edge.close()
            await proxy.stop()


async def one_request(client: openai.AsyncOpenAI, i: int) -> int:
    """Run request i (odd ones streamed); the cost its client was told, in nano-USD."""
    messages: Any = [{"role": "user", "content": f"request {i}"}]
    if i % 2 == 0:
        completion = await client.chat.completions.create(model="fake-chat", messages=messages)
        assert completion.usage is not None
        return usage_cost(completion.usage)
    stream = await client.chat.completions.create(
        model="fake-chat", messages=messages, stream=True,
        stream_options={"include_usage": True})
    costs = [usage_cost(chunk.usage) async for chunk in stream if chunk.usage is not None]
    assert len(costs) == 1
    return costs[0]


async def test_every_request_is_charged_once_although_settle_answers_get_lost(
    rig: Rig,
) -> None:
    accounts: list[str] = []
    clients: list[openai.AsyncOpenAI] = []
    for _ in range(ACCOUNTS):
        secret, account = await rig.env.funded_key()
        accounts.append(account)
        clients.append(openai.AsyncOpenAI(base_url=base_url(rig.edge), api_key=secret,
                                          max_retries=0))
    told = {account: 0 for account in accounts}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(i: int) -> None:
        async with gate:
            cost = await one_request(clients[i % ACCOUNTS], i)
        told[accounts[i % ACCOUNTS]] += cost

    try:
        await asyncio.gather(*(run(i) for i in range(REQUESTS)))
    finally:
        for client in clients:
            await client.close()
    await quiesce(rig.edge.app)
    policy = rig.proxy.policy
    assert sum(policy.lost_answers.values()) and sum(policy.lost_requests.values()), policy
    # Each settlement whose answer was lost was sent again: billing saw replays.
    in_the_dark = {rid for (_, rid), n in policy.lost.items() if n}
    assert all(policy.sent[rid] > 1 for rid in in_the_dark)
    for account in accounts:
        wallet = await rig.env.stack.wallet(account)
        assert (CREDIT - wallet.balance_nanos, wallet.held_nanos) == (told[account], 0)
        entries = await rig.audit.entries(account)
        charges = [e for e in entries if e.kind == "charge"]
        assert len(charges) == REQUESTS // ACCOUNTS
        assert len({e.request_id for e in charges}) == len(charges)
        assert -sum(e.amount_nanos for e in charges) == told[account]
        effects = await rig.audit.effects([str(e.request_id) for e in charges])
        assert all(len(done.usage_costs) == 1 for done in effects.values())
