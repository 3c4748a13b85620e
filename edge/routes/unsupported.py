"""OpenAI API families the gateway does not offer, answered by name (after auth).

A request under one of them gets 404 `unsupported_endpoint` naming its method and
path, so a client learns the gateway lacks the feature rather than guessing at a typo;
any other unknown path keeps the generic `Invalid URL` 404.
"""

from __future__ import annotations

from aiohttp import web

from edge.errors import ApiError
from edge.openai.errors import ErrorCode, ErrorType

UNSUPPORTED_FAMILIES = (
    "files", "uploads", "fine_tuning", "batches", "assistants", "threads",
    "vector_stores", "organization", "moderations", "realtime", "evals", "containers",
    "dashboard", "billing",
)
_FAMILY_PATTERN = "|".join(UNSUPPORTED_FAMILIES)
_MAX_PATH_IN_MESSAGE = 200

routes = web.RouteTableDef()


@routes.route("*", f"/v1/{{family:{_FAMILY_PATTERN}}}{{tail:(?:/.*)?}}")
async def unsupported_endpoint(request: web.Request) -> web.StreamResponse:
    """Refuse an OpenAI endpoint this gateway does not implement."""
    raise ApiError(
        404, ErrorType.INVALID_REQUEST,
        f"{request.method} {request.path[:_MAX_PATH_IN_MESSAGE]} "
        "is not supported by this gateway.",
        code=ErrorCode.UNSUPPORTED_ENDPOINT,
    )
