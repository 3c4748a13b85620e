"""`GET /openapi.json`: the OpenAPI 3.1 description of this gateway (no key needed)."""

from __future__ import annotations

from aiohttp import web

from edge.openapi.document import openapi_json

routes = web.RouteTableDef()


@routes.get("/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """The OpenAPI document, as JSON."""
    return web.Response(body=openapi_json(), content_type="application/json")
