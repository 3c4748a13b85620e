"""`python -m services.billing`: run the billing service until SIGTERM."""

from __future__ import annotations

from services.billing.config import Settings
from services.billing.server import serve
from services.common.logging import configure_logging
from services.common.runner import run


def main() -> None:
    """Read settings, configure logging, serve."""
    settings = Settings.from_env()
    configure_logging("billing", settings.log_level)
    run(serve(settings))


if __name__ == "__main__":
    main()
