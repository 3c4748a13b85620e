"""The BL-1 oracle on hand-made cases: which usage each way a request ends is billed at."""

from __future__ import annotations

from services.common.charges import Metered, Tariff, cost_nanos
from services.common.tokens import estimate_tokens
from tests.chaos.oracle import Observation, Oracle, Seen, UpstreamCall
from tests.chaos.plan import ClientFault, RequestPlan, UpstreamFault, read_order, reply_text
from tests.chaos.world import tariffs

MODEL, GROUP = "bl1-large", "odd"
TARIFF: Tariff = tariffs()[MODEL, GROUP]


def _plan(stream: bool = True, **faults: object) -> RequestPlan:
    return RequestPlan("bl1-1-00001-deadbeef", 0, 0, MODEL, stream, 12,
                       **faults)  # type: ignore[arg-type]


def _call(plan: RequestPlan, end: str = "complete", sent: int = 12, status: int = 200,
          usage: bool = True) -> UpstreamCall:
    return UpstreamCall(plan.request_id + ".abc", 1, MODEL, plan.stream, plan.pieces, status,
                        end, sent, usage, 40 if usage else 0, 13 if usage else 0,
                        13 if usage else 0)


def _cost(prompt: int, completion: int, cached: int = 0) -> int:
    return cost_nanos(TARIFF, Metered(prompt, completion, cached))


def test_the_plan_travels_in_the_prompt() -> None:
    plan = _plan(upstream_fault=UpstreamFault.CUT, cut_after=5)
    order = read_order(plan.prompt)
    assert order is not None
    assert (order.pieces, order.fault, order.cut_after) == (12, UpstreamFault.CUT, 5)


def test_a_whole_answer_is_billed_its_reported_usage_at_the_group_multiplier() -> None:
    plan = _plan()
    seen = Observation(plan.request_id, Seen.OK, 200, chunks=12)
    expected = Oracle(tariffs()).expect(plan, GROUP, seen, [_call(plan)])
    # (27 plain * 2500 + 13 cached * 1250 + 13 * 10000) * 0.7777, rounded half up once.
    assert expected.amounts == {((27 * 2500 + 13 * 1250 + 13 * 10_000) * 7777 + 5_000) // 10_000}


def test_an_answer_without_usage_is_billed_the_router_estimate() -> None:
    plan = _plan(stream=False, upstream_fault=UpstreamFault.OMIT_USAGE)
    seen = Observation(plan.request_id, Seen.OK, 200)
    expected = Oracle(tariffs()).expect(plan, GROUP, seen, [_call(plan, usage=False)])
    assert expected.amounts == {_cost(estimate_tokens(plan.prompt),
                                      estimate_tokens(reply_text(12)))}


def test_a_cut_stream_is_billed_the_router_estimate_of_what_it_relayed() -> None:
    plan = _plan(upstream_fault=UpstreamFault.CUT, cut_after=5)
    seen = Observation(plan.request_id, Seen.STREAM_ERROR, 200, "upstream_error", chunks=5)
    expected = Oracle(tariffs()).expect(plan, GROUP, seen, [_call(plan, "cut", 5, usage=False)])
    assert expected.amounts == {_cost(estimate_tokens(plan.prompt), 5)}


def test_a_stream_whose_router_died_is_billed_the_edge_estimate_of_what_it_wrote() -> None:
    plan = _plan()
    seen = Observation(plan.request_id, Seen.STREAM_ERROR, 200, "server_error", chunks=4)
    expected = Oracle(tariffs()).expect(plan, GROUP, seen, [_call(plan, "peer_gone", 6)])
    assert expected.amounts == {_cost(3 + 4 + estimate_tokens(plan.prompt), 4)}


def test_a_disconnect_may_be_billed_what_the_edge_wrote_never_less_than_read() -> None:
    plan = _plan(client_fault=ClientFault.DISCONNECT, disconnect_after=3)
    seen = Observation(plan.request_id, Seen.DISCONNECTED, 200, chunks=3)
    expected = Oracle(tariffs()).expect(plan, GROUP, seen, [_call(plan, "peer_gone", 7)])
    edge_prompt = 3 + 4 + estimate_tokens(plan.prompt)
    assert expected.amounts == {_cost(edge_prompt, j) for j in range(3, 8)}
    assert 0 not in expected.amounts
    assert expected.labels[_cost(edge_prompt, 3)] == "wrote k+0"


def test_nothing_is_owed_when_no_answer_reached_the_client() -> None:
    plan = _plan(upstream_fault=UpstreamFault.ERROR_5XX)
    seen = Observation(plan.request_id, Seen.HTTP_ERROR, 502)
    calls = [_call(plan, "refused", 0, 503), _call(plan, "refused", 0, 503)]
    assert Oracle(tariffs()).expect(plan, GROUP, seen, calls).amounts == {0}
