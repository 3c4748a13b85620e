"""Batch RPC plumbing for the clients: per-item outcomes and the tagged items.

A batch call answers one result per item, in order; `outcomes` turns each into the
converted response or the UpstreamError the single RPC would have raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypeVar

import grpc

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import batch_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2
from edge.errors import UpstreamError

T = TypeVar("T")
M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)

_CODES = MappingProxyType({code.value[0]: code for code in grpc.StatusCode})


@dataclass(frozen=True, slots=True)
class TaggedRelease:
    """A lease release with the request id it is sent for."""

    request_id: str
    message: ratelimit_pb2.ReleaseLeaseRequest


class ItemResult(Protocol[M_co]):
    """One item's answer in a batch reply: its status and, when OK, its response."""

    @property
    def status(self) -> batch_pb2.ItemStatus: ...
    @property
    def response(self) -> M_co: ...


def outcomes(
    service: str, results: Sequence[ItemResult[M]], count: int, convert: Callable[[M], T]
) -> list[T | Exception]:
    """One outcome per item of a batch call: the converted response or its UpstreamError."""
    if len(results) != count:
        raise UpstreamError(
            service, grpc.StatusCode.INTERNAL, f"{len(results)} result(s) for {count} item(s)"
        )
    return [
        convert(result.response) if result.status.code == 0
        else UpstreamError(
            service, _CODES.get(result.status.code, grpc.StatusCode.UNKNOWN),
            result.status.message,
        )
        for result in results
    ]


def released(response: ratelimit_pb2.ReleaseLeaseResponse) -> bool:
    """Whether a lease release freed a lease."""
    return bool(response.released)


def charged(response: billing_pb2.SettleCreditResponse) -> int:
    """The nano-USD a settle charged."""
    return int(response.charged_nanos)
