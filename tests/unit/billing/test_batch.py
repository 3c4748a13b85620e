"""Batch calls: per-item statuses from the ERRORS table, a dead store fails the whole call."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from apirelay.billing.v1 import billing_pb2
from services.billing.core import Ledger
from services.billing.domain import NewHold, PlaceOutcome
from services.billing.errors import HoldNotFound, StoreUnavailable
from services.billing.pricing import PriceBook
from services.billing.service import ERRORS, BillingServicer
from services.common.batch import ItemError, item_error, process_items
from services.common.gateway_config import parse_gateway_config
from tests.unit.billing.fake_store import FakeBillingStore

NOW = datetime(2025, 1, 2, tzinfo=UTC)
PRICES = PriceBook.from_config(
    parse_gateway_config({"models": [{"id": "m", "price": {"prompt": 1, "completion": 1}}]})
)


def test_a_mapped_error_keeps_its_code_and_message() -> None:
    assert item_error(HoldNotFound("r1"), ERRORS) == ItemError(
        grpc.StatusCode.NOT_FOUND.value[0], "no hold for request 'r1'"
    )


def test_an_unknown_error_is_internal_and_its_text_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.common.batch"):
        error = item_error(KeyError("secret-detail"), ERRORS)
    assert error == ItemError(grpc.StatusCode.INTERNAL.value[0], "internal error")
    (record,) = caplog.records
    assert record.exc_info is not None and "secret-detail" in str(record.exc_info[1])


async def test_items_go_on_after_a_failure_but_a_fatal_error_ends_the_batch() -> None:
    async def handle(item: int) -> int:
        if item == 2:
            raise HoldNotFound("r2")
        if item == 9:
            raise StoreUnavailable("down")
        return item * 10

    results = await process_items([1, 2, 3], handle, ERRORS, (StoreUnavailable,))
    not_found = ItemError(grpc.StatusCode.NOT_FOUND.value[0], "no hold for request 'r2'")
    assert results == [10, not_found, 30]
    with pytest.raises(StoreUnavailable):
        await process_items([1, 9, 3], handle, ERRORS, (StoreUnavailable,))


class DyingStore(FakeBillingStore):
    """A fake store whose database goes away after `alive` holds."""

    alive: int = 1

    async def place_hold(self, hold: NewHold) -> PlaceOutcome:
        if len(self.holds) >= self.alive:
            raise StoreUnavailable("the billing database is unavailable")
        return await super().place_hold(hold)


async def test_an_unavailable_store_fails_the_whole_reserve_batch() -> None:
    # The admin and usage sides are not reached by ReserveCredits.
    unused: Any = None
    servicer = BillingServicer(Ledger(DyingStore(), PRICES, lambda: NOW), unused, unused)
    # Zero tokens cost nothing, so the first hold is placed and the second finds no database.
    items = [
        billing_pb2.ReserveCreditRequest(request_id=f"r{i}", account_id="a", model="m")
        for i in range(3)
    ]
    context: Any = None
    with pytest.raises(StoreUnavailable):
        await servicer.ReserveCredits(
            billing_pb2.ReserveCreditsRequest(reservations=items), context
        )
