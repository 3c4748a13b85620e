"""Soak: concurrent clients, streams cut by the upstream or abandoned by the client.

Bounded (`SOAK_SECONDS`, default 60) and loopback only. Whatever happened to each
request, nothing may be left behind: no open hold and no leaked concurrency slot, and
the account was charged. Run with `make soak`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from tests.e2e.stack import Stack, start_stack

pytestmark = [pytest.mark.soak, pytest.mark.asyncio(loop_scope="module")]

CREDIT = 100_000_000_000
CONCURRENCY_LIMIT = 8
CONFIG = """
models:
  - {id: demo, max_output_tokens: 64, price: {prompt: 150, completion: 600}}
  - {id: paced, max_output_tokens: 64, price: {prompt: 150, completion: 600}}
channels:
  - {name: mock, type: mock, models: [demo]}
  - {name: pacedmock, type: mock, models: [paced], mock: {tokens_per_second: 200}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("soak")
    config = tmp / "apirelay.yaml"
    config.write_text(CONFIG)
    started = await start_stack(tmp / "home", Path(config), {})
    try:
        yield started
    finally:
        await started.close()


async def _one(http: httpx.AsyncClient, sdk: openai.AsyncOpenAI, rng: random.Random) -> str:
    kind = rng.choice(["unary", "stream", "cut", "abandon"])
    messages = [{"role": "user", "content": "soak [[mock:cut:2]]" if kind == "cut" else "soak"}]
    try:
        if kind == "unary":
            await sdk.chat.completions.create(model="demo", messages=messages)
        elif kind in ("stream", "cut"):
            async for _ in await sdk.chat.completions.create(
                    model="paced", messages=messages, stream=True):
                pass
        else:
            body = {"model": "paced", "stream": True, "messages": messages}
            async with http.stream("POST", "/chat/completions", json=body) as response:
                async for _ in response.aiter_lines():
                    break  # the client goes away mid-stream
    except openai.RateLimitError:
        return "limited"
    except openai.APIError:
        return "cut"
    return kind


async def test_nothing_is_lost_under_load(stack: Stack) -> None:
    seconds = float(os.environ.get("SOAK_SECONDS", "60"))
    account = await stack.account(CREDIT)
    # Only concurrency is limited: no RPM/TPM default may refuse the soak's load.
    _, secret = await stack.key(account, concurrency=CONCURRENCY_LIMIT, rpm=-1, tpm=-1)
    sdk = openai.AsyncOpenAI(base_url=stack.base_url, api_key=secret, max_retries=0)
    headers = {"authorization": f"Bearer {secret}"}
    outcomes: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=30) as http:
            while time.monotonic() < deadline:
                outcome = await _one(http, sdk, rng)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

    await asyncio.gather(*(worker(seed) for seed in range(12)))
    await sdk.close()
    assert sum(outcomes.values()) > 100, outcomes
    wallet = await stack.wallet(account)
    for _ in range(200):  # settlements finish in the background
        if wallet.held_nanos == 0:
            break
        await asyncio.sleep(0.05)
        wallet = await stack.wallet(account)
    assert wallet.held_nanos == 0, "a hold was left behind"
    assert 0 < CREDIT - wallet.balance_nanos
    # Every slot came back: CONCURRENCY_LIMIT requests at once are all admitted.
    check = openai.AsyncOpenAI(base_url=stack.base_url, api_key=secret, max_retries=0)
    results = await asyncio.gather(*(
        check.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
        for _ in range(CONCURRENCY_LIMIT)), return_exceptions=True)
    await check.close()
    assert not [r for r in results if isinstance(r, BaseException)], results
