"""`GET /healthz` (the process is alive) and `GET /readyz` (it should get traffic)."""

from __future__ import annotations

import orjson
from aiohttp import web

from edge.keys import CLIENTS, LIFECYCLE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: answers while the event loop runs."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: 503 while draining or while a service's channel cannot connect."""
    if request.app[LIFECYCLE].draining:
        return _not_ready({"status": "draining"})
    unhealthy = request.app[CLIENTS].unhealthy()
    if unhealthy:
        return _not_ready({"status": "unavailable", "services": unhealthy})
    return web.Response(body=b'{"status":"ready"}', content_type="application/json")


def _not_ready(body: dict[str, object]) -> web.Response:
    return web.Response(status=503, body=orjson.dumps(body), content_type="application/json")
