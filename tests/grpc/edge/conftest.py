"""The edge app on an aiohttp TestServer, wired to fake services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge.app import create_app
from edge.config import Settings
from edge.keys import SETTLER
from tests.grpc.edge.fakes import SECRET, FakeServices, start_fakes


@dataclass
class Edge:
    """The running edge, its HTTP client and the fakes behind it."""

    client: TestClient[Any, Any]
    fakes: FakeServices

    async def settled(self) -> None:
        """Wait for the background settlement calls."""
        await self.client.app[SETTLER].drain()

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the edge."""
        return str(self.client.make_url("/v1"))


def auth(secret: str = SECRET) -> dict[str, str]:
    """The Authorization header for `secret`."""
    return {"Authorization": f"Bearer {secret}"}


@asynccontextmanager
async def open_edge(**overrides: Any) -> AsyncIterator[Edge]:
    """A fresh edge (settings changed by `overrides`) and fresh fakes."""
    fakes = await start_fakes()
    settings = replace(
        Settings(),
        auth_addr=fakes.address, ratelimit_addr=fakes.address,
        billing_addr=fakes.address, router_addr=fakes.address,
        keepalive_s=0.05, rpc_timeout_s=2.0, request_timeout_s=10.0, max_body_bytes=64 * 1024,
    )
    client = TestClient(TestServer(create_app(replace(settings, **overrides))))
    await client.start_server()
    try:
        yield Edge(client, fakes)
    finally:
        await client.close()
        await fakes.server.stop(None)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    """A fresh edge and fresh fakes for one test."""
    async with open_edge() as running:
        yield running


@pytest.fixture
async def sdk(edge: Edge) -> AsyncIterator[openai.AsyncOpenAI]:
    """An AsyncOpenAI client pointed at the edge, without retries."""
    client = openai.AsyncOpenAI(base_url=edge.base_url, api_key=SECRET, max_retries=0)
    try:
        yield client
    finally:
        await client.close()
