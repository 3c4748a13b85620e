"""`POST /v1/images/generations` (JSON), billed per image by size and quality."""

from __future__ import annotations

from aiohttp import web

from edge.endpoints import IMAGE_GENERATIONS
from edge.estimate import estimate_images
from edge.flow import JSON, Job, json_body, run
from edge.openai.images import ImageGenerationRequest
from edge.openai.validation import parse_body

routes = web.RouteTableDef()


@routes.post("/v1/images/generations")
async def create_images(request: web.Request) -> web.StreamResponse:
    """Generate images for the authenticated key."""
    body = await json_body(request)
    images = parse_body(ImageGenerationRequest, body)
    estimate = estimate_images(images.n, images.size, images.quality)
    job = Job(IMAGE_GENERATIONS, images.model, body, JSON, False, lambda _model: estimate)
    return await run(request, job)
