"""POST /v1/responses (passthrough, streamed with named events or not) against fake services."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import openai
import orjson
import pytest

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2
from services.common.tokens import estimate_tokens
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.messages import MODEL, Abort, Batch, Hang, cost_text, end, relayed, sse, usage

PATH = "/v1/responses"
USAGE = {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11,
         "input_tokens_details": {"cached_tokens": 0},
         "output_tokens_details": {"reasoning_tokens": 0}}


def response_object(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": "resp_1", "object": "response", "created_at": 1, "model": MODEL, "status": status,
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": status,
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": USAGE, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
    }


def delta(text: str, number: int) -> bytes:
    data = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": text, "sequence_number": number, "logprobs": []}
    return sse(data, "response.output_text.delta")


def completed(number: int) -> bytes:
    data = {"type": "response.completed", "sequence_number": number,
            "response": response_object("Hi!")}
    return sse(data, "response.completed")


async def test_sdk_response_passes_through_with_the_cost(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    edge.fakes.router.relay_response = relayed(orjson.dumps(response_object("Hi!")), usage(9, 2))
    raw = await sdk.responses.with_raw_response.create(
        model=MODEL, input=[{"role": "user", "content": "Say hi"}], instructions="Be brief",
        max_output_tokens=50, extra_body={"new_feature": {"on": True}},
    )
    assert raw.parse().output_text == "Hi!"
    assert f'"cost":{cost_text(usage(9, 2))}'.encode() in raw.content
    request, = edge.fakes.router.requests
    assert request.operation == router_pb2.OPERATION_RESPONSES
    assert orjson.loads(request.body)["new_feature"] == {"on": True}
    reserve, = edge.fakes.billing.reserves
    prompt = 3 + estimate_tokens("Be brief") + 4 + estimate_tokens("Say hi")
    assert (reserve.prompt_tokens, reserve.max_completion_tokens) == (prompt, 50)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": 5}, "input"),
        ({"model": MODEL, "input": "x", "max_output_tokens": 8}, "max_output_tokens"),
        ({"model": MODEL, "input": "x", "max_output_tokens": 2**63}, "max_output_tokens"),
        ({"model": MODEL, "input": "x", "stream": "true"}, "stream"),
        ({"input": "x"}, "model"),
    ],
)
async def test_validation_names_the_param(edge: Edge, body: dict[str, Any], param: str) -> None:
    response = await edge.client.post(PATH, json=body, headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert edge.fakes.router.requests == []


async def test_stream_events_are_verbatim_with_the_cost_and_no_done(edge: Edge) -> None:
    edge.fakes.router.script = [delta("Hi", 1), Batch([delta("!", 2), completed(3)],
                                                      end(usage_=usage(9, 2)))]
    body = {"model": MODEL, "input": "Say hi", "stream": True}
    raw = await (await edge.client.post(PATH, json=body, headers=auth())).read()
    head, _, last = raw.rpartition(b"event: response.completed\n")
    assert head == delta("Hi", 1) + delta("!", 2)
    assert last.startswith(b"data: ") and last.endswith(b"\n\n")
    assert b"[DONE]" not in raw
    event = orjson.loads(last.removeprefix(b"data: "))
    assert event["response"]["usage"]["input_tokens"] == 9
    assert f'"cost":{cost_text(usage(9, 2))}'.encode() in last


def event(kind: str, number: int, **fields: Any) -> bytes:
    return sse({"type": kind, "sequence_number": number, **fields}, kind)


def sdk_stream() -> list[Any]:
    """Every event the SDK's stream helper needs to build its snapshot."""
    started = {**response_object(""), "status": "in_progress", "output": [], "usage": None}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress",
               "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    return [
        Batch([event("response.created", 0, response=started),
               event("response.output_item.added", 1, output_index=0, item=message),
               event("response.content_part.added", 2, part=part, **where),
               delta("Hi", 3)]),
        delta("!", 4),
        Batch([event("response.output_text.done", 5, text="Hi!", logprobs=[], **where),
               completed(6)], end(usage_=usage(9, 2))),
    ]


async def test_sdk_stream_helper_sees_text_and_cost(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    edge.fakes.router.script = sdk_stream()
    async with sdk.responses.stream(model=MODEL, input="Say hi") as stream:
        texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert texts == ["Hi", "!"]
    assert final.usage is not None
    assert f"{final.usage.model_extra['cost']:.9f}" == cost_text(usage(9, 2))


async def test_failure_after_headers_is_one_error_event(edge: Edge) -> None:
    edge.fakes.router.script = [delta("Hello", 4), Abort(grpc.StatusCode.INTERNAL)]
    body = {"model": MODEL, "input": "Say hi", "stream": True}
    raw = await (await edge.client.post(PATH, json=body, headers=auth())).read()
    head, _, tail = raw.partition(b"event: error\n")
    assert head == delta("Hello", 4)
    error = orjson.loads(tail.removeprefix(b"data: "))
    assert error["type"] == "error" and error["sequence_number"] == 5
    assert set(error) == {"type", "code", "message", "param", "sequence_number"}
    assert "10.0.0.7" not in error["message"]
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert settle.usage.completion_tokens == estimate_tokens("Hello")


async def test_disconnect_bills_the_delivered_output_text(edge: Edge) -> None:
    edge.fakes.router.script = [delta("Hello there", 1), Hang()]
    body = {"model": MODEL, "input": "Say hi", "stream": True}
    response = await edge.client.post(PATH, json=body, headers=auth())
    assert await response.content.readuntil(b"\n\n") == delta("Hello there", 1)
    response.close()
    await asyncio.wait_for(edge.fakes.router.cancelled.wait(), 2)
    await edge.settled()
    settle, = edge.fakes.billing.settles
    prompt = 3 + 4 + estimate_tokens("Say hi")
    assert settle.usage.total_tokens == prompt + estimate_tokens("Hello there")
