"""The edge's side of billing through the routes: request outcomes on settle and release,
key budgets, untrusted usage, the durable spool while billing is down, and redeem."""

from __future__ import annotations

import asyncio

import grpc
import orjson

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2
from edge.keys import SETTLER
from services.common.tokens import estimate_tokens
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.messages import MODEL, Hang, chunk, end, error, usage

PATH = "/v1/chat/completions"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]}
STREAM = {**BODY, "stream": True}
PROMPT_ESTIMATE = 3 + 4 + estimate_tokens("Say hi")
REDEEM = "/apirelay/v1/redeem"


async def test_a_completed_stream_settles_with_an_ok_outcome(edge: Edge) -> None:
    response = await edge.client.post(PATH, json=STREAM, headers=auth())
    await response.read()
    await edge.settled()
    settle, = edge.fakes.billing.settles
    outcome = settle.outcome
    assert (outcome.status, outcome.stream, outcome.error_code) == (
        billing_pb2.REQUEST_STATUS_OK, True, "")
    assert 0 < outcome.first_token_ms <= outcome.latency_ms
    assert settle.channel == "chan-a"


async def test_a_non_streaming_answer_settles_with_its_outcome(edge: Edge) -> None:
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert response.status == 200
    await edge.settled()
    outcome = edge.fakes.billing.settles[0].outcome
    assert (outcome.status, outcome.stream) == (billing_pb2.REQUEST_STATUS_OK, False)
    assert outcome.first_token_ms <= outcome.latency_ms


async def test_a_cut_stream_is_upstream_cut_with_the_code_sent(edge: Edge) -> None:
    edge.fakes.router.script = [
        chunk("Hel"), end(error(502, "server_error", "upstream_gone", "dropped"),
                          usage_pb2.Usage()),
    ]
    response = await edge.client.post(PATH, json=STREAM, headers=auth())
    await response.read()
    await edge.settled()
    outcome = edge.fakes.billing.settles[0].outcome
    assert (outcome.status, outcome.error_code) == (
        billing_pb2.REQUEST_STATUS_UPSTREAM_CUT, "upstream_gone")


async def test_a_client_gone_mid_stream_is_client_closed(edge: Edge) -> None:
    edge.fakes.router.script = [chunk("Hello"), Hang()]
    response = await edge.client.post(PATH, json=STREAM, headers=auth())
    await response.content.readuntil(b"\n\n")
    response.close()
    await asyncio.wait_for(edge.fakes.router.cancelled.wait(), 2)
    await edge.settled()
    outcome = edge.fakes.billing.settles[0].outcome
    assert outcome.status == billing_pb2.REQUEST_STATUS_CLIENT_CLOSED
    assert outcome.first_token_ms > 0


async def test_an_error_before_any_output_releases_with_the_outcome(edge: Edge) -> None:
    edge.fakes.router.script = [
        end(error(429, "rate_limit_error", "rate_limit_exceeded", "busy"), usage_pb2.Usage()),
    ]
    response = await edge.client.post(PATH, json=STREAM, headers=auth())
    assert response.status == 429
    await edge.settled()
    release, = edge.fakes.billing.releases
    assert release.HasField("outcome")
    assert (release.outcome.status, release.outcome.error_code, release.outcome.first_token_ms) \
        == (billing_pb2.REQUEST_STATUS_ERROR, "rate_limit_exceeded", 0)
    assert release.channel == "chan-a"


async def test_an_undone_admission_releases_without_an_outcome(edge: Edge) -> None:
    edge.fakes.ratelimit.deny_by = ratelimit_pb2.LIMIT_KIND_RPM  # the hold is undone
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert response.status == 429
    await edge.settled()
    release, = edge.fakes.billing.releases
    assert not release.HasField("outcome")
    assert edge.fakes.router.requests == []


async def test_a_key_over_its_budget_gets_insufficient_quota(edge: Edge) -> None:
    edge.fakes.billing.decision = billing_pb2.RESERVE_DECISION_KEY_BUDGET_EXCEEDED
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert response.status == 429
    envelope = (await response.json())["error"]
    assert (envelope["type"], envelope["code"]) == ("insufficient_quota", "insufficient_quota")
    assert envelope["message"].startswith("This API key has reached its spending cap")
    assert response.headers["x-should-retry"] == "false"
    await edge.settled()
    assert edge.fakes.router.requests == []  # no upstream call
    assert edge.fakes.billing.releases == []  # nothing was held
    assert len(edge.fakes.ratelimit.releases) == 1  # the lease is undone


async def test_absurd_usage_is_billed_from_the_delivered_text(edge: Edge) -> None:
    edge.fakes.router.script = [chunk("Hello world"), end(None, usage(11, 10**6))]
    response = await edge.client.post(PATH, json={**STREAM, "max_tokens": 20}, headers=auth())
    await response.read()
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert (settle.usage.prompt_tokens, settle.usage.completion_tokens) == (
        11, estimate_tokens("Hello world"))


async def test_billing_down_at_the_end_spools_then_drains_exactly_once(edge: Edge) -> None:
    edge.fakes.billing.settle_fail = grpc.StatusCode.UNAVAILABLE
    response = await edge.client.post(PATH, json=STREAM, headers={**auth(), "x-request-id": "sp"})
    assert response.status == 200
    await response.read()
    await edge.settled()
    outbox = edge.client.app[SETTLER].outbox
    assert edge.fakes.billing.settles == [] and await outbox.spool.depth() == 1
    edge.fakes.billing.settle_fail = None
    assert await outbox.drain() is True
    settle, = edge.fakes.billing.settles
    assert settle.outcome.status == billing_pb2.REQUEST_STATUS_OK  # the outcome travels too
    assert await outbox.spool.depth() == 0


async def test_billing_frozen_at_admission_is_a_503_without_an_upstream_call(edge: Edge) -> None:
    edge.fakes.billing.fail = grpc.StatusCode.DEADLINE_EXCEEDED
    response = await edge.client.post(PATH, json=BODY, headers=auth())
    assert response.status == 503
    assert edge.fakes.router.requests == []


async def test_redeem_credits_the_keys_account(edge: Edge) -> None:
    edge.fakes.billing.codes["rc-good"] = 5 * 10**9
    response = await edge.client.post(REDEEM, json={"code": "rc-good"}, headers=auth())
    assert response.status == 200
    assert await response.json() == {
        "object": "redemption", "credited_usd": "5.000000000", "balance_usd": "10.000000000"}
    assert response.headers["x-request-id"]
    assert edge.fakes.billing.redeemed == {"rc-good": "acct_1"}


async def test_redeem_errors_are_openai_envelopes(edge: Edge) -> None:
    billing = edge.fakes.billing
    billing.codes.update({"rc-used": 1, "rc-old": 1})
    billing.redeemed["rc-used"] = "someone-else"
    billing.expired.add("rc-old")
    cases = [
        ({"code": "rc-nope"}, 404, "redemption_code_not_found"),
        ({"code": "rc-used"}, 409, "redemption_code_used"),
        ({"code": "rc-old"}, 409, "redemption_code_expired"),
        ({"coupon": "rc-used"}, 400, None),
        ({"code": ""}, 400, None),
    ]
    for body, status, code in cases:
        response = await edge.client.post(REDEEM, json=body, headers=auth())
        assert response.status == status, body
        envelope = (await response.json())["error"]
        assert set(envelope) == {"message", "type", "param", "code"}
        if code is not None:
            assert envelope["code"] == code
    bad_json = await edge.client.post(REDEEM, data=b"{", headers={
        **auth(), "content-type": "application/json"})
    assert bad_json.status == 400
    no_key = await edge.client.post(REDEEM, json={"code": "rc-good"})
    assert no_key.status == 401
    assert orjson.loads(await no_key.read())["error"]["code"] == "invalid_api_key"

