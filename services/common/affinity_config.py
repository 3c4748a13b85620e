"""The `affinity:` section of apirelay.yaml: prompt-cache affinity in the router.

    affinity:
      enabled: true        # default true
      ttl_s: 300           # how long a (channel, key) stays remembered after it last served
      prefix_chars: 2048   # how much of the prompt's start identifies a prompt
      max_entries: 100000  # the memory bound (least recently used entries go first)

See services/router/affinity.py for what a prompt's identity is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.gateway_models import ConfigError, flag, int_at_least

FIELDS = ("enabled", "ttl_s", "prefix_chars", "max_entries")


@dataclass(frozen=True, slots=True)
class AffinityConfig:
    """Whether requests of one account and prompt stick to one target, and for how long."""

    enabled: bool = True
    ttl_s: float = 300.0
    prefix_chars: int = 2048
    max_entries: int = 100_000


def parse_affinity(raw: Any, where: str) -> AffinityConfig:
    """The `affinity:` mapping (None: the defaults), else ConfigError naming the bad field."""
    if raw is None:
        return AffinityConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(FIELDS)}")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown option {unknown[0]!r}")
    defaults = AffinityConfig()
    enabled = flag(raw.get("enabled", defaults.enabled), f"{where}.enabled")
    ttl = raw.get("ttl_s", defaults.ttl_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        raise ConfigError(f"{where}.ttl_s: expected a number of seconds > 0, got {ttl!r}")
    return AffinityConfig(
        enabled=enabled,
        ttl_s=float(ttl),
        prefix_chars=int_at_least(raw.get("prefix_chars", defaults.prefix_chars),
                                  f"{where}.prefix_chars", 1),
        max_entries=int_at_least(raw.get("max_entries", defaults.max_entries),
                                 f"{where}.max_entries", 1),
    )
