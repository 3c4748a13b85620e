"""`POST /v1/audio/transcriptions` (multipart), billed by the audio's seconds.

The answer's content type is passed through (JSON, or text/plain for text, srt, vtt).
"""

from __future__ import annotations

from aiohttp import web

from edge.endpoints import AUDIO_TRANSCRIPTIONS
from edge.estimate import estimate_audio
from edge.flow import Job, form_body, run
from edge.openai.audio import TranscriptionForm
from edge.openai.forms import form_digest, read_form, validate_form

routes = web.RouteTableDef()


@routes.post("/v1/audio/transcriptions")
async def create_transcription(request: web.Request) -> web.StreamResponse:
    """Transcribe the uploaded audio for the authenticated key."""
    body, content_type = await form_body(request)
    form = read_form(body, content_type)
    transcription = validate_form(TranscriptionForm, form)
    estimate = estimate_audio(transcription.file.data)
    job = Job(AUDIO_TRANSCRIPTIONS, transcription.model, body, content_type, False,
              lambda _model: estimate, digest=form_digest(form))
    return await run(request, job)
