"""PriceBook: the price in effect at an instant, tariff resolution, and the wire forms."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from apirelay.billing.v1 import billing_pb2
from services.billing.price_wire import price_to_proto, tariff_to_proto
from services.billing.pricing import PriceBook
from services.common.charges import Tariff
from services.common.gateway_config import ModelPrice, parse_gateway_config

DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
JAN_1 = datetime(2027, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def book_of(*models: Mapping[str, object], groups: dict[str, int] | None = None) -> PriceBook:
    return PriceBook.from_config(
        parse_gateway_config({"models": list(models), "groups": groups or {}}))


HISTORY = {"id": "m", "prices": [
    {"prompt": 1, "completion": 10},
    {"prompt": 2, "completion": 20, "since": DEC_1},
    {"prompt": 3, "completion": 30, "since": JAN_1},
]}
FUTURE_ONLY = {"id": "new", "prices": [{"prompt": 5, "completion": 5, "since": DEC_1},
                                       {"prompt": 6, "completion": 6, "since": JAN_1}]}


@pytest.mark.parametrize(
    ("at", "prompt"),
    [
        (datetime(2020, 1, 1, tzinfo=UTC), 1),  # before every dated entry: the base
        (DEC_1 - SECOND, 1),
        (DEC_1, 2),  # an entry applies from its own instant on
        (DEC_1 + timedelta(days=3), 2),  # between two entries
        (JAN_1 - SECOND, 2),
        (JAN_1, 3),
        (datetime(2030, 1, 1, tzinfo=UTC), 3),  # after the last entry
    ],
)
def test_the_price_in_effect_is_the_newest_entry_not_after_the_instant(
    at: datetime, prompt: int
) -> None:
    price = book_of(HISTORY).price("m", at)
    assert price is not None and price.prompt == prompt


def test_a_model_whose_first_price_is_not_in_effect_yet_is_not_priced() -> None:
    book = book_of(FUTURE_ONLY)
    assert book.price("new", DEC_1 - SECOND) is None
    assert book.tariff("new", "default", DEC_1 - SECOND) is None
    assert book.tariff("new", "default", DEC_1) is not None
    later = book.price("new", JAN_1 + SECOND)
    assert later is not None and later.prompt == 6
    assert book.price("missing", JAN_1) is None


def test_without_an_instant_the_price_is_the_one_in_effect_now() -> None:
    now = datetime.now(UTC)
    book = book_of({"id": "m", "prices": [
        {"prompt": 1, "completion": 1, "since": now - timedelta(days=1)},
        {"prompt": 2, "completion": 2, "since": now + timedelta(days=1)},
    ]})
    price = book.price("m")
    assert price is not None and price.prompt == 1


def test_tariff_resolves_cache_write_and_reasoning_to_their_fallbacks() -> None:
    book = book_of(
        {"id": "own", "price": {"prompt": 3_000, "completion": 15_000, "cached_prompt": 300,
                                "cache_write": 3_750, "reasoning": 20_000, "request": 7}},
        {"id": "plain", "price": {"prompt": 150, "completion": 600}},
        {"id": "zeros", "price": {"prompt": 150, "completion": 600, "cached_prompt": 0,
                                  "cache_write": 0, "reasoning": 0}},
        groups={"reseller": 8_500},
    )
    assert book.tariff("own", "reseller") == Tariff(
        3_000, 15_000, 300, 8_500, cache_write_nanos=3_750, reasoning_nanos=20_000,
        request_nanos=7)
    assert book.tariff("plain", "default") == Tariff(
        150, 600, 150, 10_000, cache_write_nanos=150, reasoning_nanos=600, request_nanos=0)
    # An explicit 0 stays 0 (it is not "unset").
    assert book.tariff("zeros", "default") == Tariff(
        150, 600, 0, 10_000, cache_write_nanos=0, reasoning_nanos=0, request_nanos=0)


def test_price_to_proto_carries_the_new_prices_and_the_effective_instant() -> None:
    price = ModelPrice(3_000, 15_000, 300, {"character": 9}, cache_write_prompt=3_750,
                       reasoning=20_000, request=1_000_000, effective_from=DEC_1)
    message = price_to_proto("m", price)
    assert message == billing_pb2.Price(
        model="m", prompt_nanos_per_token=3_000, completion_nanos_per_token=15_000,
        cached_prompt_nanos_per_token=300,
        unit_prices=[billing_pb2.UnitPrice(unit="character", nanos_per_unit=9)],
        cache_write_nanos_per_token=3_750, reasoning_nanos_per_token=20_000,
        request_nanos=1_000_000, effective_from=message.effective_from)
    assert message.HasField("effective_from")
    assert message.effective_from.ToDatetime(tzinfo=UTC) == DEC_1
    base = price_to_proto("m", ModelPrice(1, 2))
    assert not base.HasField("effective_from")
    assert (base.cache_write_nanos_per_token, base.reasoning_nanos_per_token,
            base.request_nanos) == (0, 0, 0)


def test_tariff_to_proto_carries_every_resolved_price() -> None:
    tariff = Tariff(1, 2, 3, 8_500, {"audio_second": 4}, cache_write_nanos=5,
                    reasoning_nanos=6, request_nanos=7)
    assert tariff_to_proto(tariff) == billing_pb2.Tariff(
        prompt_nanos_per_token=1, completion_nanos_per_token=2, cached_prompt_nanos_per_token=3,
        unit_prices=[billing_pb2.UnitPrice(unit="audio_second", nanos_per_unit=4)],
        multiplier_bps=8_500, cache_write_nanos_per_token=5, reasoning_nanos_per_token=6,
        request_nanos=7)
