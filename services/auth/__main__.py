"""`python -m services.auth`: read settings, configure logging, serve."""

from __future__ import annotations

from services.auth.config import Settings
from services.auth.server import serve
from services.common.logging import configure_logging
from services.common.runner import run


def main() -> None:
    """Run the auth service until SIGTERM/SIGINT."""
    settings = Settings.from_env()
    configure_logging("auth", settings.log_level)
    run(serve(settings))


if __name__ == "__main__":
    main()
