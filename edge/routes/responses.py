"""`POST /v1/responses`, streamed (SSE with named events) or not: a passthrough."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from edge.endpoints import RESPONSES
from edge.estimate import estimate_response
from edge.flow import JSON, Job, json_body, run
from edge.openai.responses import ResponsesRequest
from edge.openai.validation import parse_body

routes = web.RouteTableDef()


@routes.post("/v1/responses")
async def create_response(request: web.Request) -> web.StreamResponse:
    """Run one Responses request for the authenticated key."""
    body = await json_body(request)
    response = parse_body(ResponsesRequest, body)
    job = Job(RESPONSES, response.model, body, JSON, bool(response.stream),
              partial(estimate_response, response))
    return await run(request, job)
