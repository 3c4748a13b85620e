"""`python -m edge`: settings, logging, run (uvloop when importable)."""

from __future__ import annotations

from aiohttp import web

from edge.app import create_app
from edge.config import Settings
from services.common.logging import configure_logging
from services.common.runner import new_event_loop, tune_gc


def main() -> None:
    """Serve until SIGTERM/SIGINT, then drain within EDGE_SHUTDOWN_GRACE_S."""
    settings = Settings.from_env()
    configure_logging("edge", settings.log_level)
    app = create_app(settings)
    tune_gc()
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace_s,
        print=None,
        loop=new_event_loop(),
    )


if __name__ == "__main__":
    main()
