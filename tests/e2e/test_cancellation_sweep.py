"""BL-4: a request cancelled at any await of its path leaves no hold, slot or reservation.

The path reserve -> forward -> stream -> settle has await points on the edge's service
clients: the limiter acquire and the billing reserve (in parallel), then the router
call and, for a stream, each read of it (a paced upstream sends its events a few ms
apart, so the router relays them as separate items: the first one, those in the middle,
the last one with the usage). A dry run lists the points (k = 1..K); then, for every k
and both sides of it (as the await begins, and once its call has answered), 20
requests have their handler task cancelled exactly there (tests/e2e/cancel_points.py),
as aiohttp does when a client goes away. Then 20 streams are cut by the client itself.

After each request the edge's settlement is drained (tests/e2e/instrumented_edge.py
quiesce), so the next one finds whatever the previous one left. The key allows one
request at a time, so a leaked concurrency slot refuses the next request. After each
batch: no open hold (wallet and holds table), the limiter admits a probe at once, and
its TPM window holds exactly the tokens billed (a leaked reservation would still count
its estimate there).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from apirelay.billing.v1 import billing_pb2
from edge.domain import LimitKind
from edge.keys import AUTHENTICATOR, CLIENTS
from tests.e2e import fake_wire as wire
from tests.e2e.cancel_points import PLAN_HEADER, CancelPoints, Phase, Plan
from tests.e2e.harness import CREDIT, Env, open_env
from tests.e2e.instrumented_edge import quiesce, start_edge
from tests.e2e.stack import base_url
from tests.ledger_audit import LedgerAudit

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MODEL = "paced-chat"
CONFIG = """
models:
  - {{id: fake-chat, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
  - {{id: paced-chat, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
channels:
  - {{name: fake, type: openai, base_url: "{base}", api_key_env: {env}, models: [fake-chat]}}
  - {{name: paced, type: openai, base_url: "PACED_BASE", api_key_env: {env},
      models: [paced-chat]}}
"""
PACED_WORDS = ["One", " two", " three", " four"]
PACE_S = 0.005
REPEATS = 20
TPM = 10_000_000
RPM = 1_000_000
REQUEST_TIMEOUT_S = 10.0
ADMISSION_CALLS = 2  # acquire and reserve, started together
MAX_TRIES = 3  # runs per wanted cancellation, for streams relayed in fewer items


@dataclass
class Rig:
    """The stack, the instrumented edge, its cancel points, an HTTP client, the auditor."""

    env: Env
    edge: TestServer
    points: CancelPoints
    http: aiohttp.ClientSession
    audit: LedgerAudit

    @property
    def app(self) -> Any:
        return self.edge.app

    async def key(self) -> tuple[str, str, str]:
        """A funded account with a key allowing one request at a time: (secret, account, key)."""
        account = await self.env.stack.account(CREDIT)
        key_id, secret = await self.env.stack.key(account, concurrency=1, tpm=TPM, rpm=RPM)
        return secret, account, key_id

    async def send(self, secret: str, stream: bool, plan_id: str = "", text: str = "hi") -> int:
        """POST a chat completion and read it all: its status, or 0 if the connection broke."""
        body: dict[str, Any] = {"model": MODEL, "stream": stream, "max_tokens": 32,
                                "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream_options"] = {"include_usage": True}
        headers = {"authorization": f"Bearer {secret}", PLAN_HEADER: plan_id}
        try:
            async with self.http.post(base_url(self.edge) + "/chat/completions", json=body,
                                      headers=headers) as response:
                await response.read()
                return response.status
        except aiohttp.ClientError:
            return 0

    async def run(self, secret: str, stream: bool, plan_id: str, plan: Plan) -> int:
        """Send under `plan`; wait until its handler ended and its settlement is applied."""
        status = await asyncio.wait_for(self.send(secret, stream, plan_id), REQUEST_TIMEOUT_S)
        await asyncio.wait_for(plan.done.wait(), REQUEST_TIMEOUT_S)
        await quiesce(self.app)
        return status

    async def assert_nothing_left(self, secret: str, account: str, key_id: str) -> None:
        """No open hold; the limiter admits one more at once, its TPM counts only usage."""
        wallet = await self.env.stack.wallet(account)
        assert wallet.held_nanos == 0, f"{wallet.held_nanos} nano-USD still held"
        assert await self.audit.open_holds([account]) == {}
        stack = self.env.stack
        billing: Any = stack.billing  # typed as the sync stub; it is built on an aio channel
        report = await billing.CheckLedger(billing_pb2.CheckLedgerRequest(),
                                           metadata=stack.admin_metadata)
        assert not report.mismatches and not report.holds_resolved_twice, report
        clients, probe = self.app[CLIENTS], f"probe-{secrets.token_hex(6)}"
        principal = await self.app[AUTHENTICATOR].authenticate(f"Bearer {secret}", probe)
        lease = await clients.ratelimit.acquire(probe, principal, MODEL, 1)
        assert lease.allowed, f"a leaked slot or reservation: denied by {lease.denied}"
        tpm = next(s for s in lease.states if s.kind is LimitKind.TPM)
        assert tpm.limit - tpm.remaining == await self.audit.usage_tokens(key_id) + 1
        await clients.ratelimit.release(probe, lease.lease_id, principal.key_id, 0)


async def _paced_chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.json_response(wire.chat_completion(body["model"]))
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for chunk in wire.chat_chunks(body["model"], PACED_WORDS, include_usage=True):
        await response.write(wire.event(chunk))
        await asyncio.sleep(PACE_S)
    await response.write(b"data: [DONE]\n\n")
    return response


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp = tmp_path_factory.mktemp("sweep")
    paced = web.Application()
    paced.router.add_post("/v1/chat/completions", _paced_chat)
    upstream = TestServer(paced, host="127.0.0.1")
    await upstream.start_server()
    config = CONFIG.replace("PACED_BASE", f"http://127.0.0.1:{upstream.port}/v1")
    try:
        async with open_env(tmp, config) as env:
            points = CancelPoints()
            edge = await start_edge(env.stack, tmp / "apirelay.yaml",
                                    middlewares=[points.middleware])
            points.instrument(edge.app[CLIENTS])
            audit = LedgerAudit(f"sqlite+aiosqlite:///{tmp / 'home' / 'billing.db'}")
            http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
            rig = Rig(env, edge, points, http, audit)
            try:
                secret, _, _ = await rig.key()
                assert await rig.send(secret, stream=False) == 200  # warms the model catalog
                yield rig
            finally:
                await http.close()
                await audit.close()
                await edge.close()
    finally:
        await upstream.close()


async def dry_run(rig: Rig, stream: bool) -> list[str]:
    secret, _, _ = await rig.key()
    plan_id, plan = rig.points.plan(None)
    assert await rig.run(secret, stream, plan_id, plan) == 200
    assert not plan.cancelled and not plan.ended_cancelled
    return plan.points


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_a_handler_cancelled_at_any_await_leaks_nothing(rig: Rig, stream: bool) -> None:
    path = await dry_run(rig, stream)
    expected = ["RateLimitClient.acquire", "BillingClient.reserve"]
    assert path[:ADMISSION_CALLS] == expected and len(path) > ADMISSION_CALLS, path
    if stream:  # the first read, one in the middle, the last: distinct places in the relay
        assert path.count("router.read") >= 3, path
    for k in range(1, len(path) + 1):
        for phase in Phase:
            secret, account, key_id = await rig.key()
            hits = 0
            for _ in range(REPEATS * MAX_TRIES):
                hits += await cancelled_at(rig, secret, stream, path, k, phase)
                if hits == REPEATS:
                    break
            assert hits == REPEATS, f"await {k} ({path[k - 1]}) reached {hits} times"
            await rig.assert_nothing_left(secret, account, key_id)
            assert await rig.send(secret, stream) == 200


async def cancelled_at(
    rig: Rig, secret: str, stream: bool, path: list[str], k: int, phase: Phase
) -> bool:
    """Run one request cancelled at await k; False if it never got there (a stream the
    router relayed in fewer items than the dry run: it then completes normally)."""
    plan_id, plan = rig.points.plan(k, phase)
    status = await rig.run(secret, stream, plan_id, plan)
    where = (k, phase.value, plan.points, status)
    if not plan.cancelled:
        assert status == 200 and len(plan.points) < k, where
        return False
    # Cancelled there, it goes no further (acquire and reserve run together).
    assert plan.points[:k] == path[:k], where
    assert len(plan.points) == max(k, ADMISSION_CALLS), where
    assert plan.ended_cancelled, where
    assert status == 0, where  # the client saw its connection cut
    return True


async def test_a_client_closing_its_stream_midway_leaks_nothing(rig: Rig) -> None:
    secret, account, key_id = await rig.key()
    body = {"model": "fake-chat", "stream": True, "max_tokens": 32,
            "messages": [{"role": "user", "content": "[[fake:drip]]"}]}
    for _ in range(REPEATS):
        plan_id, plan = rig.points.plan(None)
        headers = {"authorization": f"Bearer {secret}", PLAN_HEADER: plan_id}
        response = await rig.http.post(base_url(rig.edge) + "/chat/completions", json=body,
                                       headers=headers)
        assert response.status == 200
        async for line in response.content:
            if b'"content":"' in line:
                break
        response.close()  # drops the connection mid-stream
        await asyncio.wait_for(plan.done.wait(), REQUEST_TIMEOUT_S)
        await quiesce(rig.app)
    await rig.assert_nothing_left(secret, account, key_id)
    wallet = await rig.env.stack.wallet(account)
    assert 0 < CREDIT - wallet.balance_nanos  # prompt and delivered words were billed
    assert await rig.send(secret, stream=True) == 200
