"""The whole stack in one loop, driven by the official openai client: happy paths, every
error case of the edge, and exact balance arithmetic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import pytest_asyncio

from services.common.tokens import estimate_tokens
from tests.e2e.harness import CREDIT, UPSTREAM_KEY, Env, open_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

USER = [{"role": "user", "content": "Hello there"}]

CONFIG = """
models:
  - {{id: demo, max_output_tokens: 256, price: {{prompt: 150, completion: 600}}}}
  - {{id: counted, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
  - {{id: slow, max_output_tokens: 64, price: {{prompt: 1, completion: 1}}}}
  - {{id: unpriced, max_output_tokens: 64}}
  - {{id: paced, max_output_tokens: 64, price: {{prompt: 150, completion: 600}}}}
channels:
  - {{name: mock, type: mock, models: [demo, unpriced]}}
  - {{name: slowmock, type: mock, models: [slow], mock: {{first_token_delay_ms: 500}}}}
  - {{name: pacedmock, type: mock, models: [paced], mock: {{tokens_per_second: 20}}}}
  - {{name: fake, type: openai, base_url: "{base}", api_key_env: {env}, models: [counted]}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with open_env(tmp_path_factory.mktemp("stack"), CONFIG) as env:
        yield env


def _cost(usage: openai.types.CompletionUsage, prompt: int, completion: int) -> int:
    return usage.prompt_tokens * prompt + usage.completion_tokens * completion


async def test_models_lists_the_catalog(env: Env) -> None:
    client, _ = await env.client()
    ids = {m.id async for m in client.models.list()}
    assert {"demo", "counted", "slow"} <= ids


async def test_non_stream_bills_price_times_usage(env: Env) -> None:
    client, account = await env.client()
    raw = await client.chat.completions.with_raw_response.create(model="demo", messages=USER)
    reply = raw.parse()
    assert reply.choices[0].message.content and reply.usage is not None
    assert raw.headers["x-request-id"]
    expected = CREDIT - _cost(reply.usage, 150, 600)
    assert await env.settled_balance(account, expected) == (expected, 0)


async def test_stream_with_usage_bills_exactly(env: Env) -> None:
    client, account = await env.client()
    stream = await client.chat.completions.create(
        model="demo", messages=USER, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    assert text and usage is not None
    expected = CREDIT - _cost(usage, 150, 600)
    assert await env.settled_balance(account, expected) == (expected, 0)


async def test_stream_without_usage_still_bills_upstream_usage(env: Env) -> None:
    client, account = await env.client()
    stream = await client.chat.completions.create(model="counted", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # The fake upstream reports 11 prompt and 5 completion tokens.
    expected = CREDIT - (11 * 1000 + 5 * 2000)
    assert await env.settled_balance(account, expected) == (expected, 0)
    assert env.fake.to("/v1/chat/completions")[-1].headers["authorization"] == (
        f"Bearer {UPSTREAM_KEY}")


async def test_missing_key_is_401(env: Env) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.post(env.stack.base_url + "/chat/completions",
                                json={"model": "demo", "messages": USER})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert reply.headers["x-request-id"]


async def test_unknown_and_revoked_keys_are_401(env: Env) -> None:
    bad = env.sdk("sk-nope")
    with pytest.raises(openai.AuthenticationError) as info:
        await bad.chat.completions.create(model="demo", messages=USER)
    assert info.value.code == "invalid_api_key"

    account = await env.stack.account(CREDIT)
    key_id, secret = await env.stack.key(account)
    good = env.sdk(secret)
    await good.chat.completions.create(model="demo", messages=USER)
    from apirelay.auth.v1 import auth_pb2

    await env.stack.auth.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key_id),
                                      metadata=env.stack.admin_metadata)
    await asyncio.sleep(0.3)  # the edge's principal cache TTL is 0.2 s here
    with pytest.raises(openai.AuthenticationError):
        await good.chat.completions.create(model="demo", messages=USER)


async def test_unknown_model_is_404(env: Env) -> None:
    client, account = await env.client()
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="no-such-model", messages=USER)
    assert info.value.code == "model_not_found"
    assert await env.settled_balance(account, CREDIT) == (CREDIT, 0)


async def test_malformed_json_and_missing_fields_are_400(env: Env) -> None:
    account = await env.stack.account(CREDIT)
    _, secret = await env.stack.key(account)
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    async with httpx.AsyncClient() as http:
        broken = await http.post(env.stack.base_url + "/chat/completions", content=b"{nope",
                                 headers=headers)
        missing = await http.post(env.stack.base_url + "/chat/completions",
                                  json={"model": "demo"}, headers=headers)
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    client = env.sdk(secret)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="demo", messages=USER, max_tokens=-5)
    assert info.value.param == "max_tokens"


async def test_rate_limited_is_429_with_retry_after_and_leaves_nothing(env: Env) -> None:
    client, account = await env.client(rpm=1)
    first = await client.chat.completions.create(model="demo", messages=USER)
    assert first.usage is not None
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="demo", messages=USER)
    assert info.value.code == "rate_limit_exceeded"
    assert int(info.value.response.headers["retry-after"]) >= 1
    expected = CREDIT - _cost(first.usage, 150, 600)
    assert await env.settled_balance(account, expected) == (expected, 0)


async def test_concurrency_limit_is_429(env: Env) -> None:
    client, _ = await env.client(concurrency=1)
    results = await asyncio.gather(
        client.chat.completions.create(model="slow", messages=USER),
        client.chat.completions.create(model="slow", messages=USER),
        return_exceptions=True)
    assert sum(isinstance(r, openai.RateLimitError) for r in results) == 1
    assert sum(not isinstance(r, BaseException) for r in results) == 1


async def test_insufficient_balance_is_429_and_no_upstream_call(env: Env) -> None:
    client, account = await env.client(credit=10)
    calls = len(env.fake.requests)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="counted", messages=USER)
    assert info.value.code == "insufficient_quota"
    assert len(env.fake.requests) == calls
    assert await env.settled_balance(account, 10) == (10, 0)


async def test_unpriced_model_is_refused(env: Env) -> None:
    client, _ = await env.client()
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model="unpriced", messages=USER)
    assert info.value.code == "model_not_priced"


async def test_model_outside_the_key_is_403(env: Env) -> None:
    account = await env.stack.account(CREDIT)
    secret = await env.stack.key_for_models(account, ["counted"])
    client = env.sdk(secret)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model="demo", messages=USER)
    assert info.value.code == "model_not_allowed"


async def test_request_id_is_echoed_or_made(env: Env) -> None:
    async with httpx.AsyncClient() as http:
        given = await http.get(env.stack.base_url + "/models", headers={"x-request-id": "trace-42"})
        made = await http.get(env.stack.base_url + "/nowhere")
    assert given.headers["x-request-id"] == "trace-42"
    assert made.status_code == 404 and made.headers["x-request-id"]
    assert made.json()["error"]["type"]


FULL_REPLY_TOKENS = 11  # the mock's default reply, one token per word-ish piece


async def _charged_when_settled(env: Env, account: str) -> int:
    wallet = await env.stack.wallet(account)
    for _ in range(150):
        if wallet.held_nanos == 0 and wallet.balance_nanos < CREDIT:
            break
        await asyncio.sleep(0.02)
        wallet = await env.stack.wallet(account)
    assert wallet.held_nanos == 0
    return CREDIT - wallet.balance_nanos


async def test_cut_stream_bills_what_was_delivered(env: Env) -> None:
    client, account = await env.client()
    text = "Cut me short [[mock:cut:3]]"
    stream = await client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": text}], stream=True)
    pieces: list[str] = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) == 3
    charged = await _charged_when_settled(env, account)
    prompt_cost = estimate_tokens(text) * 150
    # Never 0, never the whole hold: the prompt plus what was delivered.
    assert prompt_cost + 3 * 600 <= charged < prompt_cost + FULL_REPLY_TOKENS * 600


async def test_client_disconnect_bills_delivered_and_frees_the_slot(env: Env) -> None:
    account = await env.stack.account(CREDIT)
    _, secret = await env.stack.key(account, concurrency=1)
    body = {"model": "paced", "stream": True, "messages": USER}
    headers = {"authorization": f"Bearer {secret}"}
    url = env.stack.base_url + "/chat/completions"
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", url, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        contents = 0
        async for line in response.aiter_lines():
            contents += '"content":"' in line and '"content":""' not in line
            if contents == 2:
                break  # leaving the block closes the connection mid-stream
    charged = await _charged_when_settled(env, account)
    # The edge's prompt estimate: 3 for the reply priming, 4 per message, plus the text.
    prompt_cost = 150 * (3 + 4 + estimate_tokens(USER[0]["content"]))
    hold = prompt_cost + 64 * 600
    assert prompt_cost + 2 * 600 <= charged < prompt_cost + FULL_REPLY_TOKENS * 600 < hold
    client = env.sdk(secret)
    for _ in range(50):  # the lease is released in the background
        try:
            await client.chat.completions.create(model="demo", messages=USER)
            break
        except openai.RateLimitError:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the concurrency slot was never released after the disconnect")
