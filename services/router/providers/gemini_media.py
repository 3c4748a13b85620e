"""OpenAI `/v1/images/generations` on Gemini, and the generateContent call the media
endpoints share.

Two kinds of model make images: Imagen (`imagen-*`) through `models/<m>:predict`
(`instances[0].prompt`, `parameters.sampleCount` / `aspectRatio`, answered with
`predictions[].bytesBase64Encoded`), and Gemini image models (`gemini-*-image*`,
"Nano Banana") through generateContent with `responseModalities: ["IMAGE"]` and
`imageConfig.aspectRatio`, one call per image asked for (they answer one image a
call). Google returns image bytes only, so the answer is always `b64_json`: a client
asking for `response_format: url` gets a 400 naming it (a `data:` URL would be a URL no
client can fetch, and pasted into a page it is the whole image again). `size` becomes
the nearest aspect ratio the model offers, or a 400 naming `size` when none is close.
The usage is `image/<size>/<quality>` units, one per image returned (`relay_usage`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from services.router.errors import UpstreamRejected, UpstreamUnavailable
from services.router.providers.base import RelayAnswer, RelayAttempt, field_of, loads_or_none
from services.router.providers.gemini_http import GeminiHTTP
from services.router.providers.http import transport_errors
from services.router.providers.relay_usage import answer_usage

JSON = "application/json"
UNREACHABLE = "the upstream is unreachable"
INVALID = "the upstream sent an invalid response"
MAX_IMAGES = 4  # Imagen's largest sampleCount; Gemini image calls are capped alike
# Aspect ratios each kind of model accepts (Google's documented lists).
IMAGEN_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
# A size maps to a ratio within this relative distance (1792x1024 is 16:9 within 1.6%).
RATIO_TOLERANCE = 0.05
# Finish reasons that mean Google withheld the output for its content policy.
REFUSALS = frozenset({"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY",
                      "IMAGE_PROHIBITED_CONTENT", "RECITATION"})
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


async def generate(http: GeminiHTTP, attempt: RelayAttempt, body: dict[str, Any],
                   method: str = "generateContent") -> Any:
    """POST `body` to the attempt's model and return the parsed answer."""
    with transport_errors(UNREACHABLE):
        response = await http.post(attempt.upstream_model, method, orjson.dumps(body),
                                    attempt.request.request_id, attempt.timeout_s)
        return loads_or_none(await http.read(response))


def candidate_parts(answer: Any, param: str) -> list[Any]:
    """The first candidate's parts; a 400 `content_filter` (on `param`) when refused."""
    reason = field_of(field_of(answer, "promptFeedback"), "blockReason")
    candidates = field_of(answer, "candidates")
    if isinstance(reason, str) and reason and not candidates:
        raise content_filter(reason, param)
    candidate = candidates[0] if isinstance(candidates, list) and candidates else None
    if not isinstance(candidate, dict):
        raise UpstreamUnavailable(200, INVALID)
    parts = field_of(candidate.get("content"), "parts")
    finish = candidate.get("finishReason")
    if not parts and isinstance(finish, str) and finish in REFUSALS:
        raise content_filter(finish, param)
    return parts if isinstance(parts, list) else []


def inline_data(parts: list[Any], mime_prefix: str) -> list[tuple[str, str]]:
    """(mimeType, base64 data) of every inline-data part whose type starts so."""
    found = []
    for part in parts:
        blob = field_of(part, "inlineData")
        mime, data = field_of(blob, "mimeType"), field_of(blob, "data")
        if isinstance(mime, str) and mime.startswith(mime_prefix) and isinstance(data, str):
            found.append((mime, data))
    return found


def content_filter(reason: str, param: str) -> UpstreamRejected:
    """The client's error for a request Google's content filter refused."""
    return UpstreamRejected(400, f"the request was blocked by the upstream's content filter "
                            f"({reason})", error_type="invalid_request_error",
                            code="content_filter", param=param)


def rejected(message: str, param: str) -> UpstreamRejected:
    """A 400 invalid_request_error about the client's field `param`."""
    return UpstreamRejected(400, message, error_type="invalid_request_error", param=param)


async def relay_images(http: GeminiHTTP, attempt: RelayAttempt) -> RelayAnswer:
    """Generate the asked images and answer as OpenAI does, with b64_json items."""
    request = attempt.request
    prompt = request.field("prompt")
    if not prompt:
        raise rejected("prompt is required", "prompt")
    if request.field("response_format") not in (None, "b64_json"):
        raise rejected("this model returns images as b64_json only; "
                       "set response_format to b64_json", "response_format")
    count = _count(request.payload.get("n"))
    imagen = attempt.upstream_model.removeprefix("models/").startswith("imagen")
    ratio = aspect_ratio(request.field("size"), IMAGEN_RATIOS if imagen else GEMINI_RATIOS)
    if imagen:
        images = await _imagen(http, attempt, prompt, count, ratio)
    else:
        images = await _gemini_images(http, attempt, prompt, count, ratio)
    data = [{"b64_json": data} for _, data in images]
    result: dict[str, Any] = {"created": int(time.time()), "data": data}
    kind = _FORMATS.get(images[0][0]) if images else None
    if kind is not None:
        result["output_format"] = kind
    body = orjson.dumps(result)
    usage, _ = answer_usage(request, body, JSON)
    # The count of images comes from Google's answer: the units are reported.
    return RelayAnswer(body, JSON, usage, reported=True)


def imagen_body(prompt: str, count: int, ratio: str | None) -> dict[str, Any]:
    """The `:predict` body of an Imagen request."""
    parameters: dict[str, Any] = {"sampleCount": count}
    if ratio is not None:
        parameters["aspectRatio"] = ratio
    return {"instances": [{"prompt": prompt}], "parameters": parameters}


def gemini_image_body(prompt: str, ratio: str | None) -> dict[str, Any]:
    """The generateContent body asking a Gemini image model for one image."""
    config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    if ratio is not None:
        config["imageConfig"] = {"aspectRatio": ratio}
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": config}


def aspect_ratio(size: str | None, ratios: tuple[str, ...]) -> str | None:
    """The offered ratio nearest to `size` ("WxH"); None for auto; a 400 when none is near."""
    if size in (None, "", "auto"):
        return None
    width, _, height = (size or "").partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
        raise rejected(f"size must be WIDTHxHEIGHT or auto, not {size!r}", "size")
    wanted = int(width) / int(height)

    def distance(ratio: str) -> float:
        w, _, h = ratio.partition(":")
        return abs(int(w) / int(h) - wanted) / wanted

    nearest = min(ratios, key=distance)
    if distance(nearest) > RATIO_TOLERANCE:
        raise rejected(f"size {size} has no matching aspect ratio on this model (offered: "
                       f"{', '.join(ratios)})", "size")
    return nearest


async def _imagen(http: GeminiHTTP, attempt: RelayAttempt, prompt: str, count: int,
                  ratio: str | None) -> list[tuple[str, str]]:
    answer = await generate(http, attempt, imagen_body(prompt, count, ratio), "predict")
    predictions = field_of(answer, "predictions")
    if predictions is None:
        # Google leaves out `predictions` when its filter dropped every image.
        raise content_filter("every image was filtered", "prompt")
    if not isinstance(predictions, list):
        raise UpstreamUnavailable(200, INVALID)
    images = []
    for prediction in predictions:
        data = field_of(prediction, "bytesBase64Encoded")
        mime = field_of(prediction, "mimeType")
        if isinstance(data, str) and data:
            images.append((mime if isinstance(mime, str) else "image/png", data))
    if not images:
        reason = next((r for p in predictions if isinstance(
            r := field_of(p, "raiFilteredReason"), str)), "every image was filtered")
        raise content_filter(reason, "prompt")
    return images


async def _gemini_images(http: GeminiHTTP, attempt: RelayAttempt, prompt: str, count: int,
                         ratio: str | None) -> list[tuple[str, str]]:
    body = gemini_image_body(prompt, ratio)
    calls = [asyncio.ensure_future(generate(http, attempt, body)) for _ in range(count)]
    try:
        # gather raises the first failure as it is (a TaskGroup would wrap it).
        answers = await asyncio.gather(*calls)
    finally:
        for call in calls:
            call.cancel()
    images = []
    for answer in answers:
        found = inline_data(candidate_parts(answer, "prompt"), "image/")
        if not found:
            raise UpstreamUnavailable(200, "the upstream answered without an image")
        images.append(found[0])
    return images


def _count(value: Any) -> int:
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_IMAGES:
        raise rejected(f"n must be an integer from 1 to {MAX_IMAGES} on this model", "n")
    return value
