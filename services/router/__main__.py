"""`python -m services.router`: read settings, configure logging, serve."""

from __future__ import annotations

import os

from services.common.logging import configure_logging
from services.common.runner import run
from services.router.config import Settings
from services.router.server import serve


def main() -> None:
    """Run the router until a shutdown signal."""
    settings = Settings.from_env(os.environ)
    configure_logging("router", settings.log_level)
    run(serve(settings))


if __name__ == "__main__":
    main()
