"""HTTP routes, one module per endpoint."""

from __future__ import annotations

from aiohttp import web

from edge.routes import (
    audio_speech,
    audio_transcriptions,
    audio_translations,
    chat_completions,
    completions,
    embeddings,
    health,
    images_edits,
    images_generations,
    models,
    openapi,
    redeem,
    responses,
    unsupported,
)

_TABLES = (
    chat_completions, completions, embeddings, images_generations, images_edits,
    audio_transcriptions, audio_translations, audio_speech, responses, models, health,
    openapi, redeem, unsupported,
)


def setup_routes(app: web.Application) -> None:
    """Register every route table on `app`."""
    for module in _TABLES:
        app.router.add_routes(module.routes)
