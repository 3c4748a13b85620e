"""The durable settlement spool: settle and release calls billing could not take yet.

When billing is unreachable at the end of a request, its settle (or release) call is
written here and applied later by the drain loop (edge.spool_drain). An entry holds the
call's proto request as bytes, so the spool's format is the billing contract itself.
Entries are never removed on read: `ack` removes them only after billing confirmed
them (at-least-once delivery; settle and release are idempotent by request id, so each
is applied exactly once). An entry billing refuses for good goes to the dead letters.

Backends: SQLite in `$APIRELAY_HOME` (edge.spool_sqlite, one edge process) or a Redis
stream shared by edge replicas (edge.spool_redis), chosen by edge.app.open_spool.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from apirelay.billing.v1 import billing_pb2


class CallKind(enum.Enum):
    """Which billing call an entry is."""

    SETTLE = "settle"
    RELEASE = "release"
    # An entry whose kind this version does not know (corruption, or a newer edge's
    # entry): it goes to the dead letters instead of blocking the drain.
    UNREADABLE = "unreadable"

    @classmethod
    def parse(cls, text: str) -> CallKind:
        """The kind named `text`, UNREADABLE when there is none."""
        try:
            return cls(text)
        except ValueError:
            return cls.UNREADABLE


@dataclass(frozen=True, slots=True)
class SpooledCall:
    """One settle or release call: the serialized SettleCreditRequest / ReleaseCreditRequest."""

    kind: CallKind
    request_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """A call read from the spool, with the backend's id for ack or dead-lettering."""

    entry_id: str
    call: SpooledCall


class Spool(Protocol):
    """A durable queue of billing calls (ack after commit, never a destructive read)."""

    async def put(self, call: SpooledCall) -> None:
        """Store `call` durably (returns once it is on disk / in Redis)."""

    async def take(self, limit: int) -> list[SpoolEntry]:
        """Up to `limit` entries to apply, oldest first; they stay until acked."""

    async def ack(self, entries: Sequence[SpoolEntry]) -> None:
        """Remove entries billing has confirmed."""

    async def dead_letter(self, entry: SpoolEntry, reason: str) -> None:
        """Move an entry billing refused for good out of the queue, keeping it."""

    async def bury(self, call: SpooledCall, reason: str) -> None:
        """Keep a call billing refused for good that was never queued."""

    async def depth(self) -> int:
        """Entries waiting to be applied."""

    async def close(self) -> None:
        """Release the backend's resources."""


class Holds(Protocol):
    """What settlement needs of BillingService (edge.clients.BillingClient)."""

    async def settle(self, request: billing_pb2.SettleCreditRequest) -> int:
        """Charge one hold (batched with concurrent calls); the nano-USD charged."""

    async def settle_many(
        self, requests: Sequence[billing_pb2.SettleCreditRequest]
    ) -> list[int | Exception]:
        """Charge many holds in one call; one outcome per request, in order."""

    async def release(self, request: billing_pb2.ReleaseCreditRequest) -> bool:
        """Drop one hold without charging."""


def encode_settle(request: billing_pb2.SettleCreditRequest) -> SpooledCall:
    """A settle call as a spool entry."""
    return SpooledCall(CallKind.SETTLE, request.request_id, request.SerializeToString())


def encode_release(request: billing_pb2.ReleaseCreditRequest) -> SpooledCall:
    """A release call as a spool entry."""
    return SpooledCall(CallKind.RELEASE, request.request_id, request.SerializeToString())
