"""Middlewares: request id, error envelope and metrics (outer); authentication (inner).

`stamp_processing_time` is the `on_response_prepare` hook adding `openai-processing-ms`.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from edge.errors import ApiError, internal_error
from edge.keys import (
    AUTHENTICATOR,
    PRINCIPAL,
    REQUEST_ID,
    SETTINGS,
    SHOWN_REQUEST_ID,
    STARTED_AT,
)
from edge.metrics import LATENCY, REQUESTS
from edge.openai.errors import ErrorType
from services.common.context import (
    REQUEST_ID_HEADER,
    new_request_id,
    reset_request_id,
    set_request_id,
)

logger = logging.getLogger(__name__)

MAX_REQUEST_ID_LENGTH = 128
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._:\-]")
_CLIENT_CLOSED = "499"
PROCESSING_MS_HEADER = "openai-processing-ms"


def request_ids_from(header: str | None) -> tuple[str, str]:
    """The request's internal id and the id its response shows.

    A client's id (unsafe characters dropped) is shown back as it is, but it cannot be
    the internal id: holds and leases are keyed by that, and a client may send the same
    id twice. The internal id is then the client's id plus a random suffix, so logs can
    still be searched by the client's id.
    """
    if header:
        cleaned = _UNSAFE_ID_CHARS.sub("", header)[:MAX_REQUEST_ID_LENGTH]
        if cleaned:
            return f"{cleaned}.{secrets.token_hex(6)}", cleaned
    request_id = new_request_id()
    return request_id, request_id


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set the request id everywhere, turn every error into the envelope, count it."""
    request_id, shown_id = request_ids_from(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID] = request_id
    request[SHOWN_REQUEST_ID] = shown_id
    token = set_request_id(request_id)
    started = request[STARTED_AT] = time.perf_counter()
    status = _CLIENT_CLOSED
    try:
        response = await _answer(request, handler)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = shown_id
        status = str(response.status)
        return response
    finally:
        route = _route_label(request)
        REQUESTS.labels(route, status).inc()
        LATENCY.labels(route).observe(time.perf_counter() - started)
        reset_request_id(token)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.to_response()
    except web.HTTPException as exc:
        return http_error(request, exc).to_response()
    except Exception:  # the one catch-all: logged with its traceback, answered generically
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return internal_error().to_response()


def http_error(request: web.Request, exc: web.HTTPException) -> ApiError:
    """aiohttp's own 404/405/413/... as an OpenAI envelope."""
    path = request.path[:200]
    if exc.status >= 500:
        return internal_error()
    if exc.status == 404:
        message = f"Invalid URL ({request.method} {path})"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allow = ", ".join(sorted(exc.allowed_methods))
        return ApiError(405, ErrorType.INVALID_REQUEST,
                        f"Method {request.method} is not allowed for {path}.",
                        headers={"Allow": allow})
    elif exc.status == 413:
        limit = request.app[SETTINGS].max_body_bytes
        message = f"The request body is too large (the limit is {limit} bytes)."
    else:
        message = exc.reason
    return ApiError(exc.status, ErrorType.INVALID_REQUEST, message)


async def stamp_processing_time(request: web.Request, response: web.StreamResponse) -> None:
    """Add `openai-processing-ms` to a `/v1/*` response (a stream: time to its headers)."""
    started = request.get(STARTED_AT)
    if started is not None and request.path.startswith("/v1/"):
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        response.headers[PROCESSING_MS_HEADER] = str(elapsed_ms)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Put the caller's principal on every `/v1/` request (401/503 otherwise)."""
    if request.path.startswith("/v1/") and request.match_info.http_exception is None:
        authenticator = request.app[AUTHENTICATOR]
        request[PRINCIPAL] = await authenticator.authenticate(
            request.headers.get("Authorization"), request[REQUEST_ID]
        )
    return await handler(request)
