"""POST /v1/chat/completions with stream=true: the SSE relay against a fake router."""

from __future__ import annotations

import asyncio

import grpc
import orjson

from apirelay.common.v1 import usage_pb2
from services.common.tokens import estimate_tokens
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.fakes import from_client
from tests.grpc.edge.messages import MODEL, Abort, Batch, Hang, Pause, chunk, end, error

PATH = "/v1/chat/completions"
BODY = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Say hi"}]}
PROMPT_ESTIMATE = 3 + 4 + estimate_tokens("Say hi")


def event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


async def test_stream_relays_chunks_then_done_and_settles_usage(edge: Edge) -> None:
    raw = orjson.dumps(BODY)
    response = await edge.client.post(PATH, data=raw, headers={**auth(), "x-request-id": "s-1"})
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-request-id"] == "s-1"
    assert response.headers["x-ratelimit-limit-tokens"] == "100000"
    body = await response.read()
    assert body == event(chunk("Hel")) + event(chunk("lo")) + b"data: [DONE]\n\n"
    assert edge.fakes.router.requests[0].body == raw
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert from_client(settle.request_id) == "s-1"
    assert settle.usage.total_tokens == 18
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    assert edge.fakes.billing.releases == []
    assert [r.actual_tokens for r in edge.fakes.ratelimit.releases] == [18]


async def test_error_before_the_first_chunk_is_a_plain_http_error(edge: Edge) -> None:
    edge.fakes.router.script = [
        end(error(429, "rate_limit_error", "rate_limit_exceeded", "upstream busy"),
            usage_pb2.Usage()),
    ]
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert response.status == 429
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    assert (await response.json())["error"] == {
        "message": "upstream busy", "type": "rate_limit_error", "param": None,
        "code": "rate_limit_exceeded",
    }
    await edge.settled()
    assert edge.fakes.billing.settles == [] and len(edge.fakes.billing.releases) == 1
    assert [r.actual_tokens for r in edge.fakes.ratelimit.releases] == [0]


async def test_router_failure_before_the_first_chunk_is_a_generic_503(edge: Edge) -> None:
    edge.fakes.router.script = [Abort(grpc.StatusCode.UNAVAILABLE)]
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert response.status == 503
    assert "10.0.0.7" not in (await response.text())
    await edge.settled()
    assert len(edge.fakes.billing.releases) == 1 and len(edge.fakes.ratelimit.releases) == 1


async def test_error_after_a_chunk_is_in_band_then_done(edge: Edge) -> None:
    edge.fakes.router.script = [
        chunk("Hel"), end(error(502, "server_error", "", "upstream dropped"), usage_pb2.Usage()),
    ]
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert response.status == 200
    in_band = orjson.dumps({"error": {"message": "upstream dropped", "type": "server_error",
                                      "param": None, "code": None}})
    assert await response.read() == event(chunk("Hel")) + event(in_band) + b"data: [DONE]\n\n"
    await edge.settled()
    settle, = edge.fakes.billing.settles  # text was delivered, so it is billed
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert settle.usage.completion_tokens == estimate_tokens("Hel")


async def test_router_crash_mid_stream_is_in_band_and_settles_the_estimate(edge: Edge) -> None:
    edge.fakes.router.script = [chunk("Hello "), chunk("world"), Abort(grpc.StatusCode.INTERNAL)]
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    body = await response.read()
    assert response.status == 200
    events = body.split(b"\n\n")
    error_event = orjson.loads(events[2].removeprefix(b"data: "))
    assert error_event["error"]["type"] == "server_error"
    assert "10.0.0.7" not in error_event["error"]["message"]
    assert body.endswith(b"data: [DONE]\n\n")
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert settle.usage.prompt_tokens == PROMPT_ESTIMATE
    assert settle.usage.completion_tokens == estimate_tokens("Hello world")


async def test_keepalive_pings_while_the_stream_waits(edge: Edge) -> None:
    edge.fakes.router.script = [chunk("a"), Pause(0.2), chunk("b"), end()]
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    body = await response.read()
    assert b": ping\n\n" in body
    assert body.replace(b": ping\n\n", b"") == (
        event(chunk("a")) + event(chunk("b")) + b"data: [DONE]\n\n"
    )


async def test_disconnect_mid_stream_cancels_the_router_and_settles_estimated(
    edge: Edge,
) -> None:
    edge.fakes.router.script = [chunk("Hello world"), Hang()]
    response = await edge.client.post(PATH, json=BODY, headers={**auth(), "x-request-id": "d-1"})
    assert await response.content.readuntil(b"\n\n") == event(chunk("Hello world"))
    response.close()
    await asyncio.wait_for(edge.fakes.router.cancelled.wait(), 2)
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert from_client(settle.request_id) == "d-1"
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    expected = PROMPT_ESTIMATE + estimate_tokens("Hello world")
    assert (settle.usage.prompt_tokens, settle.usage.total_tokens) == (PROMPT_ESTIMATE, expected)
    assert edge.fakes.billing.releases == []
    lease, = edge.fakes.ratelimit.releases
    assert (lease.lease_id, lease.actual_tokens) == (settle.request_id, expected)


async def test_a_multi_chunk_item_is_relayed_in_order_with_its_end(edge: Edge) -> None:
    edge.fakes.router.script = [Batch([chunk("Hel"), chunk("lo"), chunk("!", "stop")], end())]
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert await response.read() == (
        event(chunk("Hel")) + event(chunk("lo")) + event(chunk("!", "stop")) + b"data: [DONE]\n\n"
    )
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert settle.usage.total_tokens == 18


async def test_multi_chunk_items_with_pings_between_and_an_in_band_error(edge: Edge) -> None:
    edge.fakes.router.script = [
        Batch([chunk("a"), chunk("b")]), Pause(0.2),
        Batch([chunk("c"), chunk("d")], end(error(502, "server_error", "", "dropped"),
                                             usage_pb2.Usage())),
    ]
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    body = await response.read()
    first, _, rest = body.partition(b": ping\n\n")
    assert first == event(chunk("a")) + event(chunk("b"))  # pings only after a quiet spell
    in_band = orjson.dumps({"error": {"message": "dropped", "type": "server_error",
                                      "param": None, "code": None}})
    assert rest.replace(b": ping\n\n", b"") == (
        event(chunk("c")) + event(chunk("d")) + event(in_band) + b"data: [DONE]\n\n"
    )
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert settle.usage.completion_tokens == estimate_tokens("abcd")
