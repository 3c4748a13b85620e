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

A ProviderError's message is always safe to show a client: it never holds upstream keys,
base URLs or raw upstream bodies, except the OpenAI error message of an UpstreamRejected.
"""

from __future__ import annotations


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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param


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
