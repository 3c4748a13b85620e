"""Every endpoint through the official SDK, against a fake OpenAI upstream.

Each test proves three things: the SDK gets a well-formed answer (its own parsing and
streaming helpers succeed), the upstream received what the client sent (byte-for-byte
where the gateway forwards the body as it is), and the reported cost is exactly what
the wallet was charged.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.e2e import fake_wire as wire
from tests.e2e.harness import (
    COST_HEADER,
    CREDIT,
    Env,
    json_cost,
    open_env,
    usage_cost,
    usd_to_nanos,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

USER = [{"role": "user", "content": "Hello there"}]
PROMPT_PRICE, COMPLETION_PRICE = 1000, 2000
EMBED_PRICE = 20
HD_1024, STANDARD_512 = 80_000_000, 18_000_000
AUDIO_SECOND_PRICE = 100_000
CHARACTER_PRICE = 15_000
CONFIG = """
models:
  - {{id: fake-chat, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
  - {{id: fake-embed, price: {{prompt: 20, completion: 0}}}}
  - id: fake-image
    price:
      images:
        "1024x1024": {{standard: 40000000, hd: 80000000}}
        "512x512": {{standard: 18000000}}
  - {{id: fake-whisper, price: {{audio_second: 100000}}}}
  - {{id: fake-tts, price: {{character: 15000}}}}
channels:
  - name: fake
    type: openai
    base_url: "{base}"
    api_key_env: {env}
    models: [fake-chat, fake-embed, fake-image, fake-whisper, fake-tts]
"""
TOKEN_COST = (wire.PROMPT_TOKENS * PROMPT_PRICE + len(wire.REPLY_WORDS) * COMPLETION_PRICE)
# Everything OpenAI documents for chat, plus fields no gateway can know about.
CHAT_FIELDS: dict[str, Any] = {
    "tools": [{"type": "function", "function": {
        "name": "lookup", "description": "Look a word up.", "strict": True,
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}},
                       "required": ["word"], "additionalProperties": False}}}],
    "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    "parallel_tool_calls": False,
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True, "schema": {"type": "object", "properties": {
            "text": {"type": "string"}}, "required": ["text"], "additionalProperties": False}}},
    "logprobs": True, "top_logprobs": 3, "n": 2, "stop": ["\n\n", "END"], "seed": 42,
    "user": "user-1234", "max_completion_tokens": 50, "reasoning_effort": "low",
    "modalities": ["text"], "metadata": {"trace": "e2e"}, "store": False,
    "service_tier": "auto", "prediction": {"type": "content", "content": "Fake"},
    "logit_bias": {"50256": -100}, "presence_penalty": 0.5, "frequency_penalty": -0.25,
    "temperature": 0.7, "top_p": 0.9,
}
UNKNOWN_FIELDS: dict[str, Any] = {
    "x_vendor_knob": {"nested": [1, 2.5, "é", None, True]}, "future_flag": "on",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with open_env(tmp_path_factory.mktemp("endpoints"), CONFIG) as env:
        yield env


async def test_chat_fields_pass_byte_for_byte_and_cost_is_charged(env: Env) -> None:
    client, account, sent = await env.recorded_client()
    raw = await client.chat.completions.with_raw_response.create(
        model="fake-chat", messages=USER, extra_body=UNKNOWN_FIELDS,
        **CHAT_FIELDS)
    reply = raw.parse()
    upstream = env.fake.to("/v1/chat/completions")[-1]
    assert upstream.body == sent.sent[-1]  # every byte the SDK sent, unknown fields included
    assert upstream.json()["x_vendor_knob"] == UNKNOWN_FIELDS["x_vendor_knob"]
    assert reply.choices[0].message.content == wire.REPLY_TEXT
    charged = await env.charged(account)
    assert charged == TOKEN_COST
    assert usd_to_nanos(raw.headers[COST_HEADER]) == charged
    assert json_cost(raw.http_response.content, "usage") == charged
    assert reply.usage is not None and usage_cost(reply.usage) == charged


async def test_chat_stream_helper_with_usage_reports_the_charge(env: Env) -> None:
    client, account = await env.client()
    async with client.chat.completions.stream(
        model="fake-chat", messages=USER, stream_options={"include_usage": True},
        extra_body=UNKNOWN_FIELDS,
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    assert "".join(deltas) == wire.REPLY_TEXT == final.choices[0].message.content
    sent = env.fake.to("/v1/chat/completions")[-1].json()
    assert sent["x_vendor_knob"] == UNKNOWN_FIELDS["x_vendor_knob"]
    assert sent["stream_options"]["include_usage"] is True
    assert final.usage is not None
    assert usage_cost(final.usage) == await env.charged(account) == TOKEN_COST


@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_options_include_usage_is_honoured_exactly(
    env: Env, include_usage: bool
) -> None:
    client, account = await env.client()
    options = {"include_usage": True} if include_usage else None
    stream = await client.chat.completions.create(
        model="fake-chat", messages=USER, stream=True,
        **({"stream_options": options} if options else {}))
    chunks = [chunk async for chunk in stream]
    with_usage = [c for c in chunks if c.usage is not None]
    # The gateway always asks the upstream for usage (for billing) ...
    assert env.fake.to("/v1/chat/completions")[-1].json()["stream_options"] == {
        "include_usage": True}
    # ... and passes it on only when the client asked, as the last chunk, no choices.
    if include_usage:
        assert with_usage == [chunks[-1]] and chunks[-1].choices == []
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    else:
        assert with_usage == []
    assert await env.charged(account) == TOKEN_COST


async def test_legacy_completions_stream_and_not(env: Env) -> None:
    client, account, sent = await env.recorded_client()
    raw = await client.completions.with_raw_response.create(
        model="fake-chat", prompt=["Say hi", "Say bye"], max_tokens=20, echo=False,
        logprobs=2, suffix="!", best_of=1, extra_body=UNKNOWN_FIELDS)
    reply = raw.parse()
    assert env.fake.to("/v1/completions")[-1].body == sent.sent[-1]
    assert reply.choices[0].text == wire.REPLY_TEXT
    first = await env.charged(account)
    assert first == TOKEN_COST == usd_to_nanos(raw.headers[COST_HEADER])
    assert reply.usage is not None and usage_cost(reply.usage) == first

    stream = await client.completions.create(
        model="fake-chat", prompt="Say hi", stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == wire.REPLY_TEXT
    assert chunks[-1].usage is not None
    total = await env.charged(account, credit=CREDIT - first)
    assert usage_cost(chunks[-1].usage) == total == TOKEN_COST


async def test_embeddings_inputs_and_encodings(env: Env) -> None:
    client, account, sent = await env.recorded_client()
    floats = await client.embeddings.with_raw_response.create(
        model="fake-embed", input=["alpha", "beta", "gamma"], encoding_format="float",
        dimensions=4, extra_body=UNKNOWN_FIELDS)
    assert env.fake.to("/v1/embeddings")[-1].body == sent.sent[-1]
    data = floats.parse().data
    assert [d.embedding for d in data] == [[i + k / 2 for k in range(4)] for i in range(3)]
    charged = await env.charged(account)
    assert charged == 3 * wire.EMBEDDING_TOKENS_PER_INPUT * EMBED_PRICE
    assert usd_to_nanos(floats.headers[COST_HEADER]) == charged
    assert json_cost(floats.http_response.content, "usage") == charged

    # The SDK asks for base64 by default and decodes it; token arrays are inputs too.
    tokens = await client.embeddings.create(model="fake-embed", input=[[1, 2, 3], [4, 5]])
    assert env.fake.to("/v1/embeddings")[-1].json()["encoding_format"] == "base64"
    assert [d.embedding for d in tokens.data] == [
        [i + k / 2 for k in range(wire.DEFAULT_DIMENSIONS)] for i in range(2)]


async def test_image_generation_is_billed_per_image_by_size_and_quality(env: Env) -> None:
    client, account, sent = await env.recorded_client()
    raw = await client.images.with_raw_response.generate(
        model="fake-image", prompt="a red fox", n=2, size="1024x1024", quality="hd",
        style="vivid", response_format="b64_json", extra_body=UNKNOWN_FIELDS)
    images = raw.parse()
    assert env.fake.to("/v1/images/generations")[-1].body == sent.sent[-1]
    assert images.data is not None and len(images.data) == 2
    assert base64.b64decode(images.data[0].b64_json or "") == wire.PNG_1X1
    charged = await env.charged(account)
    assert charged == 2 * HD_1024 == usd_to_nanos(raw.headers[COST_HEADER])


async def test_image_edit_multipart_passes_through(env: Env) -> None:
    client, account, sent = await env.recorded_client()
    raw = await client.images.with_raw_response.edit(
        model="fake-image", image=("fox.png", wire.PNG_1X1, "image/png"),
        prompt="make it blue", n=1, size="512x512", response_format="url")
    images = raw.parse()
    upstream = env.fake.to("/v1/images/edits")[-1]
    assert upstream.body == sent.sent[-1]
    image = upstream.form().file("image")
    assert image is not None and image.data == wire.PNG_1X1
    assert images.data is not None and images.data[0].url
    charged = await env.charged(account)
    assert charged == STANDARD_512 == usd_to_nanos(raw.headers[COST_HEADER])


@pytest.mark.parametrize("task", ["transcriptions", "translations"])
async def test_audio_text_in_every_format_billed_by_duration(env: Env, task: str) -> None:
    client, account, sent = await env.recorded_client()
    resource = getattr(client.audio, task)
    audio = wire.wav(wire.AUDIO_DURATION_S)  # 2.5 s: 3 started seconds
    balance = CREDIT
    for response_format in ("json", "text", "srt", "vtt", "verbose_json"):
        raw = await resource.with_raw_response.create(
            model="fake-whisper", file=("clip.wav", audio, "audio/wav"),
            response_format=response_format, temperature=0.2)
        answer = raw.parse()
        upstream = env.fake.to(f"/v1/audio/{task}")[-1]
        assert upstream.body == sent.sent[-1]
        assert upstream.form().field("response_format") == response_format
        text = answer if isinstance(answer, str) else answer.text
        assert wire.TRANSCRIPT in text
        if response_format == "verbose_json":
            assert answer.duration == wire.AUDIO_DURATION_S
        charged = await env.charged(account, credit=balance)
        assert charged == 3 * AUDIO_SECOND_PRICE == usd_to_nanos(raw.headers[COST_HEADER])
        balance -= charged


async def test_speech_streams_binary_audio_billed_per_character(env: Env) -> None:
    client, account = await env.client()
    text = "Hello there, how are you?"
    async with client.audio.speech.with_streaming_response.create(
        model="fake-tts", voice="alloy", input=text, response_format="mp3", speed=1.25,
    ) as response:
        assert response.headers["content-type"].startswith("audio/mpeg")
        audio = b"".join([piece async for piece in response.iter_bytes()])
        cost_header = response.headers.get(COST_HEADER)
    assert audio == wire.SPEECH_CHUNK * wire.SPEECH_CHUNKS
    assert env.fake.to("/v1/audio/speech")[-1].json()["input"] == text
    charged = await env.charged(account)
    assert charged == len(text) * CHARACTER_PRICE
    assert cost_header is not None and usd_to_nanos(cost_header) == charged


async def test_responses_non_streaming(env: Env) -> None:
    client, account, sent = await env.recorded_client()
    raw = await client.responses.with_raw_response.create(
        model="fake-chat", input="Hello there", instructions="Be brief.",
        max_output_tokens=32, extra_body=UNKNOWN_FIELDS)
    response = raw.parse()
    assert env.fake.to("/v1/responses")[-1].body == sent.sent[-1]
    assert response.output_text == wire.REPLY_TEXT
    charged = await env.charged(account)
    assert charged == TOKEN_COST == usd_to_nanos(raw.headers[COST_HEADER])
    assert response.usage is not None and usage_cost(response.usage) == charged


async def test_responses_stream_helper_keeps_named_events(env: Env) -> None:
    client, account = await env.client()
    async with client.responses.stream(model="fake-chat", input="Hello there") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    expected = [name for name, _ in wire.response_events("fake-chat", wire.REPLY_WORDS)]
    assert kinds == expected
    assert final.output_text == wire.REPLY_TEXT
    assert final.usage is not None
    assert usage_cost(final.usage) == await env.charged(account) == TOKEN_COST


async def test_models_are_those_the_key_may_use(env: Env) -> None:
    client, _ = await env.client()
    ids = {m.id async for m in client.models.list()}
    assert {"fake-chat", "fake-embed", "fake-image", "fake-whisper", "fake-tts"} <= ids
    assert (await client.models.retrieve("fake-tts")).id == "fake-tts"
    account = await env.stack.account(0)
    narrow = env.sdk(await env.stack.key_for_models(account, ["fake-chat"]))
    assert {m.id async for m in narrow.models.list()} == {"fake-chat"}
    with pytest.raises(openai.NotFoundError):
        await narrow.models.retrieve("fake-tts")


async def test_the_sync_client_works_too(env: Env) -> None:
    secret, account = await env.funded_key()
    client = env.sync_sdk(secret)
    # The stack runs on this loop, so the blocking client runs in a worker thread.
    reply = await asyncio.to_thread(
        client.chat.completions.create, model="fake-chat", messages=USER)
    assert reply.choices[0].message.content == wire.REPLY_TEXT
    assert reply.usage is not None and usage_cost(reply.usage) == await env.charged(account)
