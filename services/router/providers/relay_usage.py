"""The usage of relayed requests, per operation, read from the upstream's answer.

- completions: `usage` tokens; else the prompt's estimate plus the answer's text.
- embeddings: `usage.prompt_tokens`; else the input's estimate. Never completion tokens.
- images (generations, edits): one `image/<size>/<quality>` unit per item of `data`,
  size and quality as the request asked. No tokens.
- transcriptions, translations: `audio_second` units, the upstream's `duration` (or
  `usage.seconds`) rounded up; else (text, srt, vtt answers) the length of the file sent.
- speech: one `character` unit per character of `input` (Python string length), once
  audio started. No tokens.
- responses: `usage` input / output tokens, cached and reasoning ones; else the input's
  estimate plus the delivered `output_text`.
A usage is "reported" when its counts come from the upstream's answer, and estimated
when the router counted them from the request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from services.common.tokens import estimate_tokens
from services.common.units import AUDIO_SECOND, CHARACTER, audio_seconds, image_unit
from services.router.errors import UpstreamUnavailable
from services.router.providers.base import (
    NO_UNITS,
    Usage,
    count_of,
    field_of,
    loads_or_none,
    usage_from_json,
)
from services.router.relay_request import Operation, RelayRequest

_IMAGES = frozenset({Operation.IMAGE_GENERATIONS, Operation.IMAGE_EDITS})
_AUDIO_IN = frozenset({Operation.AUDIO_TRANSCRIPTIONS, Operation.AUDIO_TRANSLATIONS})


def answer_usage(request: RelayRequest, body: bytes, content_type: str) -> tuple[Usage, bool]:
    """The usage of a whole answer and whether the upstream reported it.

    Raises UpstreamUnavailable when an endpoint that answers JSON sent something else.
    """
    operation = request.operation
    if operation is Operation.AUDIO_SPEECH:
        return speech_usage(request), False
    if operation in _AUDIO_IN:
        return _audio_usage(request, body, content_type)
    answer = _json_object(body)
    if operation in _IMAGES:
        data = answer.get("data")
        if not isinstance(data, list):
            raise UpstreamUnavailable(200, "the upstream sent an invalid response")
        unit = image_unit(request.field("size"), request.field("quality"))
        return Usage(0, 0, units={unit: len(data)} if data else NO_UNITS), True
    if operation is Operation.EMBEDDINGS:
        prompt = count_of(field_of(answer.get("usage"), "prompt_tokens"))
        if prompt:
            return Usage(prompt, 0), True
        return Usage(request.estimated_input_tokens(), 0), False
    if operation is Operation.RESPONSES:
        usage = responses_usage(answer.get("usage"))
        texts = _response_output_texts(answer.get("output"))
    else:
        usage = usage_from_json(answer.get("usage"))
        texts = _completion_texts(answer.get("choices"))
    if usage is not None:
        return usage, True
    return stream_estimate(request, texts, delivered=True), False


def stream_estimate(request: RelayRequest, texts: Sequence[str], *, delivered: bool) -> Usage:
    """The usage counted by the router: the input's estimate plus the delivered texts."""
    if request.operation is Operation.AUDIO_SPEECH:
        return speech_usage(request) if delivered else Usage(0, 0)
    completion = max(estimate_tokens("".join(texts)), len(texts))
    return Usage(request.estimated_input_tokens(), completion)


def speech_usage(request: RelayRequest) -> Usage:
    """One `character` unit per character of the speech input."""
    text = request.field("input") or ""
    return Usage(0, 0, units={CHARACTER: len(text)} if text else NO_UNITS)


def responses_usage(raw: Any) -> Usage | None:
    """The Usage of a Responses `usage` object, or None when there is none."""
    if not isinstance(raw, dict):
        return None
    return Usage(
        prompt_tokens=count_of(raw.get("input_tokens")),
        completion_tokens=count_of(raw.get("output_tokens")),
        cached_prompt_tokens=count_of(field_of(raw.get("input_tokens_details"), "cached_tokens")),
        reasoning_tokens=count_of(
            field_of(raw.get("output_tokens_details"), "reasoning_tokens")),
    )


def _audio_usage(request: RelayRequest, body: bytes, content_type: str) -> tuple[Usage, bool]:
    if content_type.lower().startswith("application/json"):
        seconds = _reported_seconds(loads_or_none(body))
        if seconds:
            return Usage(0, 0, units={AUDIO_SECOND: seconds}), True
    file = request.form.file("file") if request.form is not None else None
    if file is None or not file.data:
        return Usage(0, 0), False
    return Usage(0, 0, units={AUDIO_SECOND: audio_seconds(file.data)}), False


def _reported_seconds(answer: Any) -> int:
    """Started seconds from verbose_json's `duration` or a `duration` usage; 0 if none."""
    usage = field_of(answer, "usage")
    by_usage = field_of(usage, "seconds") if field_of(usage, "type") == "duration" else None
    for value in (field_of(answer, "duration"), by_usage):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return math.ceil(value)
    return 0


def _json_object(body: bytes) -> dict[str, Any]:
    answer = loads_or_none(body)
    if not isinstance(answer, dict):
        raise UpstreamUnavailable(200, "the upstream sent an invalid response")
    return answer


def _completion_texts(choices: Any) -> list[str]:
    return [c["text"] for c in choices if isinstance(c, dict) and isinstance(c.get("text"), str)
            ] if isinstance(choices, list) else []


def _response_output_texts(output: Any) -> list[str]:
    texts: list[str] = []
    for item in output if isinstance(output, list) else ():
        content = field_of(item, "content")
        for part in content if isinstance(content, list) else ():
            if field_of(part, "type") == "output_text" and isinstance(field_of(part, "text"), str):
                texts.append(part["text"])
    return texts
