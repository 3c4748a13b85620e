"""OpenAI endpoints the gateway does not offer: 404 `unsupported_endpoint`, after auth."""

from __future__ import annotations

import openai
import pytest

from edge.routes.unsupported import UNSUPPORTED_FAMILIES
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.fakes import SECRET


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/files"), ("GET", "/v1/files/file-abc/content"),
    ("POST", "/v1/fine_tuning/jobs"), ("DELETE", "/v1/vector_stores/vs_1"),
    ("GET", "/v1/organization/usage/completions"), ("POST", "/v1/moderations"),
])
async def test_unsupported_endpoint_is_named(edge: Edge, method: str, path: str) -> None:
    response = await edge.client.request(method, path, headers=auth())
    assert response.status == 404
    assert (await response.json())["error"] == {
        "message": f"{method} {path} is not supported by this gateway.",
        "type": "invalid_request_error", "param": None, "code": "unsupported_endpoint",
    }


async def test_every_family_is_covered(edge: Edge) -> None:
    for family in UNSUPPORTED_FAMILIES:
        response = await edge.client.get(f"/v1/{family}", headers=auth())
        assert (await response.json())["error"]["code"] == "unsupported_endpoint", family


async def test_other_unknown_paths_keep_the_generic_404(edge: Edge) -> None:
    for path in ("/v1/filesystem", "/v1/nope", "/v1/chat/nope"):
        response = await edge.client.get(path, headers=auth())
        assert response.status == 404
        error = (await response.json())["error"]
        assert (error["message"], error["code"]) == (f"Invalid URL (GET {path})", None)


async def test_unsupported_endpoint_still_needs_a_key(edge: Edge) -> None:
    # Authentication comes first for these paths: without a key the answer is 401.
    response = await edge.client.post("/v1/files")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_official_sdk_raises_not_found_with_the_code(edge: Edge) -> None:
    async with openai.AsyncOpenAI(base_url=edge.base_url, api_key=SECRET, max_retries=0) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.files.list()
    assert caught.value.code == "unsupported_endpoint"
    assert "GET /v1/files is not supported" in caught.value.message
