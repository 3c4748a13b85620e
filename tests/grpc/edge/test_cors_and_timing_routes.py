"""`openai-processing-ms` on every /v1 response, and CORS (EDGE_CORS_ORIGINS) end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse

from tests.grpc.edge.conftest import Edge, auth, open_edge
from tests.grpc.edge.messages import MODEL, Pause, chunk, end

ALLOWED = "https://app.example.com"
CHAT = "/v1/chat/completions"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]}
SDK_HEADERS = "authorization, content-type, x-stainless-os, x-stainless-retry-count"


@pytest.fixture
async def cors_edge() -> AsyncIterator[Edge]:
    """An edge allowing one browser origin."""
    async with open_edge(cors_origins=(ALLOWED,)) as running:
        yield running


def processing_ms(response: ClientResponse) -> int:
    raw = response.headers["openai-processing-ms"]
    assert raw.isdigit(), raw
    return int(raw)


async def test_processing_ms_on_success_error_and_not_found(edge: Edge) -> None:
    answers = (
        (await edge.client.post(CHAT, json=BODY, headers=auth()), 200),
        (await edge.client.get("/v1/models"), 401),  # refused by the auth middleware
        (await edge.client.get("/v1/nope", headers=auth()), 404),
    )
    for response, status in answers:
        assert response.status == status
        assert processing_ms(response) >= 0
    assert "openai-processing-ms" not in (await edge.client.get("/healthz")).headers


async def test_processing_ms_of_a_stream_is_the_time_to_its_headers(edge: Edge) -> None:
    edge.fakes.router.script = [Pause(0.05), chunk("Hel"), Pause(1.0), chunk("lo", "stop"), end()]
    response = await edge.client.post(CHAT, json={**BODY, "stream": True}, headers=auth())
    assert response.status == 200
    # Headers leave after the first chunk (50 ms), long before the stream ends (1 s later).
    assert 50 <= processing_ms(response) < 1000
    assert (await response.read()).endswith(b"data: [DONE]\n\n")


async def test_cors_is_off_by_default(edge: Edge) -> None:
    response = await edge.client.options(CHAT, headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
    })
    assert response.status == 405 and "access-control-allow-origin" not in response.headers
    response = await edge.client.post(CHAT, json=BODY, headers={**auth(), "Origin": ALLOWED})
    assert response.status == 200 and "access-control-allow-origin" not in response.headers


async def test_preflight_needs_no_key_and_echoes_requested_headers(cors_edge: Edge) -> None:
    response = await cors_edge.client.options(CHAT, headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": SDK_HEADERS,
    })
    assert response.status == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert response.headers["access-control-allow-headers"] == SDK_HEADERS
    assert response.headers["access-control-max-age"] == "600"
    assert cors_edge.fakes.auth.calls == []  # no key was asked for
    bare = await cors_edge.client.options("/v1/models", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "GET",
    })
    assert bare.status == 204
    assert "idempotency-key" in bare.headers["access-control-allow-headers"]


async def test_allowed_origin_reads_responses_and_errors(cors_edge: Edge) -> None:
    headers = {**auth(), "Origin": ALLOWED}
    ok = await cors_edge.client.post(CHAT, json=BODY, headers=headers)
    unauthorized = await cors_edge.client.get("/v1/models", headers={"Origin": ALLOWED})
    stream = await cors_edge.client.post(CHAT, json={**BODY, "stream": True}, headers=headers)
    for response, status in ((ok, 200), (unauthorized, 401), (stream, 200)):
        assert response.status == status
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert response.headers["vary"] == "Origin"
        exposed = response.headers["access-control-expose-headers"].split(", ")
        assert {"x-request-id", "openai-processing-ms", "retry-after",
                "x-ratelimit-remaining-tokens"} <= set(exposed)
        await response.read()


async def test_disallowed_origin_gets_no_cors_headers(cors_edge: Edge) -> None:
    evil = "https://evil.example.com"
    preflight = await cors_edge.client.options(CHAT, headers={
        "Origin": evil, "Access-Control-Request-Method": "POST",
    })
    assert preflight.status == 403
    assert (await preflight.json())["error"]["type"] == "permission_error"
    response = await cors_edge.client.post(CHAT, json=BODY, headers={**auth(), "Origin": evil})
    assert response.status == 200
    for answered in (preflight, response):
        assert not [h for h in answered.headers if h.lower().startswith("access-control-")]


async def test_wildcard_origin_answers_star() -> None:
    async with open_edge(cors_origins=("*",)) as star:
        response = await star.client.get("/v1/models", headers={**auth(), "Origin": ALLOWED})
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert "vary" not in response.headers
