"""Rate limits through the whole stack with the official client: per key, per account
(two keys together), per (key, model), per day, the x-ratelimit-* headers and retry-after,
and two edges in front of one limiter admitting exactly the limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from edge.app import create_app
from edge.keys import SETTINGS
from tests.e2e.harness import Env, open_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

USER = [{"role": "user", "content": "Hello there"}]
ACCOUNT_RPM = 3
MODEL_RPM = 2

CONFIG = f"""
models:
  - {{{{id: demo, max_output_tokens: 64, price: {{{{prompt: 1, completion: 1}}}}}}}}
  - {{{{id: capped, max_output_tokens: 64, price: {{{{prompt: 1, completion: 1}}}}}}}}
channels:
  - {{{{name: mock, type: mock, models: [demo, capped]}}}}
groups: {{{{team: 10000}}}}
limits:
  groups:
    team: {{{{account: {{{{rpm: {ACCOUNT_RPM}}}}}}}}}
  models:
    capped: {{{{rpm: {MODEL_RPM}, tpm: 100000}}}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with open_env(tmp_path_factory.mktemp("stack"), CONFIG) as env:
        yield env


async def chat(client: openai.AsyncOpenAI, model: str = "demo") -> Any:
    """One request; the raw response (its headers) or the RateLimitError."""
    try:
        return await client.chat.completions.with_raw_response.create(
            model=model, messages=USER, max_tokens=5)  # type: ignore[arg-type]
    except openai.RateLimitError as exc:
        return exc


async def test_rpm_per_key_with_headers_and_retry_after(env: Env) -> None:
    client, _ = await env.client(rpm=2)
    first, second, third = [await chat(client) for _ in range(3)]
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert [first.headers["x-ratelimit-remaining-requests"],
            second.headers["x-ratelimit-remaining-requests"]] == ["1", "0"]
    assert first.headers["x-ratelimit-limit-tokens"] == "1000000"  # the built-in default
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 1_000_000
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert isinstance(third, openai.RateLimitError) and third.code == "rate_limit_exceeded"
    assert "this API key on requests per min (RPM): Limit 2" in third.message
    assert 1 <= int(third.response.headers["retry-after"]) <= 60
    assert third.response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_rpm_per_account_counts_two_keys_together(env: Env) -> None:
    account = await env.stack.account(10**9, group="team")
    one = env.sdk((await env.stack.key(account))[1])
    two = env.sdk((await env.stack.key(account))[1])
    results = [await chat(one), await chat(two), await chat(one), await chat(two)]
    assert [isinstance(r, openai.RateLimitError) for r in results] == [False] * 3 + [True]
    assert "this account (all of its keys together)" in results[3].message
    assert results[2].headers["x-ratelimit-limit-requests"] == str(ACCOUNT_RPM)
    other = env.sdk((await env.stack.key(await env.stack.account(10**9, group="team")))[1])
    assert not isinstance(await chat(other), openai.RateLimitError)  # another account


async def test_rpm_per_key_and_model(env: Env) -> None:
    client, _ = await env.client()
    capped = [await chat(client, "capped") for _ in range(MODEL_RPM + 1)]
    assert [isinstance(r, openai.RateLimitError) for r in capped] == [False, False, True]
    assert "this API key on model 'capped' on requests per min (RPM)" in capped[-1].message
    assert capped[0].headers["x-ratelimit-limit-tokens"] == "100000"  # the model's TPM
    assert not isinstance(await chat(client, "demo"), openai.RateLimitError)  # other model
    fresh, _ = await env.client()
    assert not isinstance(await chat(fresh, "capped"), openai.RateLimitError)  # other key


async def test_rpd_per_key(env: Env) -> None:
    client, _ = await env.client(rpd=2)
    results = [await chat(client) for _ in range(3)]
    assert results[0].headers["x-ratelimit-limit-requests"] == "2"  # tighter than 3000 RPM
    denied = results[2]
    assert isinstance(denied, openai.RateLimitError)
    assert "requests per day (RPD): Limit 2" in denied.message
    assert int(denied.response.headers["retry-after"]) > 3600  # a day's window
    assert "h" in denied.response.headers["x-ratelimit-reset-requests"]


async def test_two_edges_admit_exactly_the_limit_at_three_times_the_demand(env: Env) -> None:
    limit = 20
    second = TestServer(create_app(env.stack.edge.app[SETTINGS]), host="127.0.0.1")
    await second.start_server()
    try:
        secret, _ = await env.funded_key(rpm=limit)
        clients = [env.sdk(secret), openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{second.port}/v1", api_key=secret, max_retries=0)]
        results = await asyncio.gather(*(chat(clients[i % 2]) for i in range(3 * limit)))
        await clients[1].close()
    finally:
        await second.close()
    denied = sum(isinstance(r, openai.RateLimitError) for r in results)
    assert (len(results) - denied, denied) == (limit, 2 * limit)
