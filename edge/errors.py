"""Errors the edge answers with, and the one table from gRPC status to HTTP.

    Exception
    ├── ApiError        an error to send to the client in the OpenAI envelope
    └── UpstreamError   a call to one of our services failed (converted from AioRpcError)

`from_upstream` turns an UpstreamError into an ApiError: the status table below, a
generic message for 5xx (the detail goes to the log with the request id), and a
downstream NOT_FOUND becomes 500 unless it is about the client's own object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
import orjson
from aiohttp import web

from edge.domain import CompletionFailure
from edge.openai.errors import ErrorType

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499
# A 429 without a known wait (an upstream's, an empty wallet) still says when to retry.
DEFAULT_RETRY_AFTER = "1"

_GENERIC = {
    500: "The server had an error while processing your request.",
    503: "The service is temporarily unavailable. Please retry shortly.",
    504: "The request timed out.",
    CLIENT_CLOSED_REQUEST: "The client closed the request.",
}

# gRPC status -> (HTTP status, OpenAI error type); anything absent is 500 server_error.
STATUS_TABLE: Mapping[grpc.StatusCode, tuple[int, ErrorType]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, ErrorType.INVALID_REQUEST),
    grpc.StatusCode.FAILED_PRECONDITION: (400, ErrorType.INVALID_REQUEST),
    grpc.StatusCode.OUT_OF_RANGE: (400, ErrorType.INVALID_REQUEST),
    grpc.StatusCode.UNAUTHENTICATED: (401, ErrorType.AUTHENTICATION),
    grpc.StatusCode.PERMISSION_DENIED: (403, ErrorType.PERMISSION),
    grpc.StatusCode.NOT_FOUND: (404, ErrorType.NOT_FOUND),
    grpc.StatusCode.ALREADY_EXISTS: (409, ErrorType.CONFLICT),
    grpc.StatusCode.ABORTED: (409, ErrorType.CONFLICT),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, ErrorType.RATE_LIMIT),
    grpc.StatusCode.CANCELLED: (CLIENT_CLOSED_REQUEST, ErrorType.SERVER),
    grpc.StatusCode.UNAVAILABLE: (503, ErrorType.SERVER),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, ErrorType.TIMEOUT),
}
_INTERNAL = (500, ErrorType.SERVER)


class ApiError(Exception):
    """An error response in the OpenAI envelope, raised anywhere below a handler."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The JSON envelope `{"error": {"message", "type", "param", "code"}}`."""
        return orjson.dumps({"error": self.payload()})

    def payload(self) -> dict[str, str | None]:
        """The inner `error` object."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def to_response(self) -> web.Response:
        """An aiohttp response carrying this error."""
        reason = "Client Closed Request" if self.status == CLIENT_CLOSED_REQUEST else None
        response = web.Response(
            status=self.status,
            reason=reason,
            body=self.body(),
            content_type="application/json",
            headers=self.headers,
        )
        if self.status == 429 and "retry-after" not in response.headers:
            response.headers["retry-after"] = DEFAULT_RETRY_AFTER
        if self.headers.get("Connection", "").lower() == "close":
            response.force_close()
        return response


class UpstreamError(Exception):
    """A call to one of our gRPC services failed with `code`."""

    def __init__(self, service: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service}: {code.name}: {details}")
        self.service = service
        self.code = code
        self.details = details


def internal_error() -> ApiError:
    """The generic 500."""
    return ApiError(500, ErrorType.SERVER, _GENERIC[500])


def from_status(code: grpc.StatusCode, details: str, *, client_object: bool = False) -> ApiError:
    """The ApiError for a gRPC status; 5xx messages are generic, 4xx keep `details`."""
    if code is grpc.StatusCode.NOT_FOUND and not client_object:
        status, kind = _INTERNAL
    else:
        status, kind = STATUS_TABLE.get(code, _INTERNAL)
    message = _GENERIC.get(status, _GENERIC[500]) if status >= 499 else details
    return ApiError(status, kind, message)


def from_upstream(exc: UpstreamError, *, client_object: bool = False) -> ApiError:
    """Translate a failed service call, logging its detail (never shown for 5xx)."""
    error = from_status(exc.code, exc.details, client_object=client_object)
    if error.status >= 500:
        logger.warning("%s call failed: %s %s", exc.service, exc.code.name, exc.details)
    return error


def from_failure(failure: CompletionFailure) -> ApiError:
    """The router's CompletionError as the client sees it."""
    status = failure.http_status if 400 <= failure.http_status <= 599 else 502
    return ApiError(
        status, failure.type or ErrorType.SERVER, failure.message,
        code=failure.code, param=failure.param,
    )
