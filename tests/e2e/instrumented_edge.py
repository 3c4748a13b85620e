"""A second edge on a running e2e Stack, built by the test so it can be instrumented.

start_stack's own edge cannot be changed once it runs; this one is created here, so a
test can point it at a fault proxy instead of billing and add innermost middlewares
(they run in the request handler's task, after authentication) before it starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Middleware

from edge.app import create_app
from edge.config import Settings
from edge.keys import SETTLER
from tests.e2e.stack import Stack

# Long caches: no auth or catalog call in the middle of an instrumented request path.
CACHE_TTL_S = 3600.0
QUIET_WITHIN_S = 30.0
POLL_S = 0.02


def _address(stack: Stack, service: str) -> str:
    return stack.env[f"{service.upper()}_SERVICE_ADDR"]


async def start_edge(
    stack: Stack, config: Path, *, billing_addr: str | None = None,
    middlewares: Sequence[Middleware] = (),
) -> TestServer:
    """Start an edge on 127.0.0.1 for `stack` (billing at `billing_addr` if given)."""
    settings = Settings(
        host="127.0.0.1", port=0,
        auth_addr=_address(stack, "auth"), ratelimit_addr=_address(stack, "ratelimit"),
        router_addr=_address(stack, "router"),
        billing_addr=billing_addr or _address(stack, "billing"),
        auth_cache_ttl_s=CACHE_TTL_S, models_ttl_s=CACHE_TTL_S, config_path=str(config),
    )
    app = create_app(settings)
    app.middlewares.extend(middlewares)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def quiesce(app: web.Application) -> None:
    """Wait until every end-of-request call has been applied: the Settler's background
    calls, then whatever it had to put in its outbox (left to the outbox's own loop)."""
    settler = app[SETTLER]
    await asyncio.wait_for(settler.drain(), QUIET_WITHIN_S)
    spool = settler.outbox.spool

    async def emptied() -> None:
        while await spool.depth():
            await asyncio.sleep(POLL_S)

    await asyncio.wait_for(emptied(), QUIET_WITHIN_S)
