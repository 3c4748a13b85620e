"""`python -m services.billing`: run the billing service until SIGTERM."""

from __future__ import annotations

import asyncio

from services.billing.config import Settings
from services.billing.server import serve
from services.common.logging import configure_logging


def main() -> None:
    """Read settings, configure logging, serve."""
    settings = Settings.from_env()
    configure_logging("billing", settings.log_level)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
