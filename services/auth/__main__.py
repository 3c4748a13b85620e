"""`python -m services.auth`: read settings, configure logging, serve."""

from __future__ import annotations

import asyncio

from services.auth.config import Settings
from services.auth.server import serve
from services.common.logging import configure_logging


def main() -> None:
    """Run the auth service until SIGTERM/SIGINT."""
    settings = Settings.from_env()
    configure_logging("auth", settings.log_level)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
