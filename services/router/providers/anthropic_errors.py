"""Anthropic error answers (HTTP statuses and in-stream `error` events) as ProviderErrors.

Anthropic's body is `{"type": "error", "error": {"type": ..., "message": ...}}`. What
the client did wrong (400 invalid_request_error, 413 request_too_large) is refused as
the client's error, with Anthropic's message and every secret cut out. What is wrong
with our side of the channel (401 authentication_error: the upstream key is bad; 402
billing_error; 403 permission_error; 404 not_found_error: the channel's model id does
not exist there) or with Anthropic (500 api_error, 529 overloaded_error) is retryable
on another channel, with a generic message. 429 rate_limit_error and 504 timeout_error
are the router's rate-limited and timed-out kinds; a 429 carries how long the key must
cool down: `retry-after`, else the reset time (RFC 3339) of the exhausted
`anthropic-ratelimit-*-reset` limits (those whose `-remaining` is 0; all of them when
none says so).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.providers.base import field_of, loads_or_none, rejected_message
from services.router.providers.http import cooldown_s as http_cooldown_s

OVERLOADED_STATUS = 529
# The limits Anthropic reports as `anthropic-ratelimit-<limit>-{remaining,reset}`.
RATE_LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")
# Anthropic error types and the HTTP status each one comes with.
STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": OVERLOADED_STATUS,
}
# The client's own mistakes: the OpenAI code each one is refused with.
_REJECTED_CODES = {400: "", 413: "request_too_large"}
_GENERIC = {
    401: "the upstream refused the channel's credentials",
    402: "the upstream account of the channel cannot pay",
    403: "the upstream refused the channel's permissions",
    404: "the upstream does not know the channel's model",
    OVERLOADED_STATUS: "the upstream is overloaded",
}


def error_for_status(status: int, body: bytes, redact: tuple[str, ...] = (),
                     headers: Mapping[str, str] | None = None) -> ProviderError:
    """The ProviderError of an Anthropic error answer with HTTP status `status` (a 429's
    cooldown read from `headers`)."""
    error = field_of(loads_or_none(body), "error")
    result = _error(status, field_of(error, "message"), redact)
    if result.kind == "rate_limited" and headers is not None:
        result.retry_after_s = cooldown_s(headers, time.time())
    return result


def cooldown_s(headers: Mapping[str, str], now: float) -> float | None:
    """How long Anthropic's 429 headers ask to wait (`now`: epoch seconds); None if unsaid."""
    if (seconds := http_cooldown_s(headers, now)) is not None:
        return seconds
    resets: list[float] = []
    exhausted: list[float] = []
    for limit in RATE_LIMITS:
        at = _epoch(headers.get(f"anthropic-ratelimit-{limit}-reset", ""))
        if at is None:
            continue
        resets.append(at)
        if headers.get(f"anthropic-ratelimit-{limit}-remaining", "").strip() == "0":
            exhausted.append(at)
    chosen = exhausted or resets
    return max(max(chosen) - now, 0.0) if chosen else None


def _epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.strip()).timestamp() if text.strip() else None
    except ValueError:
        return None


def error_for_event(payload: bytes, redact: tuple[str, ...] = ()) -> ProviderError:
    """The ProviderError of an in-stream `error` event (its status read from its type)."""
    error = field_of(loads_or_none(payload), "error")
    kind = field_of(error, "type")
    status = STATUS_OF_TYPE.get(kind, 500) if isinstance(kind, str) else 500
    return _error(status, field_of(error, "message"), redact)


def _error(status: int, message: object, redact: tuple[str, ...]) -> ProviderError:
    if status == 429:
        return UpstreamRateLimited(status, "the upstream is rate limited")
    if status in (408, 504):
        return UpstreamTimeout(status, "the upstream timed out")
    if status in _REJECTED_CODES:
        return UpstreamRejected(status, rejected_message(message, redact),
                                error_type="invalid_request_error",
                                code=_REJECTED_CODES[status])
    generic = _GENERIC.get(status, f"the upstream failed with status {status}")
    return UpstreamUnavailable(status, generic)
