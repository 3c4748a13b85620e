"""Streams through the official SDK: errors before and after the first chunk, keepalives,
and a client that goes away mid-stream (the upstream hears of it, the bill is partial)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from tests.e2e import fake_wire as wire
from tests.e2e.harness import CREDIT, Env, open_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

COMPLETION_PRICE = 2000
KEEPALIVE_S = 0.2
CONFIG = """
models:
  - {{id: fake-chat, max_output_tokens: 64, price: {{prompt: 1000, completion: 2000}}}}
channels:
  - {{name: fake, type: openai, base_url: "{base}", api_key_env: {env}, models: [fake-chat]}}
"""
DISCONNECT_WITHIN_S = 1.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with open_env(tmp_path_factory.mktemp("streams"), CONFIG,
                        EDGE_KEEPALIVE_S=str(KEEPALIVE_S)) as env:
        yield env


def _said(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def _open(client: openai.AsyncOpenAI, endpoint: str, text: str) -> Any:
    if endpoint == "chat":
        return await client.chat.completions.create(
            model="fake-chat", messages=_said(text), stream=True)
    if endpoint == "completions":
        return await client.completions.create(model="fake-chat", prompt=text, stream=True)
    return await client.responses.create(model="fake-chat", input=text, stream=True)


def _is_content(endpoint: str, event: Any) -> bool:
    if endpoint == "chat":
        return bool(event.choices and event.choices[0].delta.content)
    if endpoint == "completions":
        return bool(event.choices and event.choices[0].text)
    return bool(event.type == "response.output_text.delta")


@pytest.mark.parametrize(("endpoint", "path"), [
    ("chat", "/v1/chat/completions"), ("completions", "/v1/completions"),
    ("responses", "/v1/responses"),
])
async def test_a_disconnect_reaches_the_upstream_and_bills_only_what_was_delivered(
    env: Env, endpoint: str, path: str
) -> None:
    client, account = await env.client()
    text = f"[[fake:drip]] {uuid.uuid4().hex}"
    env.fake.disconnected.clear()
    stream = await _open(client, endpoint, text)
    seen, hold = 0, 0
    async for event in stream:
        seen += _is_content(endpoint, event)
        if seen == 1 and not hold:
            hold = (await env.stack.wallet(account)).held_nanos
        if seen == 3:
            break
    await stream.close()
    closed_at = time.monotonic()
    await asyncio.wait_for(env.fake.disconnected.wait(), DISCONNECT_WITHIN_S)
    gone = env.fake.disconnects[-1]
    assert gone.path == path and gone.at - closed_at < DISCONNECT_WITHIN_S
    charged = await env.charged(account)
    # Never 0 and never the whole hold (placed for the output cap: 64 tokens, or 16 by
    # default for legacy completions): the prompt plus the pieces delivered, at least
    # the three the client read.
    assert 3 * COMPLETION_PRICE < charged < hold


async def test_an_upstream_error_after_the_first_chunk_is_in_band(env: Env) -> None:
    client, account = await env.client()
    stream = await client.chat.completions.create(
        model="fake-chat", messages=_said("[[fake:cut]]"), stream=True)
    pieces: list[str] = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert pieces == wire.REPLY_WORDS[:2]
    assert 2 * COMPLETION_PRICE < await env.charged(account)


async def test_an_upstream_error_before_the_first_chunk_is_a_real_status(env: Env) -> None:
    client, account = await env.client()
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="fake-chat", messages=_said("[[fake:status:500]]"), stream=True)
    assert await env.settled_balance(account, CREDIT) == (CREDIT, 0)


async def test_keepalive_comments_flow_while_the_upstream_is_silent(env: Env) -> None:
    secret, _ = await env.funded_key()
    pause = f"pause-{uuid.uuid4().hex[:8]}"
    body = {"model": "fake-chat", "stream": True, "messages": _said(f"[[fake:pause:{pause}]]")}
    lines: list[str] = []
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", env.stack.base_url + "/chat/completions", json=body,
                    headers={"authorization": f"Bearer {secret}"}) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith(":"):
                env.fake.release(pause)  # a keepalive came during the silence
            if line == "data: [DONE]":
                break
    assert env.fake.held(pause).is_set()
    comments = [i for i, line in enumerate(lines) if line.startswith(":")]
    contents = [i for i, line in enumerate(lines) if '"content":"' in line]
    # The keepalive came between the words sent before the silence and those after it.
    assert comments and contents[0] < comments[0] < contents[-1]
