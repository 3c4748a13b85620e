"""The request id of the work in progress, carried in a contextvar."""

from __future__ import annotations

import contextvars
import secrets

REQUEST_ID_HEADER = "x-request-id"

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def get_request_id() -> str:
    """The current request id, or "-" outside a request."""
    return _request_id.get()


def set_request_id(request_id: str) -> contextvars.Token[str]:
    """Make `request_id` current; returns the token to reset it."""
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str]) -> None:
    """Restore the request id that was current before `set_request_id`."""
    _request_id.reset(token)


def new_request_id() -> str:
    """A fresh request id ("req_" + 24 hex characters)."""
    return "req_" + secrets.token_hex(12)
