"""Domain exceptions of the rate-limit service.

RateLimitError
 +-- InvalidArgument     the request is malformed (INVALID_ARGUMENT)
 +-- StoreUnavailable    the shared store cannot be reached (UNAVAILABLE)

Being over a limit is not an error: it is the decision in the response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


class RateLimitError(Exception):
    """Base of the rate-limit service's exceptions."""


class InvalidArgument(RateLimitError):
    """A request field is missing or out of range."""


class StoreUnavailable(RateLimitError):
    """The limiter store (Redis) did not answer."""


def attempt(call: Callable[[T], U], item: T) -> U | InvalidArgument:
    """`call(item)`, or the InvalidArgument it raised (a batch item's own error)."""
    try:
        return call(item)
    except InvalidArgument as exc:
        return exc
