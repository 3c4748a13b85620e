"""POST /v1/completions (legacy) against fake services, through the official SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2
from services.common.tokens import estimate_tokens
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.messages import MODEL, Batch, Hang, cost_text, end, error, relayed, sse, usage

PATH = "/v1/completions"
PROMPT = "Once upon a time"


def text_completion(text: str) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]}


def piece(text: str) -> bytes:
    return sse(text_completion(text))


def usage_piece(prompt: int = 4, completion: int = 3) -> bytes:
    body = {**text_completion(""), "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}
    return sse(body)


async def test_sdk_completion_relays_the_body_and_reports_the_cost(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    body = {**text_completion("The end."),
            "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}
    edge.fakes.router.relay_response = relayed(orjson.dumps(body), usage(4, 3))
    raw = await sdk.completions.with_raw_response.create(
        model=MODEL, prompt=PROMPT, max_tokens=5, n=2, extra_body={"future_knob": [1]}
    )
    result = raw.parse()
    assert result.choices[0].text == "The end."
    assert raw.headers["x-apirelay-cost-usd"] == cost_text(usage(4, 3))
    assert f'"cost":{cost_text(usage(4, 3))}'.encode() in raw.content
    request, = edge.fakes.router.requests
    assert request.operation == router_pb2.OPERATION_COMPLETIONS
    assert orjson.loads(request.body)["future_knob"] == [1]
    assert request.content_type == "application/json"
    reserve, = edge.fakes.billing.reserves
    assert (reserve.prompt_tokens, reserve.max_completion_tokens) == (estimate_tokens(PROMPT), 10)
    assert list(reserve.max_units) == []
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert (settle.usage.prompt_tokens, settle.usage.completion_tokens) == (4, 3)


async def test_cap_defaults_to_16_per_choice_per_prompt(edge: Edge) -> None:
    body = {"model": MODEL, "prompt": [[1, 2, 3], [4, 5]], "best_of": 3, "n": 2}
    response = await edge.client.post(PATH, json=body, headers=auth())
    assert response.status == 200
    reserve, = edge.fakes.billing.reserves
    assert (reserve.prompt_tokens, reserve.max_completion_tokens) == (5, 16 * 3 * 2)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "prompt"),
        ({"model": MODEL, "prompt": "x", "temperature": 2.5}, "temperature"),
        ({"model": MODEL, "prompt": "x", "n": 0}, "n"),
        ({"model": MODEL, "prompt": [1.5]}, "prompt.0"),
        ({"model": MODEL, "prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ({"model": MODEL, "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": MODEL, "prompt": "x", "stream": "yes"}, "stream"),
        ({"prompt": "x"}, "model"),
    ],
)
async def test_validation_names_the_param_before_any_call(
    edge: Edge, body: dict[str, Any], param: str
) -> None:
    response = await edge.client.post(PATH, json=body, headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert edge.fakes.billing.reserves == [] and edge.fakes.router.requests == []


async def test_stream_relays_events_adds_the_cost_and_ends_with_done(edge: Edge) -> None:
    edge.fakes.router.script = [piece("Hel"), Batch([piece("lo"), usage_piece()],
                                                    end(usage_=usage(4, 3)))]
    body = {"model": MODEL, "prompt": PROMPT, "stream": True,
            "stream_options": {"include_usage": True}}
    response = await edge.client.post(PATH, json=body, headers=auth())
    assert response.headers["content-type"] == "text/event-stream"
    raw = await response.read()
    last = orjson.loads(usage_piece().removeprefix(b"data: "))
    last["usage"]["cost"] = "COST"
    patched = b"data: " + orjson.dumps(last).replace(
        b'"COST"', cost_text(usage(4, 3)).encode()) + b"\n\n"
    assert raw == piece("Hel") + piece("lo") + patched + b"data: [DONE]\n\n"
    assert edge.fakes.router.requests[0].operation == router_pb2.OPERATION_COMPLETIONS


async def test_sdk_stream_sees_the_usage_cost(sdk: openai.AsyncOpenAI, edge: Edge) -> None:
    edge.fakes.router.script = [piece("Hi"), Batch([usage_piece()], end(usage_=usage(4, 3)))]
    stream = await sdk.completions.create(
        model=MODEL, prompt=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].text == "Hi"
    final_usage = chunks[-1].usage
    assert final_usage is not None
    assert f"{final_usage.model_extra['cost']:.9f}" == cost_text(usage(4, 3))


async def test_failure_after_a_piece_is_in_band_and_bills_what_was_delivered(
    edge: Edge,
) -> None:
    edge.fakes.router.script = [
        piece("Hello world"), end(error(502, "server_error", "", "upstream dropped"),
                                  usage_pb2.Usage()),
    ]
    body = {"model": MODEL, "prompt": PROMPT, "stream": True}
    raw = await (await edge.client.post(PATH, json=body, headers=auth())).read()
    in_band = orjson.dumps({"error": {"message": "upstream dropped", "type": "server_error",
                                      "param": None, "code": None}})
    assert raw == piece("Hello world") + b"data: " + in_band + b"\n\n" + b"data: [DONE]\n\n"
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert settle.usage.prompt_tokens == estimate_tokens(PROMPT)
    assert settle.usage.completion_tokens == estimate_tokens("Hello world")


async def test_disconnect_cancels_the_router_and_bills_delivered_text(edge: Edge) -> None:
    edge.fakes.router.script = [piece("Hello there"), Hang()]
    body = {"model": MODEL, "prompt": PROMPT, "stream": True}
    response = await edge.client.post(PATH, json=body, headers=auth())
    assert await response.content.readuntil(b"\n\n") == piece("Hello there")
    response.close()
    await asyncio.wait_for(edge.fakes.router.cancelled.wait(), 2)
    await edge.settled()
    settle, = edge.fakes.billing.settles
    expected = estimate_tokens(PROMPT) + estimate_tokens("Hello there")
    assert settle.usage.total_tokens == expected
    assert edge.fakes.billing.releases == []
