"""A relayed request (every OpenAI endpoint but chat), parsed once into what routing needs.

The body stays the client's bytes; the router reads from it only what it decides on or
counts with: the model, the stream flag, and the texts and fields usage is estimated
from when the upstream reports none.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from services.common.multipart import Form, MultipartError, parse_form
from services.common.tokens import estimate_tokens
from services.router.errors import InvalidRelayRequest

_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})


class Operation(enum.Enum):
    """An OpenAI endpoint the router relays; the value is its metrics label."""

    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    IMAGE_GENERATIONS = "image_generations"
    IMAGE_EDITS = "image_edits"
    AUDIO_TRANSCRIPTIONS = "audio_transcriptions"
    AUDIO_TRANSLATIONS = "audio_translations"
    AUDIO_SPEECH = "audio_speech"
    RESPONSES = "responses"

    @property
    def path(self) -> str:
        """The endpoint's path below an OpenAI-compatible base URL."""
        return _PATHS[self]

    @property
    def multipart(self) -> bool:
        """True when the client sends multipart/form-data (else JSON)."""
        return self in _MULTIPART

    @property
    def events(self) -> bool:
        """True when a streamed answer is server-sent events (else binary audio)."""
        return self in _EVENTS


_PATHS = {
    Operation.COMPLETIONS: "/completions",
    Operation.EMBEDDINGS: "/embeddings",
    Operation.IMAGE_GENERATIONS: "/images/generations",
    Operation.IMAGE_EDITS: "/images/edits",
    Operation.AUDIO_TRANSCRIPTIONS: "/audio/transcriptions",
    Operation.AUDIO_TRANSLATIONS: "/audio/translations",
    Operation.AUDIO_SPEECH: "/audio/speech",
    Operation.RESPONSES: "/responses",
}
_MULTIPART = frozenset({Operation.IMAGE_EDITS, Operation.AUDIO_TRANSCRIPTIONS,
                        Operation.AUDIO_TRANSLATIONS})
_EVENTS = frozenset({Operation.COMPLETIONS, Operation.RESPONSES})
STREAMED = frozenset({Operation.COMPLETIONS, Operation.RESPONSES, Operation.AUDIO_SPEECH})


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """A parsed relayed request.

    `payload` is the JSON body parsed (empty for multipart), read-only; `form` is the
    multipart body parsed (None for JSON). Both serve reading and rewriting the model;
    the bytes sent upstream are `body` unless the model or the usage option must change.
    """

    request_id: str
    operation: Operation
    model: str
    body: bytes
    content_type: str
    payload: Mapping[str, Any]
    form: Form | None
    stream: bool
    include_usage: bool

    def field(self, name: str) -> str | None:
        """A string field of the JSON body or a plain field of the form (None if absent)."""
        if self.form is not None:
            return self.form.field(name)
        value = self.payload.get(name)
        return value if isinstance(value, str) else None

    def prompt_text(self) -> str:
        """The text the client asks about: prompt, input or instructions plus input."""
        texts, _ = _inputs(self)
        return "\n".join(texts)

    def estimated_input_tokens(self) -> int:
        """The input's token estimate: texts estimated, token arrays counted."""
        texts, tokens = _inputs(self)
        return sum(estimate_tokens(text) for text in texts) + tokens


def parse_relay_request(
    operation: Operation, body: bytes, content_type: str, model: str, request_id: str,
    *, stream: bool,
) -> RelayRequest:
    """Parse and check a client body; raise InvalidRelayRequest when it is malformed."""
    if not model:
        raise InvalidRelayRequest("model is required")
    if stream and operation not in STREAMED:
        raise InvalidRelayRequest(f"{operation.value} does not stream")
    payload, form = _parse_body(operation, body, content_type)
    sent_model = form.field("model") if form is not None else payload.get("model")
    if sent_model != model:
        raise InvalidRelayRequest("model of the envelope and of the body differ")
    if operation in _EVENTS and (payload.get("stream") is True) != stream:
        raise InvalidRelayRequest("stream of the body does not match the call")
    options = payload.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return RelayRequest(
        request_id=request_id,
        operation=operation,
        model=model,
        body=body,
        content_type=content_type,
        payload=payload,
        form=form,
        stream=stream,
        include_usage=stream and include_usage,
    )


def _parse_body(
    operation: Operation, body: bytes, content_type: str
) -> tuple[Mapping[str, Any], Form | None]:
    if operation.multipart:
        try:
            return _NO_FIELDS, parse_form(body, content_type)
        except MultipartError as exc:
            raise InvalidRelayRequest(f"body is not valid multipart/form-data: {exc}") from exc
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRelayRequest("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidRelayRequest("body must be a JSON object")
    return payload, None


def _inputs(request: RelayRequest) -> tuple[list[str], int]:
    """The input's texts and its count of tokens given as token ids."""
    operation = request.operation
    if operation is Operation.COMPLETIONS:
        return _texts_or_tokens(request.payload.get("prompt"))
    if operation is Operation.EMBEDDINGS:
        return _texts_or_tokens(request.payload.get("input"))
    if operation is Operation.RESPONSES:
        texts = _response_texts(request.payload.get("input"))
        instructions = request.payload.get("instructions")
        return ([instructions, *texts] if isinstance(instructions, str) else texts), 0
    name = "input" if operation is Operation.AUDIO_SPEECH else "prompt"
    text = request.field(name)
    return ([text] if text else []), 0


def _texts_or_tokens(value: Any) -> tuple[list[str], int]:
    """A string, a list of strings, a token array or a list of token arrays."""
    if isinstance(value, str):
        return [value], 0
    if not isinstance(value, list):
        return [], 0
    if value and all(isinstance(v, int) for v in value):
        return [], len(value)
    texts = [v for v in value if isinstance(v, str)]
    tokens = sum(len(v) for v in value if isinstance(v, list))
    return texts, tokens


def _response_texts(value: Any) -> list[str]:
    """The texts of a Responses `input`: a string, or items with string or part content."""
    if isinstance(value, str):
        return [value]
    texts: list[str] = []
    for item in value if isinstance(value, list) else ():
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return texts
