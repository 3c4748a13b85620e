"""Unit maps ({unit: integer}) as JSON text columns, the same on SQLite and PostgreSQL.

A hold keeps its tariff's unit prices and a usage record its unit quantities in one
text column each: sorted keys and no spaces, so equal maps are equal strings, and most
rows (token-only requests) hold just "{}", read back without parsing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

EMPTY = "{}"
_NONE: Mapping[str, int] = MappingProxyType({})


def dump_units(units: Mapping[str, int]) -> str:
    """The column text of `units`."""
    if not units:
        return EMPTY
    return json.dumps(dict(units), sort_keys=True, separators=(",", ":"))


def load_units(text: str) -> Mapping[str, int]:
    """The map stored as `text`; ValueError when the column holds anything else."""
    if text == EMPTY:
        return _NONE
    raw = json.loads(text)
    if not isinstance(raw, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in raw.values()
    ):
        raise ValueError("a unit column must hold a JSON object of integers")
    return MappingProxyType(dict(sorted(raw.items())))
