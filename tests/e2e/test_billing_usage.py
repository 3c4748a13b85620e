"""BL-6 end to end: each usage an upstream may report is billed per policy.

A scripted OpenAI upstream (tests.e2e.billing_upstream) reports normal, missing,
negative, absurd (> max_tokens) and late (after the client left) usage. The charge is
read off the wallet, exactly where the policy fixes it: a sane usage as reported;
otherwise the reported prompt (when sane) plus the edge's count of the delivered text,
never 0 for delivered output and never the full hold.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from apirelay.billing.v1 import billing_pb2
from edge.metrics import USAGE_REJECTED
from services.common.tokens import estimate_tokens
from tests.e2e.billing_upstream import PROMPT, ScriptedUpstream, start_upstream, words
from tests.e2e.harness import usage_cost
from tests.e2e.stack import Stack, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PROMPT_PRICE, COMPLETION_PRICE = 1000, 2000
MAX_TOKENS = 16
CREDIT = 10**9
KEY_ENV = "E2E_SCRIPTED_UPSTREAM_KEY"
CONFIG = """
models:
  - {{id: scripted, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
channels:
  - {{name: scripted, type: openai, base_url: "{base}", api_key_env: {env},
      models: [scripted]}}
"""
SETTLE_WITHIN_S = 10.0


@dataclass
class Env:
    """The stack behind the scripted upstream."""

    stack: Stack
    upstream: ScriptedUpstream

    async def client(self) -> tuple[openai.AsyncOpenAI, str]:
        """An SDK client on a fresh funded account; returns (client, account id)."""
        account = await self.stack.account(CREDIT)
        _, secret = await self.stack.key(account)
        return openai.AsyncOpenAI(base_url=self.stack.base_url, api_key=secret,
                                  max_retries=0), account

    async def charged(self, account: str) -> int:
        """What the account was charged once its settlement landed and nothing is held."""
        deadline = time.monotonic() + SETTLE_WITHIN_S
        while True:
            wallet = await self.stack.wallet(account)
            if wallet.held_nanos == 0 and wallet.balance_nanos != CREDIT:
                return CREDIT - wallet.balance_nanos
            assert time.monotonic() < deadline, f"not settled: {wallet}"
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("billing-usage")
    upstream, server = await start_upstream()
    os.environ[KEY_ENV] = "sk-scripted-upstream"
    config = tmp / "apirelay.yaml"
    config.write_text(CONFIG.format(base=f"http://127.0.0.1:{server.port}/v1", env=KEY_ENV))
    stack = await start_stack(tmp / "home", config, {})
    try:
        yield Env(stack, upstream)
    finally:
        await stack.close()
        await server.close()


def _rejected(reason: str) -> float:
    return float(USAGE_REJECTED.labels(reason)._value.get())


async def _stream(client: openai.AsyncOpenAI, text: str, **options: Any) -> list[Any]:
    stream = await client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": text}], stream=True,
        max_tokens=MAX_TOKENS, **options)
    return [chunk async for chunk in stream]


def _counted(count: int) -> int:
    """The edge's count of the text of `count` delivered words."""
    return estimate_tokens("".join(words(count)))


async def test_a_sane_usage_is_billed_as_reported_and_usage_is_always_asked(env: Env) -> None:
    client, account = await env.client()
    chunks = await _stream(client, "normal [[words:5]]")
    assert await env.charged(account) == PROMPT * PROMPT_PRICE + 5 * COMPLETION_PRICE
    assert all(chunk.usage is None for chunk in chunks)  # the client did not ask for it
    asked = await _stream(client, "normal asked [[words:5]]",
                          stream_options={"include_usage": True})
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 5
    streams = [body for body in env.upstream.bodies if body.get("stream")]
    assert len(streams) == 2
    assert all(body["stream_options"]["include_usage"] is True for body in streams)
    await client.close()


async def test_no_usage_at_all_bills_the_prompt_and_the_delivered_words(env: Env) -> None:
    client, account = await env.client()
    await _stream(client, "missing [[words:6]][[nousage]]")
    charged = await env.charged(account)
    # The router counts what it delivered (at least a token per word) on top of a prompt.
    assert charged > 6 * COMPLETION_PRICE
    assert charged < (PROMPT + 50) * PROMPT_PRICE + 6 * COMPLETION_PRICE
    await client.close()


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        # The router reads a negative count as 0: delivered words reported as none.
        ("[[usage:20:-500]]", "zero_completion"),
        ("[[usage:20:100000]]", "over_max_tokens"),
    ],
)
async def test_untrusted_usage_bills_the_prompt_and_counted_words(
    env: Env, usage: str, reason: str
) -> None:
    client, account = await env.client()
    before = _rejected(reason)
    chunks = await _stream(client, f"untrusted [[words:7]]{usage}",
                           stream_options={"include_usage": True})
    expected = PROMPT * PROMPT_PRICE + _counted(7) * COMPLETION_PRICE
    assert await env.charged(account) == expected
    assert usage_cost(chunks[-1].usage) == expected  # the cost shown is what was billed
    assert _rejected(reason) == before + 1
    await client.close()


async def test_a_negative_prompt_bills_the_edges_prompt_estimate(env: Env) -> None:
    client, account = await env.client()
    before = _rejected("zero_prompt")
    await _stream(client, "negative prompt [[words:4]][[usage:-50:4]]")
    charged = await env.charged(account)
    assert _rejected("zero_prompt") == before + 1
    prompt = (charged - _counted(4) * COMPLETION_PRICE) // PROMPT_PRICE
    assert prompt > 0 and charged == prompt * PROMPT_PRICE + _counted(4) * COMPLETION_PRICE
    await client.close()


async def test_usage_after_the_client_left_bills_what_was_delivered(env: Env) -> None:
    client, account = await env.client()
    stream = await client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "late [[words:5]][[hold:late]]"}],
        stream=True, max_tokens=MAX_TOKENS)
    seen = 0
    async for chunk in stream:
        seen += bool(chunk.choices and chunk.choices[0].delta.content)
        if seen == 5:
            break
    await asyncio.wait_for(env.upstream.held("late").wait(), 5)
    await stream.close()  # gone before the upstream's finish and usage
    charged = await env.charged(account)
    env.upstream.release("late")
    # Prompt plus the five delivered words: never 0, never the whole hold.
    assert charged >= PROMPT_PRICE + _counted(5) * COMPLETION_PRICE
    assert charged < 200 * PROMPT_PRICE + MAX_TOKENS * COMPLETION_PRICE
    assert (charged - _counted(5) * COMPLETION_PRICE) % PROMPT_PRICE == 0
    await client.close()



async def _redeem(env: Env, secret: str, code: str) -> tuple[int, Any]:
    async with httpx.AsyncClient(base_url=env.stack.base_url.removesuffix("/v1")) as http:
        reply = await http.post("/apirelay/v1/redeem", json={"code": code},
                                headers={"Authorization": f"Bearer {secret}"})
    return reply.status_code, reply.json()


async def test_redeem_a_code_once_through_the_edge(env: Env) -> None:
    stack = env.stack
    created = await stack.billing.CreateRedemptionCodes(
        billing_pb2.CreateRedemptionCodesRequest(count=1, amount_nanos=5 * 10**9),
        metadata=stack.admin_metadata)
    code = created.codes[0]
    mine = await stack.account(CREDIT)
    _, secret = await stack.key(mine)
    status, body = await _redeem(env, secret, code)
    assert (status, body) == (200, {"object": "redemption", "credited_usd": "5.000000000",
                                    "balance_usd": "6.000000000"})
    assert (await stack.wallet(mine)).balance_nanos == CREDIT + 5 * 10**9
    assert (await _redeem(env, secret, code))[0] == 200  # the same account: its first result
    assert (await stack.wallet(mine)).balance_nanos == CREDIT + 5 * 10**9
    other = await stack.account(0)
    _, other_secret = await stack.key(other)
    status, body = await _redeem(env, other_secret, code)
    assert (status, body["error"]["code"]) == (409, "redemption_code_used")
    status, body = await _redeem(env, secret, "rc-no-such-code")
    assert (status, body["error"]["code"]) == (404, "redemption_code_not_found")
