"""What every e2e module shares: the stack behind a fake upstream, and funded SDK clients."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai

from tests.e2e.fake_openai import FakeOpenAI, start_fake_openai
from tests.e2e.stack import Stack, start_stack

UPSTREAM_KEY_ENV = "E2E_FAKE_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-e2e-secret"
CREDIT = 1_000_000_000  # $1
COST_HEADER = "x-apirelay-cost-usd"
NANOS_PER_USD = 10**9
SETTLE_POLLS = 150
SETTLE_POLL_S = 0.02


ResponseHook = Callable[[httpx2.Response], Awaitable[None]]


@dataclass(frozen=True)
class Attempt:
    """One HTTP exchange of an SDK client: what it sent, what came back, and when."""

    body: bytes
    status: int
    headers: httpx2.Headers
    at: float  # time.monotonic() when the answer's headers arrived


@dataclass
class Wire:
    """Records what an SDK client sends and receives (its httpx2 event hooks)."""

    sent: list[bytes] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    def http_client(self, *hooks: ResponseHook) -> httpx2.AsyncClient:
        """An httpx2 client for `openai.AsyncOpenAI(http_client=...)` that records here;
        `hooks` run on each answer after it is recorded."""
        return httpx2.AsyncClient(event_hooks={"request": [self._request],
                                               "response": [self._response, *hooks]})

    async def _request(self, request: httpx2.Request) -> None:
        self.sent.append(await request.aread())

    async def _response(self, response: httpx2.Response) -> None:
        body = self.sent[-1] if self.sent else b""
        self.attempts.append(Attempt(body, response.status_code, response.headers,
                                     time.monotonic()))


class Env:
    """The stack, the fake upstream and a factory of funded clients."""

    def __init__(self, stack: Stack, fake: FakeOpenAI) -> None:
        self.stack, self.fake = stack, fake
        self._closers: list[Any] = []

    def sdk(self, secret: str, *, max_retries: int = 0,
            http_client: httpx2.AsyncClient | None = None) -> openai.AsyncOpenAI:
        """An SDK client for `secret` (closed when the module's tests end); no retries."""
        client = openai.AsyncOpenAI(base_url=self.stack.base_url, api_key=secret,
                                    max_retries=max_retries, http_client=http_client)
        self._closers.append(client)
        return client

    def sync_sdk(self, secret: str) -> openai.OpenAI:
        """A synchronous SDK client for `secret` (use it from a worker thread)."""
        client = openai.OpenAI(base_url=self.stack.base_url, api_key=secret, max_retries=0)
        self._closers.append(client)
        return client

    async def funded_key(self, credit: int = CREDIT, **limits: int) -> tuple[str, str]:
        """A fresh account with `credit` and a key on it; returns (secret, account_id)."""
        account = await self.stack.account(credit)
        _, secret = await self.stack.key(account, **limits)
        return secret, account

    async def recorded_client(
        self, credit: int = CREDIT, *, max_retries: int = 0, **limits: int
    ) -> tuple[openai.AsyncOpenAI, str, Wire]:
        """A funded client whose HTTP exchanges are recorded; returns (client, account, wire)."""
        secret, account = await self.funded_key(credit, **limits)
        wire = Wire()
        client = self.sdk(secret, max_retries=max_retries, http_client=wire.http_client())
        return client, account, wire

    def recorded_sdk(
        self, secret: str, *hooks: ResponseHook, max_retries: int = 0
    ) -> tuple[openai.AsyncOpenAI, Wire]:
        """A client for `secret` whose exchanges are recorded (and passed to `hooks`)."""
        wire = Wire()
        client = self.sdk(secret, max_retries=max_retries, http_client=wire.http_client(*hooks))
        return client, wire

    async def client(self, credit: int = CREDIT, **limits: int) -> tuple[openai.AsyncOpenAI, str]:
        """A client with a fresh account and key; returns (client, account_id)."""
        secret, account = await self.funded_key(credit, **limits)
        return self.sdk(secret), account

    async def settled(self, account: str, credit: int = CREDIT) -> tuple[int, int]:
        """(balance, held) once the request's settlement has landed (it runs after the answer)."""
        wallet = await self.stack.wallet(account)
        for _ in range(SETTLE_POLLS):
            if wallet.held_nanos == 0 and wallet.balance_nanos != credit:
                break
            await asyncio.sleep(SETTLE_POLL_S)
            wallet = await self.stack.wallet(account)
        return wallet.balance_nanos, wallet.held_nanos

    async def settled_balance(self, account: str, expected: int) -> tuple[int, int]:
        """(balance, held) once the balance is `expected` and nothing is held, or at timeout."""
        wallet = await self.stack.wallet(account)
        for _ in range(SETTLE_POLLS):
            if wallet.balance_nanos == expected and wallet.held_nanos == 0:
                break
            await asyncio.sleep(SETTLE_POLL_S)
            wallet = await self.stack.wallet(account)
        return wallet.balance_nanos, wallet.held_nanos

    async def charged(self, account: str, credit: int = CREDIT) -> int:
        """What the account was charged, once settled (asserts nothing is left on hold)."""
        balance, held = await self.settled(account, credit)
        assert held == 0, f"{held} nano-USD still held"
        return credit - balance

    async def close(self) -> None:
        """Close every SDK client made here."""
        for client in self._closers:
            result = client.close()
            if asyncio.iscoroutine(result):
                await result


def usd_to_nanos(amount: str | float | Decimal) -> int:
    """An exact USD amount (a header string, or a JSON number) in nano-USD."""
    nanos = Decimal(str(amount)) * NANOS_PER_USD
    assert nanos == nanos.to_integral_value(), f"{amount} USD is not a whole number of nano-USD"
    return int(nanos)


def usage_cost(usage: Any) -> int:
    """`usage.cost` of an SDK object (a JSON number with 9 decimals) in nano-USD."""
    extra = usage.model_extra or {}
    assert "cost" in extra, f"no cost in {usage}"
    return usd_to_nanos(Decimal(str(extra["cost"])))


def json_cost(raw: bytes, *path: str) -> int:
    """The `cost` in the object at `path` of a raw JSON answer, read exactly (no float)."""
    node = json.loads(raw, parse_float=Decimal)
    for key in path:
        node = node[key]
    return usd_to_nanos(node["cost"])


@asynccontextmanager
async def open_env(tmp: Path, config: str, **extra_env: str) -> AsyncIterator[Env]:
    """Start the fake upstream and the stack; `config` may use {base} and {env}."""
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    fake, fake_server = await start_fake_openai()
    path = tmp / "apirelay.yaml"
    path.write_text(config.format(base=f"http://127.0.0.1:{fake_server.port}/v1",
                                  env=UPSTREAM_KEY_ENV))
    stack = await start_stack(tmp / "home", path, {"EDGE_AUTH_CACHE_TTL_S": "0.2", **extra_env})
    env = Env(stack, fake)
    try:
        yield env
    finally:
        await env.close()
        await stack.close()
        await fake_server.close()
