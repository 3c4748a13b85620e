"""HTTP routes, one module per endpoint."""

from __future__ import annotations

from aiohttp import web

from edge.routes import chat_completions, health, models, unsupported


def setup_routes(app: web.Application) -> None:
    """Register every route table on `app`."""
    app.router.add_routes(chat_completions.routes)
    app.router.add_routes(models.routes)
    app.router.add_routes(health.routes)
    app.router.add_routes(unsupported.routes)
