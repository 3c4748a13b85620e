"""The router's exceptions.

    RouterError
    ├── InvalidRequest             the request envelope or body is malformed (INVALID_ARGUMENT)
    │   ├── InvalidChatRequest         ... of a chat completion
    │   └── InvalidRelayRequest        ... of a relayed endpoint (Relay, StreamRelay)
    ├── ChannelConfigError         a channel cannot be built at startup (unknown type, no URL)
    └── ProviderError              one upstream attempt failed; core turns it into response data
        ├── UpstreamUnavailable    retryable: connect error, 5xx, 401/403, bad upstream answer
        │   ├── UpstreamRateLimited    retryable: the upstream answered 429
        │   └── UpstreamTimeout        retryable: no answer within the timeout
        └── UpstreamRejected       not retryable: the upstream refused the request itself
                                   (400, 404, 413, 422); its OpenAI error is passed through

A ProviderError also says what it means for the upstream key that was used: `key_fault`
("auth" for 401/403 and keys the upstream calls invalid, "quota" for 402 and OpenAI's
`insufficient_quota`) disables the key; `retry_after_s` (from a 429's `retry-after` /
`x-ratelimit-reset-*` headers) is how long the key cools down.

A ProviderError's message is always safe to show a client: it never holds upstream keys,
base URLs or raw upstream bodies, except the OpenAI error message of an UpstreamRejected.
"""

from __future__ import annotations

# Statuses and codes with which an upstream blames the key rather than the request.
KEY_AUTH_STATUSES = frozenset({401, 403})
PAYMENT_REQUIRED = 402
INVALID_KEY_CODE = "invalid_api_key"
INSUFFICIENT_QUOTA_CODE = "insufficient_quota"


class RouterError(Exception):
    """Base of every router exception."""


class InvalidRequest(RouterError):
    """The request envelope or its body is malformed."""


class InvalidChatRequest(InvalidRequest):
    """The chat request envelope or its JSON body is malformed."""


class InvalidRelayRequest(InvalidRequest):
    """The relayed request's envelope or body is malformed."""


class ChannelConfigError(RouterError):
    """A channel of the configuration cannot be built."""


class ProviderError(RouterError):
    """One upstream attempt failed; `status` is the upstream HTTP status (0 if none)."""

    retryable = True
    kind = "unavailable"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "server_error",
        code: str = "",
        param: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    @property
    def key_fault(self) -> str:
        """Whether the upstream blames the key used: "auth", "quota", or "" (it does not)."""
        if self.status in KEY_AUTH_STATUSES or self.code == INVALID_KEY_CODE:
            return "auth"
        if self.status == PAYMENT_REQUIRED or self.code == INSUFFICIENT_QUOTA_CODE:
            return "quota"
        return ""


class UpstreamUnavailable(ProviderError):
    """The upstream could not serve the request; another channel may."""


class UpstreamRateLimited(UpstreamUnavailable):
    """The upstream answered 429."""

    kind = "rate_limited"


class UpstreamTimeout(UpstreamUnavailable):
    """The upstream did not answer in time."""

    kind = "timeout"


class UpstreamRejected(ProviderError):
    """The upstream refused the request itself; no other channel would accept it."""

    retryable = False
    kind = "rejected"
