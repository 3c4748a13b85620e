"""Channel admin RPCs through a real grpc.aio router: changes serve at once, keys never leak."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
import pytest
from aiohttp import web

from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.router.config import Settings
from services.router.server import start

ADMIN_KEY = "ak-test-admin-key"
ADMIN = (("authorization", f"Bearer {ADMIN_KEY}"),)
UPSTREAM_KEY = "sk-runtime-upstream-key-0123456789"
CONFIG = """
allow_private_upstreams: {allow}
models:
  - {{id: demo}}
  - {{id: fresh}}
channels:
  - name: mock
    type: mock
    models: [demo]
"""


@dataclass
class Upstream:
    """An OpenAI-compatible upstream that records the keys it was called with."""

    url: str = ""
    authorizations: list[str] = field(default_factory=list)

    async def chat(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        body = await request.json()
        if request.headers.get("Authorization") != f"Bearer {UPSTREAM_KEY}":
            return web.json_response({"error": {"message": "bad key", "type": "auth"}}, status=401)
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fresh!"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]
    yield fake
    await runner.cleanup()


async def _stub(tmp_path: Path, allow: bool) -> AsyncIterator[router_pb2_grpc.RouterServiceStub]:
    config = tmp_path / "apirelay.yaml"
    config.write_text(CONFIG.format(allow=str(allow).lower()), encoding="utf-8")
    settings = Settings(listen_addr="127.0.0.1:0", config_path=str(config), home=tmp_path,
                        admin_key=ADMIN_KEY)
    started = await start(settings, {})
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{started.port}")
    try:
        yield router_pb2_grpc.RouterServiceStub(channel)
    finally:
        await channel.close()
        await started.stop(0)


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[router_pb2_grpc.RouterServiceStub]:
    async for stub in _stub(tmp_path, allow=True):
        yield stub


@pytest.fixture
async def strict_router(tmp_path: Path) -> AsyncIterator[router_pb2_grpc.RouterServiceStub]:
    async for stub in _stub(tmp_path, allow=False):
        yield stub


async def _chat(stub: router_pb2_grpc.RouterServiceStub, model: str) -> router_pb2.CreateChatCompletionResponse:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    reply: router_pb2.CreateChatCompletionResponse = await stub.CreateChatCompletion(
        router_pb2.CreateChatCompletionRequest(request_id="r1", model=model, body=body))
    return reply


def _create(url: str, keys: list[str]) -> router_pb2.CreateChannelRequest:
    spec = router_pb2.ChannelSpec(name="runtime", type="openai", base_url=url, models=["fresh"])
    return router_pb2.CreateChannelRequest(channel=spec, keys=keys)


async def test_created_channel_serves_at_once_and_disable_stops_it(
        router: router_pb2_grpc.RouterServiceStub, upstream: Upstream,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    before = await _chat(router, "fresh")
    assert before.error.http_status == 404  # nobody serves it yet
    created = await router.CreateChannel(_create(upstream.url, [UPSTREAM_KEY]), metadata=ADMIN)
    served = await _chat(router, "fresh")
    assert served.route.channel == "runtime"
    assert b"fresh!" in served.body
    assert upstream.authorizations == [f"Bearer {UPSTREAM_KEY}"]

    listed = await router.ListChannels(router_pb2.ListChannelsRequest(), metadata=ADMIN)
    runtime = next(c for c in listed.channels if c.spec.name == "runtime")
    assert runtime.source == router_pb2.CHANNEL_SOURCE_ADMIN
    assert [k.hint for k in runtime.keys] == ["...6789"]
    assert runtime.keys[0].key_id.startswith("key_")

    tested = await router.TestChannel(router_pb2.TestChannelRequest(name="runtime"), metadata=ADMIN)
    assert [(r.key_id, r.ok) for r in tested.results] == [(runtime.keys[0].key_id, True)]

    await router.DisableChannel(router_pb2.DisableChannelRequest(name="runtime"), metadata=ADMIN)
    calls = len(upstream.authorizations)
    after = await _chat(router, "fresh")
    assert after.error.http_status != 0
    assert len(upstream.authorizations) == calls  # no longer chosen
    await router.EnableChannel(router_pb2.EnableChannelRequest(name="runtime"), metadata=ADMIN)
    assert (await _chat(router, "fresh")).route.channel == "runtime"

    for message in (created, listed, tested):
        assert UPSTREAM_KEY.encode() not in message.SerializeToString()
    assert UPSTREAM_KEY not in caplog.text


async def test_update_swaps_keys_and_reports_bad_ones(
        router: router_pb2_grpc.RouterServiceStub, upstream: Upstream) -> None:
    created = await router.CreateChannel(_create(upstream.url, ["sk-wrong-key-00000000"]),
                                         metadata=ADMIN)
    bad_id = created.channel.keys[0].key_id
    tested = await router.TestChannel(router_pb2.TestChannelRequest(name="runtime"), metadata=ADMIN)
    assert [(r.key_id, r.ok) for r in tested.results] == [(bad_id, False)]
    assert "sk-wrong" not in tested.results[0].error
    updated = await router.UpdateChannel(router_pb2.UpdateChannelRequest(
        name="runtime", add_keys=[UPSTREAM_KEY], remove_key_ids=[bad_id], weight=3),
        metadata=ADMIN)
    assert [k.hint for k in updated.channel.keys] == ["...6789"]
    assert updated.channel.spec.weight == 3
    assert b"fresh!" in (await _chat(router, "fresh")).body


async def test_refusals_have_their_codes(router: router_pb2_grpc.RouterServiceStub,
                                         upstream: Upstream) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as no_key:
        await router.ListChannels(router_pb2.ListChannelsRequest())
    assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await router.CreateChannel(_create(upstream.url, [UPSTREAM_KEY]), metadata=ADMIN)
    cases = [
        (router.CreateChannel(_create(upstream.url, []), metadata=ADMIN),
         grpc.StatusCode.ALREADY_EXISTS),
        (router.UpdateChannel(router_pb2.UpdateChannelRequest(name="nope"), metadata=ADMIN),
         grpc.StatusCode.NOT_FOUND),
        (router.CreateChannel(router_pb2.CreateChannelRequest(channel=router_pb2.ChannelSpec(
            name="x", type="openai", base_url=upstream.url, models=["unknown-model"])),
            metadata=ADMIN), grpc.StatusCode.INVALID_ARGUMENT),
        (router.CreateChannel(router_pb2.CreateChannelRequest(channel=router_pb2.ChannelSpec(
            name="y", type="teleport", models=["fresh"])), metadata=ADMIN),
         grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == code


async def test_private_base_urls_are_refused_unless_allowed(
        strict_router: router_pb2_grpc.RouterServiceStub, upstream: Upstream) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await strict_router.CreateChannel(_create(upstream.url, [UPSTREAM_KEY]), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("base_url:")
    # The operator's own config channel (the mock) is trusted and still serves.
    assert (await _chat(strict_router, "demo")).route.channel == "mock"


async def test_channels_survive_a_restart(tmp_path: Path, upstream: Upstream) -> None:
    async for stub in _stub(tmp_path, allow=True):
        await stub.CreateChannel(_create(upstream.url, [UPSTREAM_KEY]), metadata=ADMIN)
    async for stub in _stub(tmp_path, allow=True):
        assert b"fresh!" in (await _chat(stub, "fresh")).body
    assert (tmp_path / "router_secret").exists()
