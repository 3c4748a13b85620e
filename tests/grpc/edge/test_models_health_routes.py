"""GET /v1/models, /v1/models/{model}, /healthz and /readyz."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from apirelay.router.v1 import router_pb2
from edge.app import create_app
from edge.config import Settings
from edge.keys import LIFECYCLE
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.fakes import LIMITED_SECRET
from tests.grpc.edge.messages import MODEL, OTHER_MODEL


async def test_models_lists_what_the_key_may_use(edge: Edge) -> None:
    response = await edge.client.get("/v1/models", headers=auth())
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [OTHER_MODEL, MODEL]  # sorted by id
    assert body["data"][1] == {"id": MODEL, "object": "model", "created": 1, "owned_by": "acme"}
    response = await edge.client.get("/v1/models", headers=auth(LIMITED_SECRET))
    assert [m["id"] for m in (await response.json())["data"]] == [OTHER_MODEL]


async def test_models_needs_a_key(edge: Edge) -> None:
    response = await edge.client.get("/v1/models")
    assert response.status == 401
    assert "Server" not in response.headers
    assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_retrieve_model_by_id_with_slashes(edge: Edge) -> None:
    edge.fakes.router.models.append(router_pb2.Model(id="org/llama-3", owned_by="org", created=5))
    response = await edge.client.get("/v1/models/org/llama-3", headers=auth())
    assert (await response.json()) == {
        "id": "org/llama-3", "object": "model", "created": 5, "owned_by": "org",
    }


async def test_retrieve_unknown_or_forbidden_model_is_404(edge: Edge) -> None:
    for path, secret in (("/v1/models/nope", auth()), (f"/v1/models/{MODEL}",
                                                      auth(LIMITED_SECRET))):
        response = await edge.client.get(path, headers=secret)
        assert response.status == 404
        err = (await response.json())["error"]
        assert (err["code"], err["param"]) == ("model_not_found", "model")


async def test_health_and_readiness(edge: Edge) -> None:
    response = await edge.client.get("/healthz")
    assert response.status == 200 and response.headers["x-request-id"]
    response = await edge.client.get("/readyz")
    assert response.status == 200
    edge.client.app[LIFECYCLE].draining = True
    response = await edge.client.get("/readyz")
    assert response.status == 503 and (await response.json())["status"] == "draining"


async def test_readiness_reports_unreachable_services() -> None:
    dead = "127.0.0.1:1"
    settings = Settings(auth_addr=dead, ratelimit_addr=dead, billing_addr=dead, router_addr=dead)
    async with TestClient(TestServer(create_app(settings))) as client:
        for _ in range(100):
            response = await client.get("/readyz")
            if response.status == 503:
                break
            await response.read()
            await asyncio.sleep(0.02)
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "unavailable"
        assert set(body["services"]) == {"auth", "ratelimit", "billing", "router"}
        # Liveness does not depend on the services.
        assert (await client.get("/healthz")).status == 200


async def test_requests_and_streams_are_counted(edge: Edge) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok = {"route": "/v1/models", "status": "200"}
    missing = {"route": "unmatched", "status": "404"}
    before = sample("apirelay_edge_requests_total", **ok), sample(
        "apirelay_edge_requests_total", **missing)
    chat = {"endpoint": "chat.completions"}
    ttfb_before = sample("apirelay_edge_stream_first_byte_seconds_count", **chat)
    await (await edge.client.get("/v1/models", headers=auth())).read()
    await (await edge.client.get("/nowhere")).read()
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    await (await edge.client.post("/v1/chat/completions", json=body, headers=auth())).read()
    assert sample("apirelay_edge_requests_total", **ok) == before[0] + 1
    assert sample("apirelay_edge_requests_total", **missing) == before[1] + 1
    assert sample("apirelay_edge_stream_first_byte_seconds_count", **chat) == ttfb_before + 1
    assert sample("apirelay_edge_active_streams", **chat) == 0
