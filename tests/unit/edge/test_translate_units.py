"""edge.translate: units and tariffs between the protos and the edge's dataclasses."""

from __future__ import annotations

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2
from edge.domain import Operation, ReserveDecision, Usage
from edge.translate import (
    operation,
    relay_item,
    relayed,
    reservation,
    usage_from_proto,
    usage_to_proto,
)


def test_units_travel_both_ways_sorted_and_without_zeroes() -> None:
    usage = Usage(0, 0, 0, units={"image/1024x1024/hd": 2, "character": 0, "audio_second": 3})
    message = usage_to_proto(usage)
    assert [(u.unit, u.quantity) for u in message.units] == [
        ("audio_second", 3), ("image/1024x1024/hd", 2)]
    back = usage_from_proto(message)
    assert back is not None and dict(back.units) == {"audio_second": 3, "image/1024x1024/hd": 2}
    assert usage_from_proto(usage_pb2.Usage()) is None  # nothing consumed at all


def test_a_reservation_carries_its_tariff() -> None:
    response = billing_pb2.ReserveCreditResponse(
        decision=billing_pb2.RESERVE_DECISION_RESERVED, held_nanos=5,
        tariff=billing_pb2.Tariff(
            prompt_nanos_per_token=1, completion_nanos_per_token=2,
            cached_prompt_nanos_per_token=3, multiplier_bps=9000,
            unit_prices=[billing_pb2.UnitPrice(unit="character", nanos_per_unit=7)]),
    )
    held = reservation(response)
    assert held.decision is ReserveDecision.RESERVED and held.tariff is not None
    assert (held.tariff.prompt_nanos, held.tariff.completion_nanos,
            held.tariff.cached_prompt_nanos, held.tariff.multiplier_bps) == (1, 2, 3, 9000)
    assert dict(held.tariff.unit_nanos) == {"character": 7}
    refused = billing_pb2.ReserveCreditResponse(
        decision=billing_pb2.RESERVE_DECISION_INSUFFICIENT_BALANCE)
    assert reservation(refused).tariff is None


def test_relay_answers_keep_their_content_type_and_pieces() -> None:
    assert operation(Operation.AUDIO_SPEECH) == router_pb2.OPERATION_AUDIO_SPEECH
    answer = relayed(router_pb2.RelayResponse(body=b"hi", content_type="text/plain"))
    assert (answer.body, answer.content_type, answer.usage) == (b"hi", "text/plain", None)
    assert relayed(router_pb2.RelayResponse(body=b"{}")).content_type == "application/json"
    item = relay_item(router_pb2.StreamRelayResponse(pieces=[b"a", b"b"],
                                                     content_type="audio/mpeg"))
    assert (item.chunks, item.content_type, item.end) == ((b"a", b"b"), "audio/mpeg", None)
