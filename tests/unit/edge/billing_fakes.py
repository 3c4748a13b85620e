"""Fake billing and limiter for the settlement tests (what the Settler and Outbox call)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from apirelay.billing.v1 import billing_pb2
from edge.errors import UpstreamError
from edge.settlement import Settler
from edge.spool_drain import Outbox
from edge.spool_sqlite import SqliteSpool


class FakeBilling:
    """Billing that fails the next calls with `failures`, then records what it is sent."""

    def __init__(self, failures: list[grpc.StatusCode] | None = None) -> None:
        self.failures = list(failures or [])
        self.settles: list[billing_pb2.SettleCreditRequest] = []
        self.releases: list[billing_pb2.ReleaseCreditRequest] = []
        self.attempts = 0

    def _fail(self) -> None:
        self.attempts += 1
        if self.failures:
            raise UpstreamError("billing", self.failures.pop(0), "down")

    async def settle(self, request: billing_pb2.SettleCreditRequest) -> int:
        self._fail()
        self.settles.append(request)
        return 1

    async def settle_many(
        self, requests: Sequence[billing_pb2.SettleCreditRequest]
    ) -> list[int | Exception]:
        self._fail()
        self.settles.extend(requests)
        return [1] * len(requests)

    async def release(self, request: billing_pb2.ReleaseCreditRequest) -> bool:
        self._fail()
        self.releases.append(request)
        return True


class FakeLeases:
    def __init__(self) -> None:
        self.releases: list[tuple[str, str, str, int]] = []

    async def release(self, request_id: str, lease_id: str, subject: str, actual: int) -> bool:
        self.releases.append((request_id, lease_id, subject, actual))
        return True


def settler_for(billing: FakeBilling, leases: FakeLeases, **options: Any) -> Settler:
    """A Settler whose outbox spools in memory (its drain loop is not started)."""
    return Settler(billing, leases, Outbox(SqliteSpool(":memory:"), billing), **options)
