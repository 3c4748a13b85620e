"""edge.translate: the tariff's cache-write, reasoning and request prices and the usage's
cache-write tokens survive the trip between the protos and the edge's dataclasses."""

from __future__ import annotations

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from edge.domain import Usage
from edge.translate import tariff, usage_from_proto, usage_to_proto
from services.common.charges import Tariff


def test_the_tariff_reads_every_price() -> None:
    message = billing_pb2.Tariff(
        prompt_nanos_per_token=1, completion_nanos_per_token=2, cached_prompt_nanos_per_token=3,
        multiplier_bps=8_500, cache_write_nanos_per_token=4, reasoning_nanos_per_token=5,
        request_nanos=6, unit_prices=[billing_pb2.UnitPrice(unit="character", nanos_per_unit=7)])
    assert tariff(message) == Tariff(1, 2, 3, 8_500, {"character": 7}, cache_write_nanos=4,
                                     reasoning_nanos=5, request_nanos=6)


def test_cache_write_tokens_travel_both_ways() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=20, total_tokens=120,
                  cached_prompt_tokens=30, reasoning_tokens=5, cache_write_prompt_tokens=60)
    message = usage_to_proto(usage)
    assert (message.cache_write_prompt_tokens, message.cached_prompt_tokens,
            message.reasoning_tokens) == (60, 30, 5)
    assert usage_from_proto(message) == usage
    only_written = usage_pb2.Usage(prompt_tokens=9, cache_write_prompt_tokens=9)
    back = usage_from_proto(only_written)
    assert back is not None and back.cache_write_prompt_tokens == 9
