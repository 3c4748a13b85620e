"""Gemini's errors as the router's ProviderErrors.

Google answers `{"error": {"code", "message", "status", "details"}}`. The request's own
mistakes (400 INVALID_ARGUMENT / FAILED_PRECONDITION, 404 NOT_FOUND) pass through with
their message, keys and addresses cut out; everything that is about our key (401, 403
PERMISSION_DENIED, and the 400 Google sends for an invalid key), quota (429
RESOURCE_EXHAUSTED) or Google itself (5xx) is retryable on another channel, with a
generic message. A prompt Gemini refuses to answer (`promptFeedback.blockReason`) is
the client's mistake: 400 with code `content_filter`. A 429 carries how long the key must
cool down: the `retryDelay` of the `google.rpc.RetryInfo` in `error.details` ("13s"),
else a `retry-after` header.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.providers.base import field_of, loads_or_none, rejected_message
from services.router.providers.http import cooldown_s

# Reasons in `error.details[].reason` that blame our key, not the request.
KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
_REJECTED = {400: "invalid_request_error", 404: "invalid_request_error",
             413: "invalid_request_error"}
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
# A protobuf Duration in JSON: seconds with up to nine decimals and an "s".
_DURATION = re.compile(r"^(\d+(?:\.\d{1,9})?)s$")
_CODES = {"INVALID_ARGUMENT": "invalid_argument", "FAILED_PRECONDITION": "failed_precondition",
          "NOT_FOUND": "model_not_found"}


def gemini_error(status: int, body: bytes, redact: tuple[str, ...] = (),
                 headers: Mapping[str, str] | None = None) -> ProviderError:
    """The ProviderError for a Gemini HTTP error status, its body and its headers."""
    error = field_of(loads_or_none(body), "error")
    if status == 429:
        delay = retry_delay_s(error)
        if delay is None and headers is not None:
            delay = cooldown_s(headers, time.time())
        return UpstreamRateLimited(status, "the upstream is rate limited", retry_after_s=delay)
    if status in (408, 504):
        return UpstreamTimeout(status, "the upstream timed out")
    if status in (401, 403) or _blames_key(error):
        return UpstreamUnavailable(status, "the upstream refused the channel's credentials",
                                   code="invalid_api_key")
    if status not in _REJECTED:
        return UpstreamUnavailable(status, f"the upstream failed with status {status}")
    message = rejected_message(field_of(error, "message"), redact)
    google_status = field_of(error, "status")
    code = _CODES.get(google_status, "") if isinstance(google_status, str) else ""
    return UpstreamRejected(status, message, error_type=_REJECTED[status], code=code)


def blocked_prompt(answer: Any) -> UpstreamRejected | None:
    """The error for an answer whose prompt Gemini blocked (no candidates), else None."""
    reason = field_of(field_of(answer, "promptFeedback"), "blockReason")
    candidates = field_of(answer, "candidates")
    if not isinstance(reason, str) or not reason or (isinstance(candidates, list) and candidates):
        return None
    return UpstreamRejected(
        400, f"the prompt was blocked by the upstream's content filter ({reason})",
        error_type="invalid_request_error", code="content_filter", param="messages")


def stream_error(chunk: Any) -> ProviderError | None:
    """The error of an in-band `{"error": ...}` stream event, else None."""
    error = field_of(chunk, "error")
    if error is None:
        return None
    code = field_of(error, "code")
    if code == 429 or field_of(error, "status") == "RESOURCE_EXHAUSTED":
        return UpstreamRateLimited(200, "the upstream is rate limited",
                                   retry_after_s=retry_delay_s(error))
    return UpstreamUnavailable(200, "the upstream failed during the stream")


def retry_delay_s(error: Any) -> float | None:
    """The `retryDelay` of a Google error's RetryInfo detail in seconds, else None."""
    details = field_of(error, "details")
    for detail in details if isinstance(details, list) else ():
        delay = field_of(detail, "retryDelay")
        if field_of(detail, "@type") == RETRY_INFO_TYPE and isinstance(delay, str):
            match = _DURATION.match(delay.strip())
            if match:
                return float(match.group(1))
    return None


def _blames_key(error: Any) -> bool:
    details = field_of(error, "details")
    return any(field_of(d, "reason") in KEY_REASONS
               for d in (details if isinstance(details, list) else ()))
