"""`Idempotency-Key` on POST /v1/chat/completions against fake services."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import openai
import orjson

from tests.grpc.edge.conftest import Edge, auth, open_edge
from tests.grpc.edge.fakes import LIMITED_SECRET, SECRET
from tests.grpc.edge.messages import MODEL, Hang

PATH = "/v1/chat/completions"


def chat(text: str = "Say hi", **extra: Any) -> bytes:
    """A valid request body."""
    return orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}],
                         **extra})


async def post(edge: Edge, body: bytes, key: str | None, secret: str = SECRET,
               rid: str | None = None) -> Any:
    """POST with an Idempotency-Key; returns (status, headers, body bytes)."""
    headers = auth(secret)
    if key is not None:
        headers["Idempotency-Key"] = key
    if rid is not None:
        headers["x-request-id"] = rid
    response = await edge.client.post(PATH, data=body, headers=headers)
    return response.status, response.headers, await response.read()


def error_of(raw: bytes) -> tuple[str, str, None]:
    err = orjson.loads(raw)["error"]
    return err["type"], err["code"], err["param"]


async def test_a_retry_replays_without_a_second_call_or_charge(edge: Edge) -> None:
    first = await post(edge, chat(), "k-1", rid="rid-1")
    second = await post(edge, chat(), "k-1", rid="rid-2")
    assert first[0] == second[0] == 200
    assert second[2] == first[2]
    assert second[1]["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first[1]
    assert second[1]["x-request-id"] == "rid-2"
    assert "x-ratelimit-remaining-requests" not in second[1]
    await edge.settled()
    fakes = edge.fakes
    assert len(fakes.router.requests) == 1
    assert len(fakes.ratelimit.acquires) == 1
    assert len(fakes.billing.reserves) == 1 and len(fakes.billing.settles) == 1


async def test_keys_are_per_api_key(edge: Edge) -> None:
    await post(edge, chat(), "shared")
    # LIMITED_SECRET may not use MODEL: a 403 shows its request ran instead of replaying.
    status, headers, _ = await post(edge, chat(), "shared", secret=LIMITED_SECRET)
    assert status == 403 and "idempotent-replayed" not in headers


async def test_the_same_key_with_another_body_is_422(edge: Edge) -> None:
    await post(edge, chat("one"), "k-2")
    status, headers, raw = await post(edge, chat("two"), "k-2")
    assert status == 422
    assert error_of(raw) == ("invalid_request_error", "idempotency_key_reused", None)
    assert headers["x-should-retry"] == "false"
    assert len(edge.fakes.router.requests) == 1


async def test_a_second_request_while_the_first_runs_is_409(edge: Edge) -> None:
    edge.fakes.router.script = [Hang()]
    first = asyncio.create_task(post(edge, chat(), "k-3"))
    while not edge.fakes.router.requests:
        await asyncio.sleep(0.005)
    status, headers, raw = await post(edge, chat(), "k-3")
    assert status == 409
    assert error_of(raw) == ("invalid_request_error", "idempotency_key_in_use", None)
    assert headers["x-should-retry"] == "false"
    first.cancel()  # the client goes away: the claim is dropped
    await asyncio.wait_for(edge.fakes.router.cancelled.wait(), 2)
    edge.fakes.router.script = []
    for _ in range(100):
        status, headers, _ = await post(edge, chat(), "k-3")
        if status != 409:
            break
        await asyncio.sleep(0.01)
    assert status == 200 and "idempotent-replayed" not in headers


async def test_a_server_error_is_not_stored(edge: Edge) -> None:
    edge.fakes.router.fail = grpc.StatusCode.UNAVAILABLE
    assert (await post(edge, chat(), "k-4"))[0] == 503
    edge.fakes.router.fail = None
    status, headers, _ = await post(edge, chat(), "k-4")
    assert status == 200 and "idempotent-replayed" not in headers
    assert len(edge.fakes.router.requests) == 2


async def test_a_client_error_is_stored_and_replayed(edge: Edge) -> None:
    body = orjson.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    first = await post(edge, body, "k-5")
    second = await post(edge, body, "k-5")
    assert first[0] == second[0] == 404 and second[2] == first[2]
    assert second[1]["idempotent-replayed"] == "true"


async def test_streaming_ignores_the_key(edge: Edge) -> None:
    for _ in range(2):
        status, headers, raw = await post(edge, chat(stream=True), "k-6")
        assert status == 200 and b"data: [DONE]" in raw
        assert "idempotent-replayed" not in headers
    assert len(edge.fakes.router.requests) == 2


async def test_malformed_keys_are_400(edge: Edge) -> None:
    for key in ("", "x" * 256):
        status, _, raw = await post(edge, chat(), key)
        assert status == 400
        assert error_of(raw) == ("invalid_request_error", "invalid_idempotency_key", None)
    assert edge.fakes.router.requests == []


async def test_the_memory_store_is_bounded_by_settings() -> None:
    async with open_edge(idempotency_max_entries=1) as edge:
        await post(edge, chat(), "a")
        await post(edge, chat(), "b")  # evicts "a"
        status, headers, _ = await post(edge, chat(), "a")
        assert status == 200 and "idempotent-replayed" not in headers
        assert len(edge.fakes.router.requests) == 3


async def test_the_official_sdk_gets_the_replay(edge: Edge) -> None:
    async with openai.AsyncOpenAI(base_url=edge.base_url, api_key=SECRET, max_retries=0) as sdk:
        messages: Any = [{"role": "user", "content": "Say hi"}]
        key = {"Idempotency-Key": "sdk-1"}
        first = await sdk.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, extra_headers=key)
        again = await sdk.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, extra_headers=key)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.parse().model_dump() == first.parse().model_dump()
        assert len(edge.fakes.router.requests) == 1
        try:
            await sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "other"}], extra_headers=key)
        except openai.UnprocessableEntityError as exc:
            assert exc.code == "idempotency_key_reused"
        else:
            raise AssertionError("a reused key with another body must fail")
