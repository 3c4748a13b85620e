"""edge.errors: the gRPC status to HTTP table and the OpenAI envelope."""

from __future__ import annotations

import grpc
import orjson
import pytest

from edge.domain import CompletionFailure
from edge.errors import ApiError, UpstreamError, from_failure, from_status, from_upstream


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
        (grpc.StatusCode.FAILED_PRECONDITION, 400, "invalid_request_error"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "conflict_error"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
        (grpc.StatusCode.CANCELLED, 499, "server_error"),
        (grpc.StatusCode.UNAVAILABLE, 503, "server_error"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout_error"),
        (grpc.StatusCode.INTERNAL, 500, "server_error"),
        (grpc.StatusCode.UNKNOWN, 500, "server_error"),
        (grpc.StatusCode.DATA_LOSS, 500, "server_error"),
        (grpc.StatusCode.UNIMPLEMENTED, 500, "server_error"),
    ],
)
def test_status_table(code: grpc.StatusCode, status: int, kind: str) -> None:
    error = from_status(code, "secret detail at 10.1.2.3")
    assert (error.status, error.type) == (status, kind)
    if status >= 499:
        assert "10.1.2.3" not in error.message
    else:
        assert error.message == "secret detail at 10.1.2.3"


def test_not_found_is_404_only_for_the_clients_own_object() -> None:
    assert from_status(grpc.StatusCode.NOT_FOUND, "no price row").status == 500
    own = from_status(grpc.StatusCode.NOT_FOUND, "no such model", client_object=True)
    assert (own.status, own.type, own.message) == (404, "not_found_error", "no such model")


def test_from_upstream_logs_the_detail_but_never_returns_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = from_upstream(UpstreamError("billing", grpc.StatusCode.UNAVAILABLE, "pg at 10.9.9.9"))
    assert error.status == 503 and "10.9.9.9" not in error.message
    assert "10.9.9.9" in caplog.text and "billing" in caplog.text


def test_envelope_shape_and_response() -> None:
    error = ApiError(429, "rate_limit_error", "slow down", code="rate_limit_exceeded",
                     headers={"retry-after": "2"})
    assert orjson.loads(error.body()) == {"error": {
        "message": "slow down", "type": "rate_limit_error", "param": None,
        "code": "rate_limit_exceeded",
    }}
    response = error.to_response()
    assert response.status == 429
    assert response.content_type == "application/json"
    assert response.headers["retry-after"] == "2"


def test_router_failure_keeps_its_fields_and_bounds_the_status() -> None:
    failure = CompletionFailure(400, "invalid_request_error", "context_length_exceeded",
                                "too long", "messages")
    error = from_failure(failure)
    assert (error.status, error.type, error.code, error.param) == (
        400, "invalid_request_error", "context_length_exceeded", "messages")
    assert from_failure(CompletionFailure(0, "", None, "odd", None)).status == 502
    assert from_failure(CompletionFailure(0, "", None, "odd", None)).type == "server_error"
