"""A local OpenAI-compatible upstream that tests script, for the OpenAI provider's tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.gateway_config import ChannelEntry
from services.router.config import Settings
from services.router.providers.openai import OpenAIProvider
from services.router.server import upstream_session

KEY = "sk-upstream-secret-0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """One request the upstream received."""

    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class ScriptedUpstream:
    """Records every POST below /v1 and answers as the test says."""

    base_url: str = ""
    session: aiohttp.ClientSession | None = None
    handler: Handler | None = None
    seen: list[Seen] = field(default_factory=list)

    def answer(self, status: int, body: bytes, headers: Mapping[str, str] | None = None,
               content_type: str = "application/json") -> None:
        """Answer every request with `status`, `body`, `headers` and `content_type`."""
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, body=body, headers={
                "content-type": content_type, **(headers or {})})
        self.handler = handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(str(request.url), request.headers.copy(), await request.read()))
        assert self.handler is not None
        return await self.handler(request)

    def provider(self, base_url: str = "") -> OpenAIProvider:
        """A provider for this upstream (or for `base_url`) with the router's session."""
        channel = ChannelEntry(name="up", type="openai", models=("demo",),
                               base_url=base_url or self.base_url)
        assert self.session is not None
        return OpenAIProvider(channel, self.session, KEY)


@asynccontextmanager
async def scripted_upstream() -> AsyncIterator[ScriptedUpstream]:
    """A running ScriptedUpstream with the router's HTTP session."""
    script = ScriptedUpstream()
    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", script.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    script.base_url = str(server.make_url("/v1"))
    async with upstream_session(Settings()) as session:
        script.session = session
        yield script
    await server.close()


def streamed(*parts: bytes, drop: bool = False, content_type: str = "text/event-stream",
             ) -> Handler:
    """A handler that writes an answer in `parts`, then ends it or drops the connection."""
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": content_type})
        await response.prepare(request)
        for part in parts:
            await response.write(part)
            await asyncio.sleep(0)
        if drop:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response
    return handler
