"""`POST /v1/completions` (legacy text completions), streamed (SSE) or not."""

from __future__ import annotations

from aiohttp import web

from edge.endpoints import COMPLETIONS
from edge.estimate import estimate_completion
from edge.flow import JSON, Job, json_body, run
from edge.openai.completions import CompletionRequest
from edge.openai.validation import parse_body

routes = web.RouteTableDef()


@routes.post("/v1/completions")
async def create_completion(request: web.Request) -> web.StreamResponse:
    """Run one legacy completion for the authenticated key."""
    body = await json_body(request)
    completion = parse_body(CompletionRequest, body)
    estimate = estimate_completion(completion)
    job = Job(COMPLETIONS, completion.model, body, JSON, bool(completion.stream),
              lambda _model: estimate)
    return await run(request, job)
