"""What the limiter does while its shared store is unreachable, and how it notices the end.

Fail open (the default): each replica decides alone, with a local memory store at each
limit's share of one replica (`limit // replicas`, at least 1), so the replicas together
stay within the limit. Fail closed: refuse (StoreUnavailable, gRPC UNAVAILABLE). Each
outage is logged once when it starts and once when it ends; during it the shared store
is probed at most once per probe interval, so the shared store decides again within one
probe interval of coming back. If it came back empty (a restarted Redis), that is
counted and logged: until one window has passed, a limit may admit its count twice.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from services.ratelimit import metrics
from services.ratelimit.store import MillisClock

logger = logging.getLogger(__name__)

DEFAULT_PROBE_INTERVAL_MS = 1_000


class FailMode(enum.Enum):
    """What to do while the shared store is unreachable."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class OutagePolicy:
    """Fail open (with a local fallback store) or closed, and how often to probe."""

    fail_mode: FailMode = FailMode.OPEN
    replicas: int = 1
    probe_interval_ms: int = DEFAULT_PROBE_INTERVAL_MS


class Outage:
    """One outage of the shared store at a time: its start, its end and the probing."""

    def __init__(self, policy: OutagePolicy, clock: MillisClock) -> None:
        self._policy = policy
        self._clock = clock
        self._started_at: int | None = None
        self._next_probe = 0

    @property
    def active(self) -> bool:
        """True while the shared store is considered unreachable."""
        return self._started_at is not None

    def should_try_store(self) -> bool:
        """True when no outage is on, or when it is time to probe."""
        return self._started_at is None or self._clock() >= self._next_probe

    def failed(self) -> None:
        """A call to the shared store failed: start (or continue) the outage."""
        metrics.STORE_ERRORS.inc()
        now = self._clock()
        self._next_probe = now + self._policy.probe_interval_ms
        if self._started_at is None:
            self._started_at = now
            metrics.FALLBACK_ACTIVE.set(1)
            action = (
                "deciding locally with limit // replicas"
                if self._policy.fail_mode is FailMode.OPEN
                else "refusing requests (fail closed)"
            )
            logger.warning("rate limit store unreachable; %s", action)

    def succeeded(self) -> bool:
        """A call succeeded; True if that ended an outage."""
        if self._started_at is None:
            return False
        lasted_s = (self._clock() - self._started_at) / 1000
        self._started_at = None
        metrics.FALLBACK_ACTIVE.set(0)
        logger.warning("rate limit store reachable again after %.1f s", lasted_s)
        return True


def report_lost_state() -> None:
    """Count and log a shared store that came back without its counters."""
    metrics.STORE_RESETS.inc()
    logger.warning(
        "rate limit store lost its counters (restarted empty); for up to one window a "
        "limit may admit up to twice its size"
    )
