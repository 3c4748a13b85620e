"""Passive health of upstream targets: a breaker per (channel, key, model), key states.

Envoy's outlier detection is the model (`consecutive_5xx` 5, `base_ejection_time` 30 s
times the number of ejections, capped): a target is ejected after `eject_after`
consecutive failures (5xx, timeouts, connection errors, broken answers). When its
ejection ends it is half-open: one probe request may go; success re-admits it and forgets
its ejections, failure ejects it again for longer. A request the upstream refused as the
client's mistake (400, 422) proves the upstream is up and resets the count, as Envoy's
non-5xx does.

A key the upstream blames (401/403: credentials, 402 or `insufficient_quota`: money) is
disabled for every model until `enable_key` / `enable_channel` (an admin re-enable) or
a restart. A 429 cools the key down for what its headers said (default 1 s, at most 60 s).

Headroom (a key is made lighter before it starts refusing): every answer of an
OpenAI-compatible upstream says how much of the key's quota is left
(`x-ratelimit-remaining-requests|tokens` of `x-ratelimit-limit-*`). When the lower of the
two fractions falls under `low_headroom` (10 %), the key's selection weight is multiplied
by that fraction, but never by less than `min_weight_factor` (5 %), until the matching
`x-ratelimit-reset-*` passes (default 1 s, at most 60 s). An answer above the threshold
restores the full weight at once. So a key at 2 % of its requests gets 5 % of its share;
at 8 %, 8 %; the other keys of the tier take the rest before this one answers 429.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from services.router import metrics
from services.router.errors import ProviderError

if TYPE_CHECKING:
    from services.router.balancer import Target

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The breaker's and the cooldown's numbers (Envoy's defaults)."""

    eject_after: int = 5
    base_ejection_s: float = 30.0
    max_ejection_s: float = 300.0
    default_cooldown_s: float = 1.0
    max_cooldown_s: float = 60.0
    low_headroom: float = 0.10
    min_weight_factor: float = 0.05


@dataclass(frozen=True, slots=True)
class Headroom:
    """What one answer's headers said of its key's quota: the lowest remaining/limit
    fraction (requests or tokens) and the seconds until that limit resets (None: unsaid)."""

    fraction: float
    reset_s: float | None = None


@dataclass(slots=True)
class _Breaker:
    """One (channel, key, model)'s failures in a row and ejection state."""

    failures: int = 0
    ejections: int = 0
    ejected_at: float = 0.0
    until: float = 0.0
    probing_since: float | None = None


class HealthBook:
    """The health of every (channel, key, model) this router has tried."""

    def __init__(self, policy: HealthPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or HealthPolicy()
        self._clock = clock
        self._breakers: dict[tuple[str, str, str], _Breaker] = {}
        self._disabled: dict[tuple[str, str], str] = {}
        self._cooling: dict[tuple[str, str], float] = {}
        # (channel, key) -> (weight factor, until); only keys under the headroom threshold.
        self._light: dict[tuple[str, str], tuple[float, float]] = {}
        self._noted: dict[tuple[str, str], Headroom] = {}

    def available(self, channel: str, key_id: str, model: str) -> bool:
        """True when the target may take a request now (a half-open one: one probe)."""
        if (channel, key_id) in self._disabled:
            return False
        now = self._clock()
        if self._cooling.get((channel, key_id), 0.0) > now:
            return False
        breaker = self._breakers.get((channel, key_id, model))
        if breaker is None or breaker.until == 0.0:
            return True
        if breaker.until > now:
            return False
        # Half-open: one probe at a time; a probe that never reported (cancelled) is
        # given up after one base ejection time.
        return (breaker.probing_since is None
                or now - breaker.probing_since > self.policy.base_ejection_s)

    def disabled(self, channel: str, key_id: str) -> bool:
        """True when the key is disabled."""
        return (channel, key_id) in self._disabled

    def out_since(self, channel: str, key_id: str, model: str) -> float:
        """When the target last went out (ejected or cooling), for panic picks."""
        breaker = self._breakers.get((channel, key_id, model))
        ejected = breaker.ejected_at if breaker else 0.0
        return max(ejected, self._cooling.get((channel, key_id), 0.0))

    def started(self, channel: str, key_id: str, model: str) -> None:
        """A try begins; a half-open target's try is its probe."""
        breaker = self._breakers.get((channel, key_id, model))
        if breaker is not None and breaker.until and breaker.until <= self._clock():
            breaker.probing_since = self._clock()

    def succeeded(self, channel: str, key_id: str, model: str) -> None:
        """The target answered: re-admit it."""
        breaker = self._breakers.get((channel, key_id, model))
        if breaker is not None:
            if breaker.until:
                logger.info("upstream re-admitted: channel=%s key=%s model=%s",
                            channel, key_id, model)
            self._breakers[channel, key_id, model] = _Breaker()

    def failed(self, channel: str, key_id: str, model: str, exc: ProviderError) -> None:
        """Account one failed try to its key or its breaker."""
        if exc.key_fault:
            self._disable(channel, key_id, exc.key_fault)
        elif exc.kind == "rate_limited":
            self._cool(channel, key_id, exc.retry_after_s)
        elif exc.kind == "rejected":
            self.succeeded(channel, key_id, model)
        else:
            self._fail(channel, key_id, model)

    def enable_key(self, channel: str, key_id: str) -> bool:
        """Re-enable a disabled key (admin hook); true when it was disabled."""
        self._cooling.pop((channel, key_id), None)
        return self._disabled.pop((channel, key_id), None) is not None

    def enable_channel(self, channel: str) -> list[str]:
        """Re-enable every disabled key of `channel` (admin hook); the key ids it enabled."""
        keys = [k for c, k in self._disabled if c == channel]
        for key_id in keys:
            self.enable_key(channel, key_id)
        return keys

    def note_headroom(self, channel: str, key_id: str, headroom: Headroom | None) -> None:
        """Take the key's quota left from its newest answer (the module's headroom rule);
        the same Headroom noted twice counts once."""
        name = (channel, key_id)
        if headroom is None or self._noted.get(name) is headroom:
            return
        self._noted[name] = headroom
        if headroom.fraction >= self.policy.low_headroom:
            self._light.pop(name, None)
            return
        factor = max(headroom.fraction, self.policy.min_weight_factor)
        self._light[name] = (factor, self._clock() + self._bounded(headroom.reset_s))

    def weight_factor(self, channel: str, key_id: str) -> float:
        """The factor the key's selection weight is multiplied by now (1.0: full weight)."""
        light = self._light.get((channel, key_id))
        if light is None:
            return 1.0
        if light[1] <= self._clock():
            del self._light[channel, key_id]
            return 1.0
        return light[0]

    def weighted(self, targets: tuple[Target, ...]) -> Sequence[Target]:
        """`targets` with the weights of keys short of quota lowered (as they are when none is)."""
        if not self._light:
            return targets
        return [t if (f := self.weight_factor(t.channel.name, t.key_id)) == 1.0
                else replace(t, weight=t.weight * f) for t in targets]

    def ejection_s(self, ejections: int) -> float:
        """How long the `ejections`-th ejection lasts."""
        return min(self.policy.base_ejection_s * ejections, self.policy.max_ejection_s)

    def _fail(self, channel: str, key_id: str, model: str) -> None:
        breaker = self._breakers.setdefault((channel, key_id, model), _Breaker())
        breaker.failures += 1
        half_open = breaker.until != 0.0
        if not half_open and breaker.failures < self.policy.eject_after:
            return
        now = self._clock()
        breaker.ejections += 1
        breaker.failures = 0
        breaker.ejected_at = now
        breaker.until = now + self.ejection_s(breaker.ejections)
        breaker.probing_since = None
        metrics.EJECTIONS.labels(channel, model).inc()
        logger.warning("upstream ejected: channel=%s key=%s model=%s for=%.0fs (ejection %d)",
                       channel, key_id, model, breaker.until - now, breaker.ejections)

    def _disable(self, channel: str, key_id: str, reason: str) -> None:
        if (channel, key_id) in self._disabled:
            return
        self._disabled[channel, key_id] = reason
        metrics.KEYS_DISABLED.labels(channel, key_id, reason).inc()
        logger.error("upstream key disabled: channel=%s key=%s reason=%s", channel, key_id,
                     reason)

    def _cool(self, channel: str, key_id: str, retry_after_s: float | None) -> None:
        self._cooling[channel, key_id] = self._clock() + self._bounded(retry_after_s)
        metrics.COOLDOWNS.labels(channel, key_id).inc()

    def _bounded(self, seconds: float | None) -> float:
        """A header's wait, defaulted and capped by the policy."""
        if seconds is None:
            return self.policy.default_cooldown_s
        return min(max(seconds, 0.0), self.policy.max_cooldown_s)
