"""The closed sets of OpenAI error `type` and `code` strings the edge itself produces."""

from __future__ import annotations

import enum


class ErrorType(enum.StrEnum):
    """The `error.type` of an OpenAI error envelope."""

    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    NOT_FOUND = "not_found_error"
    CONFLICT = "conflict_error"
    RATE_LIMIT = "rate_limit_error"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    SERVER = "server_error"
    TIMEOUT = "timeout_error"


class ErrorCode(enum.StrEnum):
    """The `error.code` values the edge sets."""

    INVALID_API_KEY = "invalid_api_key"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    MODEL_NOT_PRICED = "model_not_priced"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    INVALID_JSON = "invalid_json"
    UNSUPPORTED_ENDPOINT = "unsupported_endpoint"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_CACHE_HEADER = "invalid_cache_header"
    REQUEST_TOO_LARGE = "request_too_large"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
