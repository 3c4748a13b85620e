"""The fake Gemini API speaks Google's wire format: the official `google-genai` SDK,
pointed at it, reads its answers, streams and errors; and it refuses bodies the SDK's
own types refuse, so the router's translated requests are checked against them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from google import genai
from google.genai import errors, types

from services.router.providers.gemini_ids import tool_call_id
from services.router.providers.gemini_request import gemini_body
from tests.fakes.gemini_fake import (
    FAKE_KEY,
    GeminiFake,
    call_part,
    gemini_fake,
    response,
    text_response,
    usage_metadata,
)

SIGNATURE = "CiQBcsjafA+8x/Zq9w=="


@pytest.fixture
async def fake() -> AsyncIterator[GeminiFake]:
    async with gemini_fake() as running:
        yield running


def _client(fake: GeminiFake, key: str = FAKE_KEY) -> genai.Client:
    options = types.HttpOptions(base_url=fake.base_url, retry_options=types.HttpRetryOptions(
        attempts=1))
    return genai.Client(api_key=key, http_options=options)


async def test_generate_content_text_usage_and_request(fake: GeminiFake) -> None:
    fake.answer = text_response("Hi!", usage=usage_metadata(10, 2, cached=4, thoughts=5))
    answer = await _client(fake).aio.models.generate_content(
        model="gemini-2.5-flash", contents="Hello",
        config=types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.2,
                                           stop_sequences=["END"]))
    assert answer.text == "Hi!"
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.STOP
    usage = answer.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count,
            usage.cached_content_token_count, usage.thoughts_token_count) == (10, 2, 4, 5)
    sent = fake.received[0]
    assert (sent.model, sent.method, sent.headers["x-goog-api-key"]) == (
        "gemini-2.5-flash", "generateContent", FAKE_KEY)
    assert sent.body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert sent.body["generationConfig"] == {"temperature": 0.2, "stopSequences": ["END"]}


async def test_function_calls_with_thought_signatures(fake: GeminiFake) -> None:
    fake.answer = response([{"text": "plan", "thought": True},
                            call_part("weather", {"city": "Paris"}, SIGNATURE)])
    answer = await _client(fake).aio.models.generate_content(model="g", contents="Weather?")
    assert answer.function_calls and answer.function_calls[0].name == "weather"
    assert answer.function_calls[0].args == {"city": "Paris"}
    assert answer.candidates and answer.candidates[0].content is not None
    parts = answer.candidates[0].content.parts or []
    assert parts[0].thought is True
    assert parts[1].thought_signature == b"\n$\x01r\xc8\xda|\x0f\xbc\xc7\xf6j\xf7"


async def test_stream_over_sse(fake: GeminiFake) -> None:
    fake.events = [text_response("One", None), text_response(" two", None),
                   text_response(" three", "MAX_TOKENS", usage=usage_metadata(3, 3))]
    client = _client(fake)
    chunks = [c async for c in await client.aio.models.generate_content_stream(
        model="g", contents="Count")]
    assert [c.text for c in chunks] == ["One", " two", " three"]
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.total_token_count == 6
    assert fake.received[0].query == {"alt": "sse"}


async def test_embed_content(fake: GeminiFake) -> None:
    answer = await _client(fake).aio.models.embed_content(
        model="text-embedding-004", contents=["a", "bb"],
        config=types.EmbedContentConfig(output_dimensionality=2))
    assert answer.embeddings is not None
    assert [e.values for e in answer.embeddings] == [[0.01, 0.02], [0.02, 0.03]]
    assert fake.received[0].method == "batchEmbedContents"


@pytest.mark.parametrize(("status", "name"), [(400, "INVALID_ARGUMENT"),
                                              (429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE")])
async def test_errors_as_google_sends_them(fake: GeminiFake, status: int, name: str) -> None:
    fake.fail(status, "nope")
    with pytest.raises(errors.APIError) as caught:
        await _client(fake).aio.models.generate_content(model="g", contents="x")
    assert (caught.value.code, caught.value.status, caught.value.message) == (
        status, name, "nope")


async def test_a_wrong_key_is_refused_like_google(fake: GeminiFake) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await _client(fake, "bad").aio.models.generate_content(model="g", contents="x")
    assert caught.value.code == 400 and caught.value.details["error"]["details"][0][
        "reason"] == "API_KEY_INVALID"


async def test_a_blocked_prompt_has_no_candidates(fake: GeminiFake) -> None:
    fake.answer = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage_metadata()}
    answer = await _client(fake).aio.models.generate_content(model="g", contents="x")
    assert answer.prompt_feedback is not None and answer.candidates is None
    assert answer.prompt_feedback.block_reason == types.BlockedReason.SAFETY


async def _post(fake: GeminiFake, body: bytes) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{fake.base_url}/v1beta/models/g:generateContent", data=body,
            headers={"x-goog-api-key": FAKE_KEY}) as answer:
        return answer.status, await answer.json()


async def test_the_routers_richest_request_is_valid_for_the_sdk_types(fake: GeminiFake) -> None:
    call_id = tool_call_id("r", "0", "weather", "{}", SIGNATURE)
    payload = {
        "model": "g", "temperature": 0.1, "top_p": 0.5, "max_tokens": 9, "stop": ["x"], "n": 2,
        "seed": 1, "presence_penalty": 0.1, "frequency_penalty": 0.2, "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
            "type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "weather", "description": "d",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function",
                                                  "function": {"name": "weather",
                                                               "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"}],
    }
    status, answer = await _post(fake, gemini_body(payload))
    assert status == 200, answer
    status, answer = await _post(fake, orjson.dumps({"contents": [], "generation_cfg": {}}))
    assert status == 400 and "generation_cfg" in answer["error"]["message"]
