"""`POST /v1/images/edits` (multipart), billed per image by size and quality."""

from __future__ import annotations

from aiohttp import web

from edge.endpoints import IMAGE_EDITS
from edge.estimate import estimate_images
from edge.flow import Job, form_body, run
from edge.openai.forms import form_digest, read_form, validate_form
from edge.openai.images import ImageEditForm

routes = web.RouteTableDef()


@routes.post("/v1/images/edits")
async def edit_images(request: web.Request) -> web.StreamResponse:
    """Edit images for the authenticated key."""
    body, content_type = await form_body(request)
    form = read_form(body, content_type)
    edit = validate_form(ImageEditForm, form)
    estimate = estimate_images(edit.n, edit.size, edit.quality)
    job = Job(IMAGE_EDITS, edit.model, body, content_type, False, lambda _model: estimate,
              digest=form_digest(form))
    return await run(request, job)
