"""Passive health of upstream targets: a breaker per (channel, key, model), key states.

Envoy's outlier detection is the model (`consecutive_5xx` 5, `base_ejection_time` 30 s
times the number of ejections, capped): a target is ejected after `eject_after`
consecutive failures (5xx, timeouts, connection errors, broken answers). When its
ejection ends it is half-open: one probe request may go; success re-admits it and forgets
its ejections, failure ejects it again for longer. A request the upstream refused as the
client's mistake (400, 422) proves the upstream is up and resets the count, as Envoy's
non-5xx does.

A key the upstream blames (401/403: credentials, 402 or `insufficient_quota`: money) is
disabled for every model until `enable_key` (an admin re-enable) or a restart. A 429
cools the key down for what its headers said (default 1 s, at most 60 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.router import metrics
from services.router.errors import ProviderError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The breaker's and the cooldown's numbers (Envoy's defaults)."""

    eject_after: int = 5
    base_ejection_s: float = 30.0
    max_ejection_s: float = 300.0
    default_cooldown_s: float = 1.0
    max_cooldown_s: float = 60.0


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
        seconds = self.policy.default_cooldown_s if retry_after_s is None else retry_after_s
        seconds = min(max(seconds, 0.0), self.policy.max_cooldown_s)
        self._cooling[channel, key_id] = self._clock() + seconds
        metrics.COOLDOWNS.labels(channel, key_id).inc()
