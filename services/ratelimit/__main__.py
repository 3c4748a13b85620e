"""`python -m services.ratelimit`: run the rate-limit service."""

from __future__ import annotations

from services.common.logging import configure_logging
from services.common.runner import run
from services.ratelimit.config import Settings
from services.ratelimit.server import serve


def main() -> None:
    """Read settings, configure logging, serve until a signal."""
    settings = Settings.from_env()
    configure_logging("ratelimit", settings.log_level)
    run(serve(settings))


if __name__ == "__main__":
    main()
