"""Which (channel, key) a request tries next.

The highest priority tier that has an available target; within it, two weighted random
draws and the one with fewer requests in flight wins (power of two choices). A channel's
weight is shared by its keys, so adding keys spreads load, it does not attract more. A
request's next try prefers a channel it has not tried yet, then another key of one it
has.

Panic (Envoy's panic threshold, taken at its extreme): when no untried target is
available and the request has not tried any yet, it goes to the target that went out
least recently (ejected or cooling, never a disabled key), so health alone never refuses
a request; a request that already tried does not panic (the walk says so), which keeps
an outage from multiplying attempts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.gateway_config import ChannelEntry
from services.router.health import HealthBook
from services.router.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Target:
    """One channel with one of its keys, and the provider holding that key."""

    channel: ChannelEntry
    key_id: str
    provider: Provider = field(compare=False)
    weight: float = 1.0

    @property
    def name(self) -> tuple[str, str]:
        """(channel name, key id): how health and load know the target."""
        return (self.channel.name, self.key_id)


class Balancer:
    """Picks targets by priority, health and load; counts requests in flight."""

    def __init__(self, health: HealthBook, rng: random.Random) -> None:
        self.health = health
        self._rng = rng
        self._in_flight: dict[tuple[str, str], int] = {}

    def in_flight(self, target: Target) -> int:
        """Requests in flight on `target`."""
        return self._in_flight.get(target.name, 0)

    def acquire(self, target: Target) -> None:
        """A try on `target` begins."""
        self._in_flight[target.name] = self.in_flight(target) + 1

    def release(self, target: Target) -> None:
        """A try on `target` ended."""
        self._in_flight[target.name] = self.in_flight(target) - 1

    def pick(self, targets: Sequence[Target], model: str, tried: Sequence[Target], *,
             panic: bool = False) -> Target | None:
        """The next target of `targets` for `model` after `tried`, or None; with `panic`,
        an unavailable one rather than none."""
        done = {t.name for t in tried}
        fresh = [t for t in targets if t.name not in done]
        healthy = [t for t in fresh if self.health.available(t.channel.name, t.key_id, model)]
        if not healthy:
            return self._panic(fresh, model) if panic else None
        used = {t.channel.name for t in tried}
        pool = [t for t in healthy if t.channel.name not in used] or healthy
        top = max(t.channel.priority for t in pool)
        return self._two_choices([t for t in pool if t.channel.priority == top])

    def _panic(self, targets: Sequence[Target], model: str) -> Target | None:
        usable = [t for t in targets if not self.health.disabled(t.channel.name, t.key_id)]
        if not usable:
            return None
        return min(usable, key=lambda t: self.health.out_since(t.channel.name, t.key_id, model))

    def _two_choices(self, tier: Sequence[Target]) -> Target:
        first = self._weighted(tier)
        if len(tier) == 1:
            return first
        second = self._weighted([t for t in tier if t is not first])
        return second if self.in_flight(second) < self.in_flight(first) else first

    def _weighted(self, tier: Sequence[Target]) -> Target:
        pick = self._rng.random() * sum(t.weight for t in tier)
        for target in tier:
            pick -= target.weight
            if pick < 0:
                return target
        return tier[-1]
