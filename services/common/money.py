"""Exact conversions between USD decimal strings and integer nano-USD."""

from __future__ import annotations

import re

NANOS_PER_USD = 1_000_000_000
_USD = re.compile(r"^(-?)(\d+)(?:\.(\d{1,9}))?$")


def usd_to_nanos(text: str) -> int:
    """Parse "12.5" or "0.000000001" into nano-USD; more than 9 decimals is an error."""
    match = _USD.match(text.strip().lstrip("$"))
    if match is None:
        raise ValueError(f"not a USD amount with at most 9 decimals: {text!r}")
    sign, whole, frac = match.groups()
    nanos = int(whole) * NANOS_PER_USD + int((frac or "").ljust(9, "0"))
    return -nanos if sign else nanos


def nanos_to_usd(nanos: int) -> str:
    """Render nano-USD exactly with 9 decimals, for example 4999873250 -> "4.999873250"."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    return f"{sign}{whole}.{frac:09d}"
