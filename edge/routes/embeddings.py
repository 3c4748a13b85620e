"""`POST /v1/embeddings`."""

from __future__ import annotations

from aiohttp import web

from edge.endpoints import EMBEDDINGS
from edge.estimate import estimate_embedding
from edge.flow import JSON, Job, json_body, run
from edge.openai.embeddings import EmbeddingRequest
from edge.openai.validation import parse_body

routes = web.RouteTableDef()


@routes.post("/v1/embeddings")
async def create_embedding(request: web.Request) -> web.StreamResponse:
    """Embed the input for the authenticated key."""
    body = await json_body(request)
    embedding = parse_body(EmbeddingRequest, body)
    estimate = estimate_embedding(embedding)
    job = Job(EMBEDDINGS, embedding.model, body, JSON, False, lambda _model: estimate)
    return await run(request, job)
