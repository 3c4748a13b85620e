"""A bounded priority queue of requests waiting for upstream capacity.

When every target of a request is at its caps (services/router/caps.py), the request
joins this queue with its account's priority and waits. Capacity frees when a lease is
released here (`notify`) or when a cap's window slides on (each waiter's own timer, which
also covers releases by other router replicas). Either starts a *round*: the waiters get
their turn one at a time, highest priority first, then first come first served; the one
whose turn it is retries its targets and then either leaves (served) or waits again,
which passes the turn on. Retries are therefore serialised in priority order, while a
waiter for another model, whose caps are not the full ones, still gets its turn in the
same round. A new request that finds capacity at once does not queue (it never waited).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Gauge, Histogram

QUEUE_WAIT = Histogram(
    "apirelay_router_queue_wait_seconds",
    "Seconds requests waited for upstream capacity, by outcome (served, timeout).",
    ["outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
QUEUE_LENGTH = Gauge("apirelay_router_queue_length",
                     "Requests waiting for upstream capacity right now.")

# A waiter looks again at least this often (a release on another replica is not seen
# here), and not more often than the floor (a cap whose reset is "now").
MAX_POLL_S = 1.0
MIN_POLL_S = 0.01


@dataclass(eq=False, slots=True)
class Ticket:
    """One waiting request: its priority, arrival order and when it stops waiting."""

    priority: int
    seq: int
    joined: float
    deadline: float
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class CapacityQueue:
    """Waiters by (priority, arrival); at most `max_size` of them at once."""

    def __init__(self, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_size = max_size
        self._clock = clock
        self._seq = itertools.count()
        self._waiting: list[Ticket] = []
        self._round: list[Ticket] = []
        self._turn: Ticket | None = None
        self._again = False

    def __len__(self) -> int:
        return len(self._waiting)

    def now(self) -> float:
        """The queue's clock."""
        return self._clock()

    def join(self, priority: int, deadline: float) -> Ticket | None:
        """A ticket waiting until `deadline`; None when the queue is full."""
        if len(self._waiting) >= self._max_size:
            return None
        ticket = Ticket(priority, next(self._seq), self._clock(), deadline)
        self._waiting.append(ticket)
        QUEUE_LENGTH.set(len(self._waiting))
        return ticket

    async def wait(self, ticket: Ticket, retry_after_s: float) -> bool:
        """Wait for the ticket's turn (passing on a turn it held); False once its deadline
        passed. `retry_after_s` is when its caps may have room again."""
        ticket.woken.clear()
        self._pass(ticket)
        poll = min(max(retry_after_s, MIN_POLL_S), MAX_POLL_S)
        while not ticket.woken.is_set():
            left = ticket.deadline - self._clock()
            if left <= 0:
                return False
            try:
                async with asyncio.timeout(min(poll, left)):
                    await ticket.woken.wait()
            except TimeoutError:
                if self._clock() >= ticket.deadline:
                    return False
                # A cap's window moved on: everyone retries, in order.
                self.notify()
                poll = MAX_POLL_S
        return True

    def leave(self, ticket: Ticket, *, served: bool) -> None:
        """The ticket's request stops waiting (served, or giving up)."""
        if ticket in self._waiting:
            self._waiting.remove(ticket)
            QUEUE_LENGTH.set(len(self._waiting))
            QUEUE_WAIT.labels("served" if served else "timeout").observe(
                self._clock() - ticket.joined)
        self._pass(ticket)

    def notify(self) -> None:
        """Capacity may have freed: give every waiter a turn, in order."""
        if self._turn is not None or self._round:
            self._again = True  # once this round is over
            return
        self._start_round()

    def _start_round(self) -> None:
        self._round = sorted(self._waiting, key=lambda t: (-t.priority, t.seq))
        self._advance()

    def _pass(self, ticket: Ticket) -> None:
        if self._turn is ticket:
            self._turn = None
            self._advance()

    def _advance(self) -> None:
        while self._round:
            ticket = self._round.pop(0)
            if ticket in self._waiting:
                self._turn = ticket
                ticket.woken.set()
                return
        if self._again:
            self._again = False
            if self._waiting:
                self._start_round()
