"""`python -m bench [--quick] [--out DIR] [--direct-only] [--strict]`: see bench/README.md."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from bench.run import Options, main

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turned into an exception so every `finally` runs and all children are stopped.
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None = None) -> Options:
    """The command line as Options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Gateway-added latency and max throughput, against a mock upstream.",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per phase")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"directory for the JSON and Markdown reports (default {DEFAULT_OUT})")
    parser.add_argument("--direct-only", action="store_true",
                        help="measure the mock upstream alone (no gateway)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a budget is missed")
    args = parser.parse_args(argv)
    return Options(quick=args.quick, out=args.out, direct_only=args.direct_only,
                   strict=args.strict)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        sys.exit(main(parse_args()))
    except KeyboardInterrupt:
        print("bench: interrupted; children stopped", file=sys.stderr)
        sys.exit(130)
