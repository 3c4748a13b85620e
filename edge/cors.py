"""CORS for browser clients of `/v1/*`, installed only when `EDGE_CORS_ORIGINS` is set.

`preflight_middleware` sits between the request context and authentication, so it
answers preflights without a key (browsers send none with them); `add_cors_headers`
marks every actual `/v1/*` response, errors and streams included, for an allowed
Origin. A disallowed Origin gets no CORS headers at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from edge.errors import ApiError
from edge.openai.errors import ErrorCode, ErrorType
from services.common.context import REQUEST_ID_HEADER

ANY_ORIGIN = "*"
MAX_AGE_S = 600
ALLOW_METHODS = "GET, POST, OPTIONS"
# Used when a preflight does not list its headers; otherwise the list is echoed, which
# covers the `x-stainless-*` headers the official JS SDK sends.
ALLOW_HEADERS = (
    f"authorization, content-type, {REQUEST_ID_HEADER}, idempotency-key, "
    "openai-organization, openai-project"
)
EXPOSE_HEADERS = ", ".join((
    REQUEST_ID_HEADER, "openai-processing-ms", "retry-after", "x-apirelay-cost-usd",
    *(f"x-ratelimit-{what}-{kind}"
      for what in ("limit", "remaining", "reset") for kind in ("requests", "tokens")),
))
_API_PREFIX = "/v1/"

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Which browser origins may call the API."""

    origins: frozenset[str]
    any_origin: bool

    @classmethod
    def of(cls, origins: Iterable[str]) -> CorsPolicy:
        """The policy for configured origins; `*` allows every origin."""
        allowed = frozenset(origins)
        return cls(allowed - {ANY_ORIGIN}, ANY_ORIGIN in allowed)

    def allow_origin(self, origin: str) -> str | None:
        """The `access-control-allow-origin` value for `origin`, or None if refused."""
        if self.any_origin:
            return ANY_ORIGIN
        return origin if origin in self.origins else None


def cors_headers_hook(policy: CorsPolicy) -> ResponseHook:
    """An `on_response_prepare` callback applying `add_cors_headers` with `policy`."""

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        add_cors_headers(policy, request, response)

    return add_headers


def preflight_middleware(policy: CorsPolicy) -> Middleware:
    """A middleware answering `OPTIONS /v1/*` preflights without a key: 204, or 403."""

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        if (
            request.method != "OPTIONS"
            or "Access-Control-Request-Method" not in headers
            or "Origin" not in headers
            or not request.path.startswith(_API_PREFIX)
        ):
            return await handler(request)
        if policy.allow_origin(headers["Origin"]) is None:
            raise ApiError(
                403, ErrorType.PERMISSION,
                f"The origin {headers['Origin'][:200]!r} is not allowed to call this API.",
                code=ErrorCode.ORIGIN_NOT_ALLOWED,
            )
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers":
                headers.get("Access-Control-Request-Headers") or ALLOW_HEADERS,
            "Access-Control-Max-Age": str(MAX_AGE_S),
        })

    return preflight


def add_cors_headers(
    policy: CorsPolicy, request: web.Request, response: web.StreamResponse
) -> None:
    """Allow an allowed Origin to read this `/v1/*` response and its useful headers."""
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith(_API_PREFIX):
        return
    allowed = policy.allow_origin(origin)
    if allowed is None:
        return
    response.headers["Access-Control-Allow-Origin"] = allowed
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if allowed != ANY_ORIGIN:
        response.headers.add("Vary", "Origin")
