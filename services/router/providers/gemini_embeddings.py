"""OpenAI `/v1/embeddings` on Gemini: `embedContent` for one input, `batchEmbedContents`
for several.

`dimensions` becomes `outputDimensionality`; `encoding_format: base64` is done here
(little-endian float32, as OpenAI encodes it), since Gemini only answers floats. Gemini
reports no token counts, so the usage is the input's estimate, flagged as estimated.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from services.router.errors import UpstreamRejected, UpstreamUnavailable
from services.router.providers.base import RelayAnswer, RelayAttempt, Usage, field_of, loads_or_none
from services.router.providers.gemini_http import GeminiHTTP, model_path
from services.router.providers.http import transport_errors

UNREACHABLE = "the upstream is unreachable"


async def relay_embeddings(http: GeminiHTTP, attempt: RelayAttempt) -> RelayAnswer:
    """Embed the request's input texts and answer as OpenAI does."""
    request = attempt.request
    texts = _texts(request.payload.get("input"))
    model = model_path(attempt.upstream_model)
    dimensions = request.payload.get("dimensions")
    requests = [_embed_request(model, text, dimensions) for text in texts]
    single = len(requests) == 1
    method = "embedContent" if single else "batchEmbedContents"
    body = orjson.dumps(requests[0] if single else {"requests": requests})
    with transport_errors(UNREACHABLE):
        response = await http.post(attempt.upstream_model, method, body, request.request_id,
                                   attempt.timeout_s)
        answer = loads_or_none(await http.read(response))
    vectors = [field_of(answer, "embedding")] if single else field_of(answer, "embeddings")
    if not isinstance(vectors, list) or len(vectors) != len(texts):
        raise UpstreamUnavailable(200, "the upstream sent an invalid response")
    as_base64 = request.payload.get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": index,
             "embedding": _encoded(_values(vector), as_base64=as_base64)}
            for index, vector in enumerate(vectors)]
    usage = Usage(request.estimated_input_tokens(), 0)
    result = {"object": "list", "data": data, "model": request.model,
              "usage": {"prompt_tokens": usage.prompt_tokens,
                        "total_tokens": usage.total_tokens}}
    return RelayAnswer(orjson.dumps(result), "application/json", usage, reported=False)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise UpstreamRejected(400, "input must be a string or a non-empty list of strings for "
                           "this model (token arrays are not supported)",
                           error_type="invalid_request_error", param="input")


def _embed_request(model: str, text: str, dimensions: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
    if isinstance(dimensions, int) and not isinstance(dimensions, bool):
        request["outputDimensionality"] = dimensions
    return request


def _values(vector: Any) -> list[float]:
    values = field_of(vector, "values")
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise UpstreamUnavailable(200, "the upstream sent an invalid response")
    return [float(v) for v in values]


def _encoded(values: list[float], *, as_base64: bool) -> list[float] | str:
    if not as_base64:
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
