"""What the router answers: results, stream ends, routes and errors, as dataclasses.

Final errors when every attempt failed: all rate limited -> 429 `upstream_rate_limited`;
all timed out (or no time left) -> 504 `upstream_timeout`; otherwise 502
`upstream_error`. A non-retryable upstream refusal is the client's error as the
upstream worded it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from services.router.errors import ProviderError
from services.router.providers.base import Usage

NO_USAGE = Usage(0, 0)
MODEL_NOT_FOUND = "model_not_found"


class UsageSource(enum.Enum):
    """Where a usage came from."""

    UPSTREAM = "upstream"
    ESTIMATED = "estimated"


@dataclass(frozen=True, slots=True)
class CompletionError:
    """An error for the client, in OpenAI terms."""

    http_status: int
    type: str
    code: str
    message: str
    param: str = ""


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """How a request was served: last channel tried, model sent, attempts made."""

    channel: str = ""
    upstream_model: str = ""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """The outcome of a non-streaming chat completion."""

    body: bytes
    usage: Usage
    usage_source: UsageSource
    finish_reason: str
    route: RouteInfo
    error: CompletionError | None = None


@dataclass(frozen=True, slots=True)
class RelayResult:
    """The outcome of a non-streaming relayed request."""

    body: bytes
    content_type: str
    usage: Usage
    usage_source: UsageSource
    route: RouteInfo
    error: CompletionError | None = None


@dataclass(frozen=True, slots=True)
class StreamHead:
    """Goes before a relayed stream's first piece: the answer's content type."""

    content_type: str


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """The end of a stream: usage, finish reason, route, the error if any.

    `tail` holds the pieces that go out with the end, in the stream's last item: the
    usage-bearing chunk or event, held back so the edge can complete it (`usage.cost`).
    """

    usage: Usage
    usage_source: UsageSource
    finish_reason: str
    route: RouteInfo
    error: CompletionError | None = None
    tail: tuple[bytes, ...] = ()


MIDSTREAM_ERROR = CompletionError(
    502, "server_error", "upstream_error", "The upstream provider failed during the stream."
)


def source_of(reported: bool) -> UsageSource:
    """UPSTREAM when the upstream reported the usage, else ESTIMATED."""
    return UsageSource.UPSTREAM if reported else UsageSource.ESTIMATED


def final_error(failures: Sequence[ProviderError]) -> CompletionError:
    """The client's error once no attempt is left."""
    if failures and not failures[-1].retryable:
        last = failures[-1]
        return CompletionError(last.status, last.error_type, last.code, last.message, last.param)
    kinds = {f.kind for f in failures}
    if kinds == {"rate_limited"}:
        return CompletionError(429, "rate_limit_error", "upstream_rate_limited",
                               "The upstream provider is rate limited; retry later.")
    if kinds <= {"timeout"}:
        return CompletionError(504, "timeout_error", "upstream_timeout",
                               "The upstream provider did not answer in time.")
    return CompletionError(502, "server_error", "upstream_error",
                           "The upstream provider failed; retry later.")


def model_not_found(model: str) -> CompletionError:
    """The error for a model no enabled channel serves."""
    return CompletionError(404, "invalid_request_error", MODEL_NOT_FOUND,
                           f"The model {model!r} does not exist or is not served.", "model")
