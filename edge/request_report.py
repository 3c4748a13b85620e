"""How a request ran, as the usage log records it (sent with its settle or release)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RequestStatus(enum.Enum):
    """How a request ended."""

    OK = "ok"
    ERROR = "error"
    CLIENT_CLOSED = "client_closed"
    UPSTREAM_CUT = "upstream_cut"  # a stream ended by an in-band error after its first byte


@dataclass(frozen=True, slots=True)
class RequestReport:
    """The facts of one request for the usage log."""

    status: RequestStatus
    error_code: str  # the OpenAI error code (else type) the client got; "" when none
    stream: bool
    latency_ms: int  # from arrival to the end
    first_token_ms: int  # from arrival to the first content byte sent; 0 when none
