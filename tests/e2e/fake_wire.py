"""OpenAI wire-format answers of the fake upstream: bodies, stream events, audio and images.

Pure functions of the request's fields, so tests can compute what the fake sent.
"""

from __future__ import annotations

import base64
import io
import struct
import time
import wave
from collections.abc import Iterator
from typing import Any

import orjson

REPLY_WORDS = ["Fake", " upstream", " says", " hi", "."]
REPLY_TEXT = "".join(REPLY_WORDS)
PROMPT_TOKENS = 11
EMBEDDING_TOKENS_PER_INPUT = 3
DEFAULT_DIMENSIONS = 8
TRANSCRIPT = "Fake transcript of the audio."
AUDIO_DURATION_S = 2.5
WAV_RATE_HZ = 8000
# A 1x1 transparent PNG.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
SPEECH_CHUNKS = 4
SPEECH_CHUNK = b"ID3" + bytes(range(61))  # 64 bytes per chunk, an mp3-ish prefix
AUDIO_TYPES = {
    "mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm",
}

Json = dict[str, Any]


def event(data: Json, name: str | None = None) -> bytes:
    """One server-sent event, named or not."""
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def usage(completion_tokens: int = len(REPLY_WORDS)) -> Json:
    """The token usage every text answer reports."""
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion_tokens,
            "total_tokens": PROMPT_TOKENS + completion_tokens}


def error_body(status: int) -> Json:
    """The OpenAI error envelope the fake answers `status` with."""
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 429: "rate_limit_error"}
    return {"error": {"message": f"fake upstream error {status}",
                      "type": kinds.get(status, "server_error"),
                      "param": "messages" if status == 400 else None,
                      "code": "fake_error"}}


# --- chat and legacy completions -------------------------------------------------------


def chat_completion(model: str) -> Json:
    """A whole chat.completion."""
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_fake", "choices": [{
                "index": 0, "finish_reason": "stop", "logprobs": None,
                "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None}}],
            "usage": usage()}


def chat_chunks(model: str, words: list[str], include_usage: bool) -> Iterator[Json]:
    """The chunks of a streamed chat completion: role, one per word, finish, usage."""
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_fake"}
    if include_usage:
        base["usage"] = None
    deltas: list[Json] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": w} for w in words]
    for delta in deltas:
        yield {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                "finish_reason": "stop"}]}
    if include_usage:
        yield {**base, "choices": [], "usage": usage(len(words))}


def text_completion(model: str) -> Json:
    """A whole legacy text_completion."""
    return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": [{"text": REPLY_TEXT, "index": 0, "logprobs": None,
                                         "finish_reason": "stop"}],
            "usage": usage()}


def text_completion_chunks(model: str, words: list[str], include_usage: bool) -> Iterator[Json]:
    """The chunks of a streamed legacy completion: one per word, finish, usage."""
    base = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": model}
    for word in words:
        yield {**base, "choices": [{"text": word, "index": 0, "logprobs": None,
                                    "finish_reason": None}]}
    yield {**base, "choices": [{"text": "", "index": 0, "logprobs": None,
                                "finish_reason": "stop"}]}
    if include_usage:
        yield {**base, "choices": [], "usage": usage(len(words))}


# --- embeddings and images ---------------------------------------------------------------


def embedding_inputs(value: Any) -> int:
    """How many inputs an `input` holds (a string, strings, tokens, token arrays)."""
    if isinstance(value, list) and value and isinstance(value[0], (str, list)):
        return len(value)
    return 1


def embeddings(model: str, inputs: int, dimensions: int | None, encoding: str | None) -> Json:
    """An embedding list; vector i is [i, i+0.5, ...] so tests can check its order."""
    size = dimensions or DEFAULT_DIMENSIONS
    data = []
    for index in range(inputs):
        vector = [index + k / 2 for k in range(size)]
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = inputs * EMBEDDING_TOKENS_PER_INPUT
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def images(n: int, response_format: str | None) -> Json:
    """`n` images as URLs or base64 PNGs."""
    data: list[Json] = []
    for index in range(n):
        if response_format == "b64_json":
            data.append({"b64_json": base64.b64encode(PNG_1X1).decode(),
                         "revised_prompt": "a fake picture"})
        else:
            data.append({"url": f"https://images.fake.test/{index}.png",
                         "revised_prompt": "a fake picture"})
    return {"created": int(time.time()), "data": data}


# --- audio ---------------------------------------------------------------------------------


def transcript(response_format: str | None, task: str) -> tuple[bytes, str]:
    """The body and content type of a transcription or translation in `response_format`."""
    if response_format in (None, "", "json"):
        return orjson.dumps({"text": TRANSCRIPT}), "application/json"
    if response_format == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": AUDIO_DURATION_S,
                   "text": TRANSCRIPT, "tokens": [1, 2, 3], "temperature": 0.0,
                   "avg_logprob": -0.1, "compression_ratio": 1.0, "no_speech_prob": 0.0}
        return orjson.dumps({"task": task, "language": "english",
                             "duration": AUDIO_DURATION_S, "text": TRANSCRIPT,
                             "segments": [segment]}), "application/json"
    if response_format == "srt":
        return f"1\n00:00:00,000 --> 00:00:02,500\n{TRANSCRIPT}\n\n".encode(), "text/plain"
    if response_format == "vtt":
        return f"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{TRANSCRIPT}\n\n".encode(), "text/plain"
    return f"{TRANSCRIPT}\n".encode(), "text/plain"


def wav(seconds: float) -> bytes:
    """A silent 8 kHz 8-bit mono WAV file lasting `seconds`."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(WAV_RATE_HZ)
        writer.writeframes(b"\x80" * int(seconds * WAV_RATE_HZ))
    return out.getvalue()


def speech_type(response_format: str | None) -> str:
    """The content type of speech audio in `response_format` (mp3 by default)."""
    return AUDIO_TYPES.get(response_format or "mp3", "application/octet-stream")


# --- responses -----------------------------------------------------------------------------


def response_object(model: str, status: str, words: list[str]) -> Json:
    """A `response` object; `words` is the output text so far."""
    text = "".join(words)
    message = {"type": "message", "id": "msg_fake", "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": [],
                            "logprobs": []}]}
    body: Json = {
        "id": "resp_fake", "object": "response", "created_at": int(time.time()),
        "status": status, "model": model, "output": [message] if words else [],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
        "incomplete_details": None, "instructions": None, "metadata": {},
        "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}},
        "usage": None,
    }
    if status == "completed":
        body["usage"] = {"input_tokens": PROMPT_TOKENS, "output_tokens": len(words),
                         "total_tokens": PROMPT_TOKENS + len(words),
                         "input_tokens_details": {"cached_tokens": 0},
                         "output_tokens_details": {"reasoning_tokens": 0}}
    return body


def response_events(model: str, words: list[str]) -> Iterator[tuple[str, Json]]:
    """The named events of a streamed response, `response.created` to `response.completed`."""
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    item = {"type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant",
            "content": []}
    at = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
    events: list[tuple[str, Json]] = [
        ("response.created", {"response": response_object(model, "in_progress", [])}),
        ("response.in_progress", {"response": response_object(model, "in_progress", [])}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.content_part.added", {**at, "part": part}),
    ]
    events += [("response.output_text.delta", {**at, "delta": w, "logprobs": []}) for w in words]
    done_part = {**part, "text": "".join(words)}
    done = response_object(model, "completed", words)
    events += [
        ("response.output_text.done", {**at, "text": "".join(words), "logprobs": []}),
        ("response.content_part.done", {**at, "part": done_part}),
        ("response.output_item.done", {"output_index": 0, "item": done["output"][0]}),
        ("response.completed", {"response": done}),
    ]
    for sequence, (name, data) in enumerate(events):
        yield name, {"type": name, "sequence_number": sequence, **data}
