"""RS-1..RS-5 (reliability-anchors 6.3) at PR size: a real grpc.aio RouterService over
real OpenAI providers and scriptable fake upstreams on 127.0.0.1. Each RS test prints one
JSON line of figures. Then a channel's key pool (401 disables a key, a 429 cools it for
its retry-after) and a fallback model chain, on a settable health clock."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import grpc
import orjson
from aiohttp import web

from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.common.grpc_server import start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.router.config import Settings
from services.router.core import ModelRouter
from services.router.providers import build_providers
from services.router.server import upstream_session
from services.router.service import ERRORS, SERVICE_NAME, RouterServicer

Stub = router_pb2_grpc.RouterServiceStub
ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
TEXT = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
DONE = (b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b'data: [DONE]\n\n')


@dataclass
class Upstream:
    """A fake OpenAI upstream whose behaviour a test sets: ok, 503, slow, cut, hang."""

    mode: str = "ok"
    url: str = ""
    hits: int = 0
    gone: list[float] = field(default_factory=list)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        body = await request.json()
        if self.mode == "503":
            return web.json_response({"error": {"message": "down"}}, status=503)
        try:
            if self.mode == "hang":
                await asyncio.sleep(30)
            if self.mode == "slow":
                await asyncio.sleep(5)
        except asyncio.CancelledError:
            self.gone.append(time.monotonic())
            raise
        if not body.get("stream"):
            return web.json_response({
                "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(ROLE + TEXT + TEXT)
        if self.mode == "cut":
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write(DONE)
        return response


@asynccontextmanager
async def served(*modes: str, first_byte_s: float = 0.0) -> AsyncIterator[tuple[Stub, list[Upstream]]]:
    """A router whose channels c0.. (one per mode, same priority) front fake upstreams."""
    upstreams, runners = [Upstream(m) for m in modes], []
    for upstream in upstreams:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", upstream.chat)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        upstream.url = f"http://127.0.0.1:{port}/v1"
        runners.append(runner)
    channels = tuple(ChannelEntry(name=f"c{i}", type="openai", models=("demo",), base_url=u.url,
                                  first_byte_timeout_s=first_byte_s)
                     for i, u in enumerate(upstreams))
    config = GatewayConfig(models=(ModelEntry("demo"),), channels=channels,
                           group_multipliers_bps={})
    session = upstream_session(Settings())
    servicer = RouterServicer(ModelRouter(config, build_providers(channels, session, {})))
    running = await start_grpc_server(
        "127.0.0.1:0",
        lambda server: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
        [SERVICE_NAME], ServiceInterceptor(ERRORS))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield router_pb2_grpc.RouterServiceStub(channel), upstreams
    finally:
        await running.stop(0)
        await session.close()
        for runner in runners:
            await runner.cleanup()


def _body(stream: bool = False) -> bytes:
    return orjson.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}],
                         **({"stream": True} if stream else {})})


async def _unary(stub: Stub) -> router_pb2.CreateChatCompletionResponse:
    return await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        model="demo", body=_body()))


async def _load(n: int, concurrency: int, one: Callable[[], Awaitable[object]]) -> list[object]:
    gate = asyncio.Semaphore(concurrency)

    async def run() -> object:
        async with gate:
            return await one()
    return list(await asyncio.gather(*(run() for _ in range(n))))


async def test_rs1_a_failing_channel_is_ejected_and_clients_see_no_error() -> None:
    async with served("503", "ok", "ok") as (stub, ups):
        # 3 in flight: the budget's floor (3 retries in flight) covers every retry of the
        # first failures; at 10 in flight, 5 simultaneous first failures can exceed it.
        answers = await _load(300, 3, lambda: _unary(stub))
    errors = sum(1 for a in answers if a.HasField("error"))  # type: ignore[attr-defined]
    attempts = sum(a.route.attempts for a in answers)  # type: ignore[attr-defined]
    print(json.dumps({"test": "RS-1", "requests": 300, "client_errors": errors,
                      "failing_hits": ups[0].hits, "attempts_per_request": attempts / 300}))
    assert errors == 0
    assert ups[0].hits <= 5 + 3  # 5 to eject; tries already in flight may still land
    assert attempts / 300 <= 1.2


async def test_rs2_total_outage_is_a_fast_error_without_a_retry_storm() -> None:
    async with served("503", "503", "503") as (stub, ups):
        started = time.monotonic()
        answers = await _load(200, 20, lambda: _unary(stub))
        elapsed = time.monotonic() - started
    hits = sum(u.hits for u in ups)
    statuses = {a.error.http_status for a in answers}  # type: ignore[attr-defined]
    print(json.dumps({"test": "RS-2", "requests": 200, "upstream_attempts": hits,
                      "statuses": sorted(statuses), "seconds": round(elapsed, 3)}))
    assert statuses == {502}
    assert hits <= 200 * 1.2 + 3
    assert elapsed < 10


async def test_rs3_a_slow_first_byte_fails_over_within_the_per_try_timeout() -> None:
    async with served("slow", "ok", first_byte_s=0.3) as (stub, ups):
        async def one() -> tuple[float, bool]:
            started = time.monotonic()
            items = [i async for i in stub.StreamChatCompletion(
                router_pb2.StreamChatCompletionRequest(model="demo", body=_body(True)))]
            return time.monotonic() - started, items[-1].end.HasField("error")
        results = await _load(20, 5, one)
    slowest = max(r[0] for r in results)  # type: ignore[index]
    failed = sum(1 for r in results if r[1])  # type: ignore[index]
    print(json.dumps({"test": "RS-3", "requests": 20, "slowest_s": round(slowest, 3),
                      "client_errors": failed, "slow_hits": ups[0].hits}))
    assert failed == 0 and slowest < 1.5
    assert ups[0].hits >= 1


async def test_rs4_a_midstream_reset_is_an_in_band_error_without_retry() -> None:
    async with served("cut") as (stub, ups):
        items = [i async for i in stub.StreamChatCompletion(
            router_pb2.StreamChatCompletionRequest(model="demo", body=_body(True)))]
    end = items[-1].end
    delivered = sum(len(i.chunks) for i in items[:-1])
    print(json.dumps({"test": "RS-4", "delivered_chunks": delivered, "attempts": end.route.attempts,
                      "upstream_hits": ups[0].hits, "status": end.error.http_status}))
    assert delivered >= 2 and end.error.http_status == 502
    assert end.route.attempts == 1 and ups[0].hits == 1


async def test_rs5_the_client_deadline_ends_every_attempt() -> None:
    async with served("hang", "hang") as (stub, ups):
        started = time.monotonic()
        try:
            answer = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
                model="demo", body=_body()), timeout=1.0)
            # The router's own copy of the deadline may end the tries first: a 504.
            assert answer.error.http_status == 504
            code = grpc.StatusCode.DEADLINE_EXCEEDED
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        for _ in range(50):  # the upstream notices the cancel shortly after the deadline
            if sum(len(u.gone) for u in ups) >= sum(u.hits for u in ups):
                break
            await asyncio.sleep(0.02)
        ended = max(g for u in ups for g in u.gone) - started
    print(json.dumps({"test": "RS-5", "code": code.name, "upstream_hits": sum(u.hits for u in ups),
                      "last_attempt_ended_s": round(ended, 3)}))
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert ended < 1.3




class Clock:
    """A settable monotonic clock for the router's health."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FirstDraw(random.Random):
    """Every draw is 0: the first key of a pool wins every pick it is available for."""

    def random(self) -> float:
        return 0.0


@dataclass
class KeyedUpstream:
    """A fake OpenAI upstream answering per key: "ok", "401", or "429" (retry-after: 2)."""

    modes: dict[str, str]
    hits: Counter[str] = field(default_factory=Counter)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        key = request.headers["authorization"].removeprefix("Bearer ")
        self.hits[key] += 1
        mode = self.modes.get(key, "ok")
        if mode == "401":
            return web.json_response({"error": {"message": "Incorrect API key provided",
                                                "code": "invalid_api_key"}}, status=401)
        if mode == "429":
            return web.json_response({"error": {"message": "Rate limit reached"}}, status=429,
                                     headers={"retry-after": "2"})
        if mode == "503":
            return web.json_response({"error": {"message": "down"}}, status=503)
        body = await request.json()
        return web.json_response({
            "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


@asynccontextmanager
async def keyed(upstream: KeyedUpstream, channels: tuple[ChannelEntry, ...],
                models: tuple[ModelEntry, ...], clock: Clock) -> AsyncIterator[Stub]:
    """A router over `channels` (their base_url filled in) fronting one keyed upstream;
    the keys come from K1, K2 = "one", "two"."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    channels = tuple(replace(c, base_url=f"http://127.0.0.1:{port}/v1") for c in channels)
    config = GatewayConfig(models=models, channels=channels, group_multipliers_bps={})
    session = upstream_session(Settings())
    providers = build_providers(channels, session, {"K1": "one", "K2": "two"})
    servicer = RouterServicer(ModelRouter(config, providers, FirstDraw(), clock))
    running = await start_grpc_server(
        "127.0.0.1:0",
        lambda server: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
        [SERVICE_NAME], ServiceInterceptor(ERRORS))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield router_pb2_grpc.RouterServiceStub(channel)
    finally:
        await running.stop(0)
        await session.close()
        await runner.cleanup()


POOL = (ChannelEntry(name="pool", type="openai", models=("demo",), api_key_envs=("K1", "K2")),)


async def test_a_key_answering_401_is_disabled_and_the_second_key_serves() -> None:
    upstream = KeyedUpstream({"one": "401"})
    async with keyed(upstream, POOL, (ModelEntry("demo"),), Clock()) as stub:
        answers = [await _unary(stub) for _ in range(6)]
    assert not any(a.HasField("error") for a in answers)
    assert [a.route.attempts for a in answers] == [2, 1, 1, 1, 1, 1]
    assert upstream.hits == Counter({"one": 1, "two": 6})  # key 1 never again


async def test_a_429_with_retry_after_2_cools_the_key_for_2_seconds() -> None:
    upstream, clock = KeyedUpstream({"one": "429"}), Clock()
    async with keyed(upstream, POOL, (ModelEntry("demo"),), clock) as stub:
        first = await _unary(stub)
        upstream.modes.clear()
        clock.now += 1.9
        cooling = await _unary(stub)
        hits_while_cooling = dict(upstream.hits)
        clock.now += 0.2
        cooled = await _unary(stub)
    assert not first.HasField("error") and first.route.attempts == 2
    assert cooling.route.attempts == 1 and hits_while_cooling == {"one": 1, "two": 2}
    assert not cooled.HasField("error") and upstream.hits == Counter({"one": 2, "two": 2})


async def test_a_model_whose_channels_all_fail_is_served_by_its_fallback() -> None:
    upstream = KeyedUpstream({"one": "503"})
    channels = (ChannelEntry(name="a1", type="openai", models=("demo",), api_key_env="K1"),
                ChannelEntry(name="a2", type="openai", models=("demo",), api_key_env="K1"),
                ChannelEntry(name="b1", type="openai", models=("backup",), api_key_env="K2",
                             model_map={"backup": "backup-2025-01"}))
    models = (ModelEntry("demo", fallbacks=("backup",)), ModelEntry("backup"))
    async with keyed(upstream, channels, models, Clock()) as stub:
        answer = await _unary(stub)
    assert not answer.HasField("error")
    # The route names the model sent upstream; the client's model stays "demo" (billed).
    assert (answer.route.channel, answer.route.upstream_model, answer.route.attempts) == \
        ("b1", "backup-2025-01", 3)
    assert upstream.hits == Counter({"one": 2, "two": 1})
