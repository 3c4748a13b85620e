"""POST /v1/chat/completions (non-streaming) against fake services: success and every error."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import orjson
import pytest

from apirelay.auth.v1 import auth_pb2
from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2
from apirelay.router.v1 import router_pb2
from services.common.tokens import estimate_tokens
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.fakes import LIMITED_SECRET, SECRET, from_client, principal
from tests.grpc.edge.messages import MODEL, Hang, error

PATH = "/v1/chat/completions"
PROMPT = "Say hi"
# 3 reply tokens + 4 per message + the text.
PROMPT_ESTIMATE = 3 + 4 + estimate_tokens(PROMPT)
KEY_ENTRY = ratelimit_pb2.DescriptorEntry(key="key", value="key_1")


def chat(**extra: Any) -> dict[str, Any]:
    """A minimal valid request body."""
    return {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], **extra}


async def post(edge: Edge, body: Any, secret: str = SECRET, rid: str | None = None) -> Any:
    """POST a chat request; returns (status, headers, parsed body)."""
    headers = auth(secret)
    if rid is not None:
        headers["x-request-id"] = rid
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await edge.client.post(PATH, data=raw, headers=headers)
    return response.status, response.headers, orjson.loads(await response.read())


def assert_error(result: Any, status: int, kind: str, code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    got_status, headers, body = result
    assert got_status == status, body
    assert headers["x-request-id"]
    err: dict[str, Any] = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["code"], err["param"]) == (kind, code, param)
    return err


async def test_success_relays_body_and_settles_reported_usage(edge: Edge) -> None:
    raw = orjson.dumps(chat(max_tokens=20, some_future_field={"x": 1}))
    status, headers, body = await post(edge, raw, rid="client-rid-1")
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Hi there"
    assert headers["x-request-id"] == "client-rid-1"
    assert headers["content-type"] == "application/json"
    assert headers["x-ratelimit-remaining-requests"] == "59"
    router = edge.fakes.router
    assert router.requests[0].body == raw  # the original bytes, unknown field included
    assert router.requests[0].caller.key_id == "key_1"
    assert [from_client(rid) for rid in router.metadata] == ["client-rid-1"]
    (rid, acquire), = edge.fakes.ratelimit.acquires
    assert from_client(rid) == "client-rid-1" and rid != "client-rid-1"  # unique inside
    assert acquire.estimated_tokens == PROMPT_ESTIMATE + 20
    assert [(list(r.descriptor.entries), r.kind, r.limit) for r in acquire.rules] == [
        ([KEY_ENTRY], ratelimit_pb2.LIMIT_KIND_RPM, 60),
        ([KEY_ENTRY], ratelimit_pb2.LIMIT_KIND_TPM, 100_000),
        ([KEY_ENTRY], ratelimit_pb2.LIMIT_KIND_CONCURRENCY, 4),
    ]
    reserve, = edge.fakes.billing.reserves
    assert (reserve.prompt_tokens, reserve.max_completion_tokens) == (PROMPT_ESTIMATE, 20)
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert (settle.usage.prompt_tokens, settle.usage.completion_tokens) == (11, 7)
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    assert settle.channel == "chan-a"
    assert edge.fakes.billing.releases == []
    lease, = edge.fakes.ratelimit.releases
    assert (lease.lease_id, lease.subject, lease.actual_tokens) == (rid, "key_1", 18)


async def test_a_key_without_its_own_limits_gets_the_defaults(edge: Edge) -> None:
    plain = "sk-plain"
    edge.fakes.auth.keys[plain] = principal("key_plain")
    edge.fakes.auth.keys[plain].limits.Clear()
    status, headers, _ = await post(edge, chat(), secret=plain)
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "3000"
    (_, acquire), = edge.fakes.ratelimit.acquires
    assert [(r.kind, r.limit) for r in acquire.rules] == [
        (ratelimit_pb2.LIMIT_KIND_RPM, 3000), (ratelimit_pb2.LIMIT_KIND_TPM, 1_000_000),
        (ratelimit_pb2.LIMIT_KIND_CONCURRENCY, 100)]


async def test_key_without_limits_skips_the_limiter(edge: Edge) -> None:
    unlimited = "sk-unlimited"
    edge.fakes.auth.keys[unlimited] = principal("key_free")
    edge.fakes.auth.keys[unlimited].limits.CopyFrom(
        auth_pb2.KeyLimits(rpm=-1, tpm=-1, concurrency=-1))
    status, headers, _ = await post(edge, chat(), secret=unlimited)
    assert status == 200
    assert not any(h.startswith("x-ratelimit") for h in headers)
    await edge.settled()
    assert edge.fakes.ratelimit.acquires == [] and edge.fakes.ratelimit.releases == []
    settle, = edge.fakes.billing.settles
    assert settle.usage.prompt_tokens == 11


async def test_completion_cap_defaults_to_the_models_max_output(edge: Edge) -> None:
    await post(edge, chat(n=2))
    reserve, = edge.fakes.billing.reserves
    assert reserve.max_completion_tokens == 200  # 100 from the catalog, times n


async def test_request_id_is_sanitised_or_generated(edge: Edge) -> None:
    _, headers, _ = await post(edge, chat(), rid="ab<c>d" + "x" * 300)
    assert headers["x-request-id"] == "abcd" + "x" * 124
    _, headers, _ = await post(edge, chat())
    assert headers["x-request-id"].startswith("req_")


async def test_invalid_json_is_400_before_any_service_call(edge: Edge) -> None:
    assert_error(await post(edge, b'{"model": '), 400, "invalid_request_error", "invalid_json")
    assert edge.fakes.ratelimit.acquires == [] and edge.fakes.billing.reserves == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"content": "x"}]}, "messages.0.role"),
        ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (chat(max_tokens="5"), "max_tokens"),
        (chat(max_completion_tokens=2**63), "max_completion_tokens"),
        (chat(temperature=3), "temperature"),
        (chat(temperature=-0.1), "temperature"),
        (chat(n=0), "n"),
        (chat(n=1.5), "n"),
        (chat(stream="true"), "stream"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(logit_bias={"50256": 101}), "logit_bias.50256"),
        (chat(tools=[{"type": "function", "function": {}}]), "tools.0.function.name"),
        ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]},
         "messages.0.tool_call_id"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
async def test_validation_errors_name_the_param(edge: Edge, body: Any, param: str) -> None:
    assert_error(await post(edge, body), 400, "invalid_request_error", None, param)


@pytest.mark.parametrize(
    ("headers", "message_part"),
    [({}, "didn't provide"), ({"Authorization": "Basic abc"}, "didn't provide"),
     ({"Authorization": "Bearer sk-nope"}, "Incorrect")],
)
async def test_missing_or_unknown_key_is_401(
    edge: Edge, headers: dict[str, str], message_part: str
) -> None:
    response = await edge.client.post(PATH, json=chat(), headers=headers)
    result = response.status, response.headers, await response.json()
    err = assert_error(result, 401, "invalid_request_error", "invalid_api_key")
    assert message_part in err["message"]


async def test_revoked_key_is_401(edge: Edge) -> None:
    edge.fakes.auth.revoked.add(SECRET)
    err = assert_error(await post(edge, chat()), 401, "invalid_request_error", "invalid_api_key")
    assert "revoked" in err["message"]


async def test_auth_down_is_503_unless_the_key_is_cached(edge: Edge) -> None:
    edge.fakes.auth.fail = grpc.StatusCode.UNAVAILABLE
    assert_error(await post(edge, chat()), 503, "server_error")
    edge.fakes.auth.fail = None
    assert (await post(edge, chat()))[0] == 200
    edge.fakes.auth.fail = grpc.StatusCode.UNAVAILABLE
    assert (await post(edge, chat()))[0] == 200  # served from the principal cache
    assert len(edge.fakes.auth.calls) == 2


async def test_unknown_model_is_404_and_refreshes_the_catalog_once(edge: Edge) -> None:
    assert_error(await post(edge, chat(model="nope")), 404, "invalid_request_error",
                 "model_not_found", "model")
    assert_error(await post(edge, chat(model="nope")), 404, "invalid_request_error",
                 "model_not_found", "model")
    # First lookup loads, the first miss may refresh; the second miss within 1 s may not.
    assert edge.fakes.router.list_calls == 1
    assert edge.fakes.ratelimit.acquires == []


async def test_model_outside_the_keys_allow_list_is_403(edge: Edge) -> None:
    assert_error(await post(edge, chat(), secret=LIMITED_SECRET), 403, "permission_error",
                 "model_not_allowed", "model")


async def test_rate_limit_denial_is_429_with_headers_and_releases_the_hold(edge: Edge) -> None:
    edge.fakes.ratelimit.deny_by = ratelimit_pb2.LIMIT_KIND_RPM
    status, headers, body = await post(edge, chat(), rid="rl-1")
    assert_error((status, headers, body), 429, "rate_limit_error", "rate_limit_exceeded")
    assert headers["retry-after"] == "3"  # ceil(2.2)
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    await edge.settled()
    assert [from_client(r.request_id) for r in edge.fakes.billing.releases] == ["rl-1"]
    assert edge.fakes.ratelimit.releases == [] and edge.fakes.router.requests == []


async def test_insufficient_balance_is_429_quota_and_releases_the_lease(edge: Edge) -> None:
    edge.fakes.billing.decision = billing_pb2.RESERVE_DECISION_INSUFFICIENT_BALANCE
    status, headers, body = await post(edge, chat(), rid="q-1")
    assert_error((status, headers, body), 429, "insufficient_quota", "insufficient_quota")
    assert headers["x-should-retry"] == "false"
    assert headers["retry-after"] == "1"  # every 429 says when to retry
    await edge.settled()
    lease, = edge.fakes.ratelimit.releases
    assert (from_client(lease.lease_id), lease.actual_tokens) == ("q-1", 0)
    assert edge.fakes.billing.releases == [] and edge.fakes.router.requests == []


async def test_unpriced_model_is_403_and_releases_the_lease(edge: Edge) -> None:
    edge.fakes.billing.decision = billing_pb2.RESERVE_DECISION_MODEL_NOT_PRICED
    assert_error(await post(edge, chat()), 403, "invalid_request_error", "model_not_priced",
                 "model")
    await edge.settled()
    assert len(edge.fakes.ratelimit.releases) == 1 and edge.fakes.router.requests == []


async def test_billing_down_fails_closed_and_releases_the_lease(edge: Edge) -> None:
    edge.fakes.billing.fail = grpc.StatusCode.UNAVAILABLE
    err = assert_error(await post(edge, chat()), 503, "server_error")
    assert "database" not in err["message"]
    await edge.settled()
    assert len(edge.fakes.ratelimit.releases) == 1 and edge.fakes.router.requests == []


async def test_limiter_down_is_503_and_releases_the_hold(edge: Edge) -> None:
    edge.fakes.ratelimit.fail = grpc.StatusCode.UNAVAILABLE
    assert_error(await post(edge, chat()), 503, "server_error")
    await edge.settled()
    assert len(edge.fakes.billing.releases) == 1 and edge.fakes.router.requests == []


async def test_router_completion_error_is_relayed_and_the_hold_released(edge: Edge) -> None:
    edge.fakes.router.response = router_pb2.CreateChatCompletionResponse(
        error=error(400, "invalid_request_error", "context_length_exceeded", "too long",
                    "messages"),
    )
    err = assert_error(await post(edge, chat()), 400, "invalid_request_error",
                       "context_length_exceeded", "messages")
    assert err["message"] == "too long"
    await edge.settled()
    assert edge.fakes.billing.settles == [] and len(edge.fakes.billing.releases) == 1
    assert edge.fakes.ratelimit.releases[0].actual_tokens == 0


async def test_router_unavailable_is_a_generic_503(edge: Edge) -> None:
    edge.fakes.router.fail = grpc.StatusCode.UNAVAILABLE
    err = assert_error(await post(edge, chat()), 503, "server_error")
    assert "10.0.0.7" not in err["message"]
    await edge.settled()
    assert len(edge.fakes.billing.releases) == 1 and len(edge.fakes.ratelimit.releases) == 1


async def test_router_not_found_is_not_the_clients_404(edge: Edge) -> None:
    edge.fakes.router.fail = grpc.StatusCode.NOT_FOUND
    assert_error(await post(edge, chat()), 500, "server_error")


async def test_client_gone_cancels_the_router_and_settles_the_prompt(edge: Edge) -> None:
    edge.fakes.router.script = [Hang()]
    task = asyncio.create_task(post(edge, chat(), rid="gone-1"))
    while not edge.fakes.router.requests:
        await asyncio.sleep(0.005)
    task.cancel()  # closes the client connection
    await asyncio.wait_for(edge.fakes.router.cancelled.wait(), 2)
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert (settle.usage.prompt_tokens, settle.usage.completion_tokens) == (PROMPT_ESTIMATE, 0)
    assert edge.fakes.ratelimit.releases[0].actual_tokens == PROMPT_ESTIMATE


async def test_unknown_route_wrong_method_and_large_body_get_envelopes(edge: Edge) -> None:
    response = await edge.client.get("/v1/nothing", headers={"x-request-id": "r-404"})
    assert response.status == 404 and response.headers["x-request-id"] == "r-404"
    assert (await response.json())["error"]["type"] == "invalid_request_error"
    response = await edge.client.get(PATH, headers=auth())
    assert response.status == 405 and response.headers["x-request-id"]
    assert "POST" in response.headers["Allow"]
    assert (await response.json())["error"]["type"] == "invalid_request_error"
    big = chat(messages=[{"role": "user", "content": "x" * 70_000}])
    response = await edge.client.post(PATH, json=big, headers=auth())
    assert response.status == 413 and response.headers["x-request-id"]
    assert "65536" in (await response.json())["error"]["message"]
