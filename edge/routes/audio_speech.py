"""`POST /v1/audio/speech`: binary audio streamed through, billed per input character.

The audio always streams (headers go out with the first audio bytes), so the request
is never replayable and ignores Idempotency-Key.
"""

from __future__ import annotations

from aiohttp import web

from edge.endpoints import AUDIO_SPEECH
from edge.estimate import estimate_speech
from edge.flow import JSON, Job, json_body, run
from edge.openai.audio import SpeechRequest
from edge.openai.validation import parse_body

routes = web.RouteTableDef()


@routes.post("/v1/audio/speech")
async def create_speech(request: web.Request) -> web.StreamResponse:
    """Speak the input for the authenticated key."""
    body = await json_body(request)
    speech = parse_body(SpeechRequest, body)
    estimate = estimate_speech(speech.input)
    job = Job(AUDIO_SPEECH, speech.model, body, JSON, True, lambda _model: estimate)
    return await run(request, job)
