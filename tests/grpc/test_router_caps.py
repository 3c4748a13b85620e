"""Channel caps through real services: a RouterService whose caps are leases on a real
in-process RateLimitService, in front of a fake upstream that records concurrency."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import orjson
from aiohttp import web

from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry, QueueConfig
from services.common.grpc_server import start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.ratelimit.config import Settings as RateLimitSettings
from services.ratelimit.server import start as start_ratelimit
from services.router.caps import CapGate, RateLimitLeases
from services.router.config import Settings
from services.router.core import ModelRouter
from services.router.providers import build_providers
from services.router.server import upstream_session
from services.router.service import ERRORS, SERVICE_NAME, RouterServicer

Stub = router_pb2_grpc.RouterServiceStub


@dataclass
class Upstream:
    """A fake OpenAI upstream answering after `delay_s`; records the most in flight."""

    delay_s: float = 0.05
    in_flight: int = 0
    most: int = 0
    hits: int = 0
    url: str = ""

    async def chat(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)  # the upstream's work, not synchronisation
        finally:
            self.in_flight -= 1
        body = await request.json()
        return web.json_response({
            "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


@asynccontextmanager
async def served(queue: QueueConfig, **caps: int) -> AsyncIterator[tuple[Stub, Upstream]]:
    """A router with one capped channel, its caps held by a real ratelimit service."""
    upstream = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    upstream.url = f"http://127.0.0.1:{port}/v1"
    # A unique name: the ratelimit service's counters outlive one test.
    channel = ChannelEntry(name=f"capped-{time.monotonic_ns()}", type="openai", models=("demo",),
                           base_url=upstream.url, **caps)  # type: ignore[arg-type]
    config = GatewayConfig(models=(ModelEntry("demo"),), channels=(channel,),
                           group_multipliers_bps={}, queue=queue)
    limiter = await start_ratelimit(RateLimitSettings(listen_addr="127.0.0.1:0"))
    leases = grpc.aio.insecure_channel(f"127.0.0.1:{limiter.port}")
    session = upstream_session(Settings())
    gate = CapGate(RateLimitLeases(leases), queue)
    servicer = RouterServicer(ModelRouter(config, build_providers((channel,), session, {}),
                                          caps=gate))
    running = await start_grpc_server(
        "127.0.0.1:0",
        lambda server: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
        [SERVICE_NAME], ServiceInterceptor(ERRORS))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel_:
            yield router_pb2_grpc.RouterServiceStub(channel_), upstream
    finally:
        await running.stop(0)
        await session.close()
        await leases.close()
        await limiter.stop(0)
        await runner.cleanup()


async def _unary(stub: Stub, i: int, group: str = "") -> router_pb2.CreateChatCompletionResponse:
    body = orjson.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    return await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        model="demo", body=body, request_id=f"req_{time.monotonic_ns()}_{i}",
        caller=router_pb2.Caller(account_id="acct", key_id="k", group=group)))


async def test_concurrency_cap_holds_and_the_excess_waits_instead_of_failing() -> None:
    async with served(QueueConfig(max_wait_s=5.0, max_size=50), cap_concurrency=2) as (stub, up):
        started = time.monotonic()
        answers = await asyncio.gather(*(_unary(stub, i) for i in range(8)))
        elapsed = time.monotonic() - started
    errors = [a.error.code for a in answers if a.HasField("error")]
    print(json.dumps({"test": "caps-concurrency", "requests": 8, "cap": 2,
                      "most_in_flight": up.most, "errors": len(errors),
                      "seconds": round(elapsed, 3)}))
    assert errors == []
    assert up.most == 2  # reached, never passed
    assert up.hits == 8


async def test_rpm_cap_and_a_bounded_wait_end_in_429_upstream_capacity() -> None:
    async with served(QueueConfig(max_wait_s=0.2, max_size=50), cap_rpm=3) as (stub, up):
        started = time.monotonic()
        answers = await asyncio.gather(*(_unary(stub, i) for i in range(5)))
        elapsed = time.monotonic() - started
    served_ok = [a for a in answers if not a.HasField("error")]
    refused = [a for a in answers if a.HasField("error")]
    assert len(served_ok) == 3 and up.hits == 3
    assert {(a.error.http_status, a.error.code) for a in refused} == {(429, "upstream_capacity")}
    assert elapsed < 2.0  # waited about max_wait_s, not the minute of the window


async def test_a_full_queue_refuses_at_once() -> None:
    up_queue = QueueConfig(max_wait_s=5.0, max_size=0)
    async with served(up_queue, cap_concurrency=1) as (stub, up):
        answers = await asyncio.gather(*(_unary(stub, i) for i in range(3)))
    refused = [a.error.code for a in answers if a.HasField("error")]
    assert refused == ["upstream_capacity"] * 2
    assert up.hits == 1
