"""Reading a request body within its size limit, and checking its content type.

A body over the limit is refused with 413 without reading the rest: at once when
`Content-Length` announces it, and as soon as a chunked body grows past it. The 413
closes the connection, so the unread rest is never waited for.
"""

from __future__ import annotations

from aiohttp import web

from edge.errors import ApiError
from edge.openai.errors import ErrorCode, ErrorType

MULTIPART = "multipart/form-data"
_FORM_TYPES = (MULTIPART, "application/x-www-form-urlencoded")


def too_large(limit: int) -> ApiError:
    """The 413 for a body over `limit` bytes."""
    return ApiError(
        413, ErrorType.INVALID_REQUEST,
        f"The request body is too large (the limit is {limit} bytes).",
        code=ErrorCode.REQUEST_TOO_LARGE, headers={"Connection": "close"},
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or ApiError 413 as soon as it is known to exceed `limit`."""
    announced = request.content_length
    if announced is not None and announced > limit:
        raise too_large(limit)
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


def require_json(request: web.Request) -> None:
    """400 when a form was sent to an endpoint that takes a JSON body."""
    if request.content_type.lower() in _FORM_TYPES:
        raise ApiError(
            400, ErrorType.INVALID_REQUEST,
            f"{request.path} takes a JSON body (Content-Type: application/json), "
            f"not {request.content_type}.",
            code=ErrorCode.UNSUPPORTED_CONTENT_TYPE,
        )


def require_multipart(request: web.Request) -> str:
    """The full Content-Type (with its boundary), or 400 when it is not multipart/form-data."""
    if request.content_type.lower() != MULTIPART:
        sent = request.content_type or "no Content-Type"
        raise ApiError(
            400, ErrorType.INVALID_REQUEST,
            f"{request.path} takes a multipart/form-data body, not {sent}.",
            code=ErrorCode.UNSUPPORTED_CONTENT_TYPE,
        )
    return request.headers.get("Content-Type", MULTIPART)
