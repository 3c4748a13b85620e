"""Every error class of the official SDK, as the gateway makes it raise, and the SDK's own
retry and idempotency behaviour against the gateway's headers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import openai
import pytest
import pytest_asyncio

from tests.e2e import fake_wire as wire
from tests.e2e.harness import CREDIT, UPSTREAM_KEY, Env, open_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

USER = [{"role": "user", "content": "Hello there"}]
TOKEN_COST = wire.PROMPT_TOKENS * 1000 + len(wire.REPLY_WORDS) * 2000
CONFIG = """
models:
  - {{id: fake-chat, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
  - {{id: fake-embed, price: {{prompt: 20, completion: 0}}}}
  - id: fake-image
    price: {{images: {{"1024x1024": {{standard: 40000000}}}}}}
  - {{id: fake-whisper, price: {{audio_second: 100000}}}}
  - {{id: fake-tts, price: {{character: 15000}}}}
  - {{id: fake-unpriced, max_output_tokens: 64}}
channels:
  - name: fake
    type: openai
    base_url: "{base}"
    api_key_env: {env}
    models: [fake-chat, fake-embed, fake-image, fake-whisper, fake-tts, fake-unpriced]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with open_env(tmp_path_factory.mktemp("errors"), CONFIG) as env:
        yield env


def _said(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


Call = Callable[[openai.AsyncOpenAI], Awaitable[Any]]
INVALID: list[tuple[str, Call]] = [
    ("temperature", lambda c: c.chat.completions.create(
        model="fake-chat", messages=USER, temperature=3)),
    ("n", lambda c: c.chat.completions.create(model="fake-chat", messages=USER, n=0)),
    ("messages.0.role", lambda c: c.chat.completions.create(
        model="fake-chat", messages=[{"content": "no role"}])),
    ("top_p", lambda c: c.chat.completions.create(
        model="fake-chat", messages=USER, extra_body={"top_p": "high"})),
    ("prompt", lambda c: c.completions.create(model="fake-chat", prompt=[])),
    ("input", lambda c: c.embeddings.create(model="fake-embed", input="")),
    ("n", lambda c: c.images.generate(model="fake-image", prompt="fox", n=11)),
    ("input", lambda c: c.audio.speech.create(model="fake-tts", voice="alloy", input="")),
    ("temperature", lambda c: c.audio.transcriptions.create(
        model="fake-whisper", file=("a.wav", wire.wav(1), "audio/wav"), temperature=2)),
    ("max_output_tokens", lambda c: c.responses.create(
        model="fake-chat", input="hi", max_output_tokens=1)),
]


@pytest.mark.parametrize(("param", "call"), INVALID, ids=[p for p, _ in INVALID])
async def test_invalid_values_are_400_naming_the_param_before_any_call_or_charge(
    env: Env, param: str, call: Call
) -> None:
    client, account = await env.client()
    calls = len(env.fake.requests)
    with pytest.raises(openai.BadRequestError) as info:
        await call(client)
    assert info.value.param == param
    assert info.value.type == "invalid_request_error"
    assert len(env.fake.requests) == calls
    assert await env.settled_balance(account, CREDIT) == (CREDIT, 0)


async def test_bad_keys_are_401(env: Env) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        await env.sdk("sk-not-a-key").embeddings.create(model="fake-embed", input="x")
    assert info.value.code == "invalid_api_key"


async def test_forbidden_is_403(env: Env) -> None:
    account = await env.stack.account(CREDIT)
    narrow = env.sdk(await env.stack.key_for_models(account, ["fake-chat"]))
    with pytest.raises(openai.PermissionDeniedError) as info:
        await narrow.embeddings.create(model="fake-embed", input="x")
    assert info.value.code == "model_not_allowed"
    client, _ = await env.client()
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model="fake-unpriced", messages=USER)
    assert info.value.code == "model_not_priced"
    # A size the model has no price for is refused the same way, before the upstream.
    calls = len(env.fake.requests)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.images.generate(model="fake-image", prompt="fox", size="256x256")
    assert info.value.code == "model_not_priced"
    assert len(env.fake.requests) == calls


async def test_unknown_models_and_unsupported_endpoints_are_404(env: Env) -> None:
    client, _ = await env.client()
    with pytest.raises(openai.NotFoundError) as info:
        await client.completions.create(model="no-such-model", prompt="hi")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as info:
        await client.files.list()
    assert info.value.code == "unsupported_endpoint"
    assert "/v1/files" in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        await client.fine_tuning.jobs.list()
    assert info.value.code == "unsupported_endpoint"


async def test_limits_and_quota_are_429(env: Env) -> None:
    client, _ = await env.client(rpm=1)
    await client.embeddings.create(model="fake-embed", input="x")
    with pytest.raises(openai.RateLimitError) as info:
        await client.embeddings.create(model="fake-embed", input="x")
    assert info.value.code == "rate_limit_exceeded"
    assert int(info.value.response.headers["retry-after"]) >= 1
    poor, _ = await env.client(credit=1)
    with pytest.raises(openai.RateLimitError) as info:
        await poor.chat.completions.create(model="fake-chat", messages=USER)
    assert info.value.code == "insufficient_quota"


@pytest.mark.parametrize(("status", "error"), [
    (400, openai.BadRequestError), (429, openai.RateLimitError),
    (500, openai.InternalServerError), (503, openai.InternalServerError),
])
async def test_upstream_failures_map_to_the_sdk_classes(
    env: Env, status: int, error: type[openai.APIStatusError]
) -> None:
    client, account = await env.client()
    with pytest.raises(error) as info:
        await client.chat.completions.create(
            model="fake-chat", messages=_said(f"[[fake:status:{status}]]"))
    if status >= 500:
        # Nothing about the upstream leaks into a 5xx.
        text = info.value.response.text
        assert UPSTREAM_KEY not in text and "127.0.0.1" not in text
    assert await env.settled_balance(account, CREDIT) == (CREDIT, 0)


async def test_upstream_5xx_on_a_relayed_endpoint(env: Env) -> None:
    client, _ = await env.client()
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model="fake-embed", input="[[fake:status:500]]")


async def test_the_sdk_honours_retry_after(env: Env) -> None:
    secret, _ = await env.funded_key(concurrency=1)
    hold = f"retry-{uuid.uuid4().hex[:8]}"
    blocker = env.sdk(secret)
    first = asyncio.create_task(blocker.chat.completions.create(
        model="fake-chat", messages=_said(f"[[fake:hold:{hold}]]")))
    await env.fake.held(hold).wait()

    async def release_on_429(response: httpx2.Response) -> None:
        if response.status_code == 429:
            env.fake.release(hold)  # the slot frees while the SDK waits to retry

    probe = f"probe {uuid.uuid4().hex}"
    client, wire_log = env.recorded_sdk(secret, release_on_429, max_retries=1)
    reply = await client.chat.completions.create(model="fake-chat", messages=_said(probe))
    assert reply.choices[0].message.content == wire.REPLY_TEXT
    await first
    refused, retried = wire_log.attempts
    assert (refused.status, retried.status) == (429, 200)
    assert refused.headers["retry-after"] == "1"
    # retry-after: 1 was honoured (the SDK's own first backoff is at most 0.5 s).
    assert 1.0 <= retried.at - refused.at < 2.0
    # The refused attempt never reached the upstream; the retry did, once.
    assert sum(probe.encode() in r.body for r in env.fake.to("/v1/chat/completions")) == 1


async def test_idempotency_key_replay_conflict_and_mismatch(env: Env) -> None:
    client, account, wire_log = await env.recorded_client(max_retries=2)
    key = {"Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    hold = f"idem-{uuid.uuid4().hex[:8]}"
    messages = _said(f"[[fake:hold:{hold}]]")
    first = asyncio.create_task(client.chat.completions.with_raw_response.create(
        model="fake-chat", messages=messages, extra_headers=key))
    await env.fake.held(hold).wait()
    with pytest.raises(openai.ConflictError) as conflict:
        await client.chat.completions.create(
            model="fake-chat", messages=messages, extra_headers=key)
    assert conflict.value.response.headers["x-should-retry"] == "false"
    assert [a.status for a in wire_log.attempts] == [409]  # the SDK did not retry it
    env.fake.release(hold)
    original = (await first).parse()
    replay = await client.chat.completions.with_raw_response.create(
        model="fake-chat", messages=messages, extra_headers=key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.parse().model_dump() == original.model_dump()
    with pytest.raises(openai.UnprocessableEntityError):
        await client.chat.completions.create(
            model="fake-chat", messages=_said("another body"), extra_headers=key)
    # One upstream call and one charge for the three requests with the same body.
    assert sum(hold.encode() in r.body for r in env.fake.requests) == 1
    assert await env.charged(account) == TOKEN_COST


async def test_a_reused_client_request_id_is_not_an_error(env: Env) -> None:
    client, account = await env.client()
    same = {"x-request-id": f"client-trace-{uuid.uuid4().hex[:8]}"}
    for _ in range(2):
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-chat", messages=USER, extra_headers=same)
        assert raw.headers["x-request-id"] == same["x-request-id"]
    assert await env.charged(account) == 2 * TOKEN_COST
