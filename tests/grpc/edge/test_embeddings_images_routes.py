"""POST /v1/embeddings, /v1/images/generations and /v1/images/edits against fake services."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from apirelay.router.v1 import router_pb2
from services.common.tokens import estimate_tokens
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.messages import MODEL, cost_text, relayed, unit_usage, usage

HD = "image/1024x1024/hd"
IMAGES = {"created": 1, "data": [{"url": "https://img.invalid/1.png"},
                                 {"url": "https://img.invalid/2.png"}]}
EMBEDDING = {"object": "list", "model": MODEL,
             "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
             "usage": {"prompt_tokens": 3, "total_tokens": 3}}


def units(message: Any) -> dict[str, int]:
    return {u.unit: u.quantity for u in message}


async def test_sdk_embedding_reports_the_cost_in_usage(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    edge.fakes.router.relay_response = relayed(orjson.dumps(EMBEDDING), usage(3, 0))
    raw = await sdk.embeddings.with_raw_response.create(
        model=MODEL, input=["hello world", "bye"], encoding_format="float", dimensions=2
    )
    result = raw.parse()
    assert result.data[0].embedding == [0.5, -0.25]
    assert f'"cost":{cost_text(usage(3, 0))}'.encode() in raw.content
    assert raw.headers["x-apirelay-cost-usd"] == cost_text(usage(3, 0))
    request, = edge.fakes.router.requests
    assert request.operation == router_pb2.OPERATION_EMBEDDINGS
    reserve, = edge.fakes.billing.reserves
    expected = estimate_tokens("hello world") + estimate_tokens("bye")
    assert (reserve.prompt_tokens, reserve.max_completion_tokens) == (expected, 0)


async def test_token_array_inputs_count_their_tokens(edge: Edge) -> None:
    body = {"model": MODEL, "input": [[1, 2, 3], [4]]}
    assert (await edge.client.post("/v1/embeddings", json=body, headers=auth())).status == 200
    reserve, = edge.fakes.billing.reserves
    assert reserve.prompt_tokens == 4


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/embeddings", {"model": MODEL, "input": ""}, "input"),
        ("/v1/embeddings", {"model": MODEL, "input": []}, "input"),
        ("/v1/embeddings", {"model": MODEL}, "input"),
        ("/v1/embeddings", {"model": MODEL, "input": "x", "encoding_format": "hex"},
         "encoding_format"),
        ("/v1/embeddings", {"model": MODEL, "input": "x", "dimensions": 0}, "dimensions"),
        ("/v1/embeddings", {"model": MODEL, "input": "x", "dimensions": 8193}, "dimensions"),
        ("/v1/images/generations", {"model": MODEL, "prompt": "cat", "n": 11}, "n"),
        ("/v1/images/generations", {"model": MODEL, "prompt": "cat", "size": "huge"}, "size"),
        ("/v1/images/generations", {"model": MODEL, "prompt": "cat", "response_format": "png"},
         "response_format"),
        ("/v1/images/generations", {"model": MODEL, "prompt": "cat", "quality": "best"},
         "quality"),
        ("/v1/images/generations", {"model": MODEL, "prompt": "cat", "stream": True}, "stream"),
        ("/v1/images/generations", {"model": MODEL}, "prompt"),
        ("/v1/images/generations", {"prompt": "cat"}, "model"),
    ],
)
async def test_validation_names_the_param_before_any_call(
    edge: Edge, path: str, body: dict[str, Any], param: str
) -> None:
    response = await edge.client.post(path, json=body, headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert edge.fakes.billing.reserves == [] and edge.fakes.router.requests == []


async def test_sdk_image_generation_holds_and_settles_images(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    edge.fakes.router.relay_response = relayed(orjson.dumps(IMAGES), unit_usage(HD, 2))
    raw = await sdk.images.with_raw_response.generate(
        model=MODEL, prompt="a cat", n=2, size="1024x1024", quality="hd", style="vivid",
    )
    assert [image.url for image in raw.parse().data or []] == [
        "https://img.invalid/1.png", "https://img.invalid/2.png"]
    assert raw.headers["x-apirelay-cost-usd"] == cost_text(unit_usage(HD, 2))
    assert b'"cost"' not in raw.content  # no usage object to put it in
    reserve, = edge.fakes.billing.reserves
    assert (reserve.prompt_tokens, reserve.max_completion_tokens) == (0, 0)
    assert units(reserve.max_units) == {HD: 2}
    assert edge.fakes.router.requests[0].operation == router_pb2.OPERATION_IMAGE_GENERATIONS
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert units(settle.usage.units) == {HD: 2}


async def test_a_units_request_whose_usage_never_came_bills_its_estimate(edge: Edge) -> None:
    response = router_pb2.RelayResponse(body=orjson.dumps(IMAGES), content_type="application/json")
    edge.fakes.router.relay_response = response  # answered, but no usage
    body = {"model": MODEL, "prompt": "cat", "n": 3}
    assert (await edge.client.post("/v1/images/generations", json=body,
                                   headers=auth())).status == 200
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert units(settle.usage.units) == {"image/1024x1024/standard": 3}


async def test_sdk_image_edit_sends_the_form_through_untouched(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    edge.fakes.router.relay_response = relayed(orjson.dumps(IMAGES), unit_usage(HD, 2))
    result = await sdk.images.edit(
        model=MODEL, prompt="add a hat", n=2, quality="hd",
        image=[("a.png", b"\x89PNG-a", "image/png"), ("b.png", b"\x89PNG-b", "image/png")],
        extra_body={"future_field": "kept"},
    )
    assert len(result.data or []) == 2
    request, = edge.fakes.router.requests
    assert request.operation == router_pb2.OPERATION_IMAGE_EDITS
    assert request.content_type.startswith("multipart/form-data; boundary=")
    assert b"\x89PNG-a" in request.body and b"\x89PNG-b" in request.body
    assert b'name="future_field"' in request.body
    reserve, = edge.fakes.billing.reserves
    assert units(reserve.max_units) == {HD: 2}


def image_form(*, image: bool = True, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in {"model": MODEL, "prompt": "hat", **fields}.items():
        form.add_field(name, value)
    if image:
        form.add_field("image[]", b"png-bytes", filename="a.png", content_type="image/png")
    return form


@pytest.mark.parametrize(
    ("form", "param"),
    [
        (image_form(image=False), "image"),
        (image_form(n="0"), "n"),
        (image_form(n="two"), "n"),
        (image_form(size="wide"), "size"),
        (image_form(stream="true"), "stream"),
    ],
)
async def test_edit_validation_names_the_field(
    edge: Edge, form: aiohttp.FormData, param: str
) -> None:
    response = await edge.client.post("/v1/images/edits", data=form, headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert edge.fakes.billing.reserves == []


async def test_json_to_a_form_endpoint_and_a_form_to_a_json_one_are_400(edge: Edge) -> None:
    response = await edge.client.post("/v1/images/edits", json={"model": MODEL}, headers=auth())
    error = (await response.json())["error"]
    assert response.status == 400 and "multipart/form-data" in error["message"]
    response = await edge.client.post("/v1/images/generations", data=image_form(),
                                      headers=auth())
    error = (await response.json())["error"]
    assert response.status == 400 and "JSON" in error["message"]
    assert edge.fakes.router.requests == []


async def test_a_malformed_form_is_400(edge: Edge) -> None:
    headers = {**auth(), "Content-Type": "multipart/form-data; boundary=xyz"}
    response = await edge.client.post("/v1/images/edits", data=b"--xyz\r\nnope", headers=headers)
    assert response.status == 400
    assert "malformed" in (await response.json())["error"]["message"]


async def test_idempotency_key_replays_a_form_sent_again_with_a_new_boundary(
    edge: Edge,
) -> None:
    edge.fakes.router.relay_response = relayed(orjson.dumps(IMAGES), unit_usage(HD, 2))
    headers = {**auth(), "Idempotency-Key": "edit-1"}
    first = await edge.client.post("/v1/images/edits", data=image_form(), headers=headers)
    second = await edge.client.post("/v1/images/edits", data=image_form(), headers=headers)
    assert first.status == second.status == 200
    assert await second.read() == await first.read()
    assert second.headers["idempotent-replayed"] == "true"
    assert len(edge.fakes.router.requests) == 1
    other = await edge.client.post("/v1/images/edits", data=image_form(prompt="other"),
                                   headers=headers)
    assert other.status == 422
    await edge.settled()
    assert len(edge.fakes.billing.settles) == 1
