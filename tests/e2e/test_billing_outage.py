"""BL-5: billing frozen under load. Streams already admitted finish; new requests fail
closed (503, no upstream call); settlements wait in the durable spool and are applied
exactly once after billing resumes; nothing stays held. Also: an edge restarted with a
non-empty spool drains it.

Billing runs as a subprocess (`python -m services.billing`) so that SIGSTOP freezes it
for real, connections open and all; the other services and the edge run in-process
(tests.e2e.stack with an external billing address). The upstream is a scripted OpenAI
fake that paces its words (the streams are in flight) and counts every call.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import openai
import pytest
from aiohttp.test_utils import TestServer

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from edge.app import create_app
from edge.config import Settings
from edge.keys import SETTLER
from edge.metrics import DRAINED, SPOOLED
from tests.backends import free_port
from tests.e2e.billing_upstream import PROMPT, ScriptedUpstream, start_upstream
from tests.e2e.stack import Stack, start_stack

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "E2E_OUTAGE_UPSTREAM_KEY"
CONFIG = """
models:
  - {{id: scripted, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
channels:
  - {{name: scripted, type: openai, base_url: "{base}", api_key_env: {env},
      models: [scripted]}}
"""
WORDS = 20
# Every admitted stream reports prompt 20 and WORDS completion tokens.
STREAM_CHARGE = PROMPT * 1000 + WORDS * 2000
DRAIN_WITHIN_S = 60.0
WAVE = 50  # streams opened at once
EDGE_ENV = {
    "EDGE_RPC_TIMEOUT_S": "1",  # a frozen billing is declared unreachable after 1 s
    "EDGE_SPOOL_POLL_S": "1",
    "EDGE_REQUEST_TIMEOUT_S": "120",
    "EDGE_SPOOL_DRAIN_S": "1",  # a shutdown with billing frozen leaves the rest spooled
    "EDGE_AUTH_CACHE_TTL_S": "300",  # the burst of streams is not a burst of auth calls
}


@dataclass
class Outage:
    """The stack, its billing subprocess and the upstream."""

    stack: Stack
    billing: asyncio.subprocess.Process
    upstream: ScriptedUpstream
    tmp: Path

    def freeze(self) -> None:
        """SIGSTOP billing: connections stay open, nothing answers."""
        os.kill(self.billing.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT billing."""
        os.kill(self.billing.pid, signal.SIGCONT)

    async def spool_depth(self, edge: TestServer | None = None) -> int:
        """Settlements waiting in the edge's spool."""
        app = (edge or self.stack.edge).app
        return await app[SETTLER].outbox.spool.depth()

    async def ledger(self) -> billing_pb2.CheckLedgerResponse:
        """Billing's own check of its invariants."""
        reply: billing_pb2.CheckLedgerResponse = await self.stack.billing.CheckLedger(
            billing_pb2.CheckLedgerRequest(), metadata=self.stack.admin_metadata)
        return reply


async def _wait_serving(address: str, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 30
    async with grpc.aio.insecure_channel(address) as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        while True:
            try:
                await stub.GetPrice(billing_pb2.GetPriceRequest(model="scripted"), timeout=1)
                return
            except grpc.aio.AioRpcError:
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("billing did not start:\n" + log.read_text()[-3000:])
                await asyncio.sleep(0.1)


@asynccontextmanager
async def outage_stack(tmp: Path) -> AsyncIterator[Outage]:
    """The stack with billing in a subprocess (always resumed and stopped at the end)."""
    upstream, server = await start_upstream()
    os.environ[KEY_ENV] = "sk-outage-upstream"
    config = tmp / "apirelay.yaml"
    config.write_text(CONFIG.format(base=f"http://127.0.0.1:{server.port}/v1", env=KEY_ENV))
    admin_key = "ak-" + secrets.token_hex(16)
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "APIRELAY_HOME": str(tmp / "home"), "APIRELAY_CONFIG": str(config),
           "APIRELAY_ADMIN_KEY": admin_key, "BILLING_LISTEN_ADDR": address}
    log = tmp / "billing.log"
    with log.open("wb") as sink:
        billing = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.billing", env=env, cwd=ROOT, stdout=sink,
            stderr=asyncio.subprocess.STDOUT)
    try:
        await _wait_serving(address, billing, log)
        stack = await start_stack(
            tmp / "home", config,
            {**EDGE_ENV, "APIRELAY_ADMIN_KEY": admin_key,
             "EDGE_SPOOL_PATH": str(tmp / "edge-spool.db")},
            external={"billing": address})
        try:
            yield Outage(stack, billing, upstream, tmp)
        finally:
            os.kill(billing.pid, signal.SIGCONT)
            await stack.close()
    finally:
        os.kill(billing.pid, signal.SIGCONT)
        billing.terminate()
        try:
            await asyncio.wait_for(billing.wait(), 20)
        except TimeoutError:
            billing.kill()
            await billing.wait()
        await server.close()


async def _funded(outage: Outage, credit: int) -> tuple[openai.AsyncOpenAI, str]:
    account = await outage.stack.account(credit)
    _, secret = await outage.stack.key(account, concurrency=-1, tpm=-1, rpm=-1)
    return openai.AsyncOpenAI(base_url=outage.stack.base_url, api_key=secret,
                              max_retries=0, timeout=120), account


async def _stream(client: openai.AsyncOpenAI, text: str, started: asyncio.Semaphore) -> int:
    """Read a whole stream; release `started` at its first content; return its words."""
    stream = await client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": text}], stream=True,
        max_tokens=32)
    words = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            words += 1
            if words == 1:
                started.release()
    return words


async def _refused_while_frozen(client: openai.AsyncOpenAI, count: int) -> list[int]:
    async def one(i: int) -> int:
        try:
            await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": f"frozen-{i}"}])
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _until(check: object, within_s: float) -> float:
    """Poll the async predicate `check` until true; return the seconds it took."""
    started = time.monotonic()
    while not await check():  # type: ignore[operator]
        assert time.monotonic() - started < within_s, "not within the deadline"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def run_freeze(outage: Outage, streams: int, freeze_s: float, pace_ms: int) -> None:
    """The BL-5 scenario and its oracle."""
    credit = 10**12
    client, account = await _funded(outage, credit)
    spooled, drained = SPOOLED.labels("settle")._value.get(), DRAINED.labels("settle")._value.get()
    await client.models.list()  # the key is now in the edge's principal cache
    started = asyncio.Semaphore(0)
    text = f"[[words:{WORDS}]][[pace:{pace_ms}]] admitted"
    running: list[asyncio.Task[int]] = []
    while len(running) < streams:  # in waves, each admitted and delivering before the next
        wave = min(WAVE, streams - len(running))
        running += [asyncio.create_task(_stream(client, text, started)) for _ in range(wave)]
        for _ in range(wave):
            await asyncio.wait_for(started.acquire(), 60)
    outage.freeze()
    frozen_at = time.monotonic()
    try:
        statuses = await _refused_while_frozen(client, 10)
        words = await asyncio.wait_for(asyncio.gather(*running), 120)
        await asyncio.sleep(max(0.0, freeze_s - (time.monotonic() - frozen_at)))
    finally:
        outage.thaw()
    assert words == [WORDS] * streams  # admitted streams completed normally
    assert statuses == [503] * 10  # fail closed while billing is frozen ...
    assert outage.upstream.calls_with("frozen-") == 0  # ... with no unreserved upstream call
    assert outage.upstream.calls_with("admitted") == streams
    assert SPOOLED.labels("settle")._value.get() > spooled  # the durable path was taken

    async def drained_all() -> bool:
        return await outage.spool_depth() == 0

    took = await _until(drained_all, DRAIN_WITHIN_S)
    assert took < DRAIN_WITHIN_S
    assert (DRAINED.labels("settle")._value.get() - drained
            == SPOOLED.labels("settle")._value.get() - spooled)

    async def settled() -> bool:
        wallet = await outage.stack.wallet(account)
        return wallet.held_nanos == 0 and wallet.balance_nanos == credit - streams * STREAM_CHARGE

    await _until(settled, 30)  # each stream charged exactly once, no hold left open
    ledger = await outage.ledger()
    assert list(ledger.mismatches) == [] and list(ledger.holds_resolved_twice) == []
    assert ledger.net_nanos == 0
    await client.close()


async def test_billing_frozen_under_load(tmp_path: Path) -> None:
    async with outage_stack(tmp_path) as outage:
        await run_freeze(outage, streams=60, freeze_s=5.0, pace_ms=100)


@pytest.mark.soak
async def test_billing_frozen_under_load_full_size(tmp_path: Path) -> None:
    async with outage_stack(tmp_path) as outage:
        await run_freeze(outage, streams=300, freeze_s=30.0, pace_ms=1000)


async def test_a_restarted_edge_drains_the_spool_it_was_left(tmp_path: Path) -> None:
    async with outage_stack(tmp_path) as outage:
        credit = 10**12
        client, account = await _funded(outage, credit)
        started = asyncio.Semaphore(0)
        streams = [asyncio.create_task(_stream(client, f"[[words:{WORDS}]][[pace:50]] admitted",
                                                started)) for _ in range(3)]
        for _ in streams:
            await asyncio.wait_for(started.acquire(), 30)
        outage.freeze()
        try:
            assert await asyncio.gather(*streams) == [WORDS] * 3
            await outage.stack.edge.app[SETTLER].drain()  # each one spooled by now
            assert await outage.spool_depth() == 3
            await client.close()
            await outage.stack.edge.close()  # its grace runs out: the spool keeps all three
        finally:
            outage.thaw()
        settings = replace(Settings.from_env(outage.stack.env), spool_poll_s=60.0)
        again = TestServer(create_app(settings), host="127.0.0.1")
        await again.start_server()
        try:
            async def empty() -> bool:
                return await outage.spool_depth(again) == 0

            await _until(empty, DRAIN_WITHIN_S)  # on start, not after the 60 s poll
            wallet = await outage.stack.wallet(account)
            assert (wallet.balance_nanos, wallet.held_nanos) == (credit - 3 * STREAM_CHARGE, 0)
        finally:
            await again.close()
