"""What differs between the OpenAI endpoints once a request is validated.

Each Endpoint says which router operation serves it, how its stream is written, and how
it is billed when the router never reports usage (see edge.settlement.Metering).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.delivered import (
    TextReader,
    completion_event_texts,
    completion_texts,
    delta_texts,
    message_texts,
    no_texts,
    response_event_texts,
    response_texts,
)
from edge.domain import Operation
from edge.outcome import UnitsBilled
from edge.stream_formats import (
    AUDIO_STREAM,
    CHAT_STREAM,
    COMPLETIONS_STREAM,
    RESPONSES_STREAM,
    StreamFormat,
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One OpenAI endpoint as the shared request flow (edge.flow) needs it."""

    operation: Operation
    stream_format: StreamFormat | None = None  # None: never streamed
    chunk_texts: TextReader = no_texts  # generated text of one delivered stream piece
    body_texts: TextReader = no_texts  # generated text of a non-streaming answer
    units_billed: UnitsBilled = UnitsBilled.ON_DELIVERY


CHAT = Endpoint(Operation.CHAT, CHAT_STREAM, delta_texts, message_texts)
COMPLETIONS = Endpoint(
    Operation.COMPLETIONS, COMPLETIONS_STREAM, completion_event_texts, completion_texts
)
EMBEDDINGS = Endpoint(Operation.EMBEDDINGS)
IMAGE_GENERATIONS = Endpoint(Operation.IMAGE_GENERATIONS)
IMAGE_EDITS = Endpoint(Operation.IMAGE_EDITS)
# The upstream has heard the audio once the router sent it, answer or not.
AUDIO_TRANSCRIPTIONS = Endpoint(
    Operation.AUDIO_TRANSCRIPTIONS, units_billed=UnitsBilled.ON_CALL
)
AUDIO_TRANSLATIONS = Endpoint(Operation.AUDIO_TRANSLATIONS, units_billed=UnitsBilled.ON_CALL)
AUDIO_SPEECH = Endpoint(Operation.AUDIO_SPEECH, AUDIO_STREAM)
RESPONSES = Endpoint(
    Operation.RESPONSES, RESPONSES_STREAM, response_event_texts, response_texts
)
