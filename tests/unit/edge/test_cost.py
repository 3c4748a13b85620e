"""edge.cost: the reported cost equals the shared charge, patched into the usage object."""

from __future__ import annotations

import orjson

from apirelay.billing.v1 import billing_pb2
from edge.cost import CostReporter, add_cost_to_event, add_cost_to_json
from edge.domain import Reservation, ReserveDecision, Usage
from edge.translate import reservation, usage_to_proto
from services.billing.domain import Usage as BilledUsage
from services.billing.price_wire import tariff_to_proto
from services.billing.pricing import PriceBook, charge_nanos
from services.common.charges import Tariff
from services.common.gateway_config import parse_gateway_config

TARIFF = Tariff(prompt_nanos=150, completion_nanos=601, cached_prompt_nanos=75,
                multiplier_bps=8_333, unit_nanos={"character": 15_000},
                cache_write_nanos=150, reasoning_nanos=601, request_nanos=0)
HELD = Reservation(ReserveDecision.RESERVED, 1000, TARIFF)


def test_the_cost_is_the_charge_formula_rounded_once() -> None:
    usage = Usage(prompt_tokens=11, completion_tokens=7, total_tokens=18, cached_prompt_tokens=3)
    # (8 * 150 + 3 * 75 + 7 * 601) * 8333 / 10000 = 4789.0... -> rounds half up once
    expected = ((8 * 150 + 3 * 75 + 7 * 601) * 8_333 + 5_000) // 10_000
    assert CostReporter(HELD, enabled=True).nanos(usage) == expected


def test_the_edge_cost_equals_the_billing_charge_with_cache_writes_and_reasoning() -> None:
    book = PriceBook.from_config(parse_gateway_config({
        "models": [{"id": "m", "price": {"prompt": 3_000, "completion": 15_000,
                                         "cached_prompt": 300, "cache_write": 3_750,
                                         "reasoning": 20_000, "request": 1_000}}],
        "groups": {"reseller": 8_333},
    }))
    held_at = book.tariff("m", "reseller")
    assert held_at is not None
    # The tariff travels billing -> edge on the reserve answer, the usage edge -> billing.
    held = reservation(billing_pb2.ReserveCreditResponse(
        decision=billing_pb2.RESERVE_DECISION_RESERVED, held_nanos=1,
        tariff=tariff_to_proto(held_at)))
    usage = Usage(prompt_tokens=10_000, completion_tokens=900, total_tokens=10_900,
                  cached_prompt_tokens=6_000, reasoning_tokens=300,
                  cache_write_prompt_tokens=3_000)
    sent = usage_to_proto(usage)
    billed = charge_nanos(held_at, BilledUsage(
        sent.prompt_tokens, sent.completion_tokens, sent.cached_prompt_tokens,
        sent.reasoning_tokens, cache_write_prompt_tokens=sent.cache_write_prompt_tokens))
    # (1000 * 3000 + 6000 * 300 + 3000 * 3750 + 600 * 15000 + 300 * 20000 + 1000) * 0.8333
    # = 25874798.3 -> 25874798
    assert CostReporter(held, enabled=True).nanos(usage) == billed == 25_874_798


def test_units_are_priced_and_an_unpriced_unit_reports_nothing() -> None:
    reporter = CostReporter(HELD, enabled=True)
    assert reporter.nanos(Usage(0, 0, 0, units={"character": 4})) == (
        (4 * 15_000 * 8_333 + 5_000) // 10_000)
    assert reporter.nanos(Usage(0, 0, 0, units={"image/1x1/hd": 1})) is None


def test_no_tariff_or_switched_off_reports_nothing() -> None:
    usage = Usage(1, 1, 2)
    assert CostReporter(HELD, enabled=False).nanos(usage) is None
    assert CostReporter(Reservation(ReserveDecision.RESERVED, 1), enabled=True).nanos(usage) is None


def test_cost_is_a_nine_decimal_number_in_the_top_level_usage() -> None:
    body = b'{"id":"x","usage":{"total_tokens":18},"data":[1.5e-05]}'
    patched = add_cost_to_json(body, 4_789)
    assert patched is not None
    assert b'"cost":0.000004789' in patched
    assert orjson.loads(patched)["usage"] == {"total_tokens": 18, "cost": 0.000004789}
    assert add_cost_to_json(b'{"id":"x"}', 1) is None
    assert add_cost_to_json(b'{"usage":null}', 1) is None
    assert add_cost_to_json(b"not json usage", 1) is None


def test_cost_goes_into_a_responses_events_response_usage() -> None:
    event = (b"event: response.completed\n"
             b'data: {"type":"response.completed","response":{"usage":{"input_tokens":9}}}\n\n')
    patched = add_cost_to_event(event, 1_000_000_001)
    assert patched is not None and patched.startswith(b"event: response.completed\ndata: ")
    data = orjson.loads(patched.split(b"data: ", 1)[1])
    assert data["response"]["usage"] == {"input_tokens": 9, "cost": 1.000000001}
    assert b'"cost":1.000000001' in patched
    delta = b'event: response.output_text.delta\ndata: {"delta":"usage"}\n\n'
    assert add_cost_to_event(delta, 1) is None
