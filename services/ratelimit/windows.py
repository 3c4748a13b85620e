"""The exact limit algorithms, in memory; `lua.py` runs the same steps in Redis.

- RPM, RPD, TPM (and CheckLimits): a sliding window log of weighted entries per
  descriptor, kind and window length W. An admission at `now` logs one entry of weight
  `amount` (1 request, or the estimated tokens); an entry logged at `t` counts while
  `now < t + W`. A request is admitted iff the counted weight plus its amount fits in the
  limit. Hence, for every admission at time t, the weight admitted in (t - W, t] is at
  most the limit: in ANY window of length W, not only in aligned ones.
- TPM reserve and reconcile: releasing a lease replaces its entries' weights with the
  actual tokens while they are still in their windows.
- Concurrency: a set of held leases with expiry times; admitted iff fewer than `limit`
  unexpired leases are held. A lease nobody releases leaves at its expiry (its TTL), so a
  dead caller cannot leak a slot.

All checks of one acquisition are decided together: if any has no room, nothing is
consumed. Reset times: after an admission, the time until the window's oldest entry
leaves (slots: 0); after a denial, per check, the time until it would admit this same
request (0 if it already would). An amount above the limit never fits: its wait is one
full window. For slots the wait is the earliest expiry, capped at
CONCURRENCY_RETRY_HINT_MS because a release can come at any moment.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from services.ratelimit.limits import Acquisition, Check, Release, Usage, Verdict

CONCURRENCY_RETRY_HINT_MS = 1_000
# A release of an unknown lease leaves a tombstone this long: its acquire may still be on
# its way (from another replica, or cancelled by its caller), and must then be refused.
RELEASE_TOMBSTONE_MS = 60_000


@dataclass(slots=True)
class _Entry:
    at: int
    member: str
    weight: int


class Window:
    """A sliding window log of weighted entries (one descriptor, kind and length)."""

    __slots__ = ("_entries", "_length", "_members", "used")

    def __init__(self, length_ms: int) -> None:
        self._length = length_ms
        self._entries: deque[_Entry] = deque()
        self._members: dict[str, _Entry] = {}
        self.used = 0

    def expire(self, now: int) -> None:
        """Forget the entries that left the window."""
        horizon = now - self._length
        while self._entries and self._entries[0].at <= horizon:
            entry = self._entries.popleft()
            del self._members[entry.member]
            self.used -= entry.weight

    def wait(self, now: int, limit: int, amount: int) -> int:
        """Milliseconds until `amount` fits (0: it fits now)."""
        if self.used + amount <= limit:
            return 0
        if amount > limit:
            return self._length
        freed = 0
        for entry in self._entries:
            freed += entry.weight
            if self.used - freed + amount <= limit:
                return entry.at + self._length - now
        return self._length

    def oldest_reset(self, now: int) -> int:
        """Milliseconds until the oldest entry leaves (0 when empty)."""
        return self._entries[0].at + self._length - now if self._entries else 0

    def has(self, member: str) -> bool:
        """True when an entry of that name is logged."""
        return member in self._members

    def add(self, now: int, member: str, amount: int) -> None:
        """Log an admission."""
        entry = _Entry(now, member, amount)
        self._entries.append(entry)
        self._members[member] = entry
        self.used += amount

    def reconcile(self, member: str, actual: int) -> None:
        """Replace an entry's weight, if it is still logged."""
        entry = self._members.get(member)
        if entry is not None:
            self.used += actual - entry.weight
            entry.weight = actual

    def is_empty(self) -> bool:
        """True when nothing is logged."""
        return not self._entries


class Slots:
    """The held leases of one descriptor, with their expiry times."""

    __slots__ = ("_expiries", "_held")

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._expiries: list[tuple[int, str]] = []

    @property
    def used(self) -> int:
        """How many leases are held."""
        return len(self._held)

    def expire(self, now: int) -> None:
        """Drop the leases whose expiry has come; compact stale heap entries."""
        heap = self._expiries
        while heap:
            expires_at, token = heap[0]
            if self._held.get(token) == expires_at:
                if expires_at > now:
                    break
                del self._held[token]
            heapq.heappop(heap)
        # Released leases leave stale heap entries; rebuild before they pile up.
        if len(heap) > 2 * len(self._held) + 64:
            self._expiries = [(expires_at, token) for token, expires_at in self._held.items()]
            heapq.heapify(self._expiries)

    def wait(self, now: int, limit: int) -> int:
        """Milliseconds until a slot may free (0: one is free now); call after `expire`."""
        if len(self._held) < limit:
            return 0
        earliest = self._expiries[0][0]  # valid: `expire` leaves a held lease on top
        return max(1, min(earliest - now, CONCURRENCY_RETRY_HINT_MS))

    def add(self, token: str, expires_at: int) -> None:
        """Hold a slot until `expires_at`."""
        self._held[token] = expires_at
        heapq.heappush(self._expiries, (expires_at, token))

    def remove(self, token: str) -> None:
        """Free a held slot (no-op if not held)."""
        self._held.pop(token, None)


@dataclass(frozen=True, slots=True)
class _Record:
    expires_at: int
    member: str
    slot_keys: tuple[str, ...]
    token_keys: tuple[str, ...]


class MemoryState:
    """Windows, slot sets and lease records of one process; methods never await."""

    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}
        self.slots: dict[str, Slots] = {}
        self.records: dict[str, _Record] = {}
        # Leases released before their acquire arrived, until when (see RELEASE_TOMBSTONE_MS).
        self.tombstones: dict[str, int] = {}

    def acquire(self, now: int, acquisition: Acquisition) -> Verdict:
        """Admit into every check or into none (see the module docstring)."""
        checks = acquisition.checks
        parts = [self._part(check) for check in checks]
        for part in parts:
            part.expire(now)
        if acquisition.record and self.tombstones.get(acquisition.record, 0) > now:
            # Released before it was acquired: admitting it would hold a slot nobody frees.
            return Verdict(False, False, 0 if checks else None,
                           tuple(Usage(part.used, 0) for part in parts))
        if self._replayed(now, acquisition.record):
            return Verdict(True, True, None, _admitted(now, parts))
        waits = [
            part.wait(now, check.limit) if isinstance(part, Slots)
            else part.wait(now, check.limit, check.amount)
            for check, part in zip(checks, parts, strict=True)
        ]
        denied = next((i for i, wait in enumerate(waits) if wait > 0), None)
        if denied is not None:
            usages = tuple(Usage(part.used, w) for part, w in zip(parts, waits, strict=True))
            return Verdict(False, False, denied, usages)
        member = _unique_member(f"{now}:{acquisition.token}", parts)
        expires_at = now + acquisition.ttl_ms
        for check, part in zip(checks, parts, strict=True):
            if isinstance(part, Slots):
                part.add(acquisition.token, expires_at)
            else:
                part.add(now, member, check.amount)
        if acquisition.record:
            self.records[acquisition.record] = _Record(
                expires_at, member,
                tuple(c.key for c in checks if c.is_slots),
                tuple(c.key for c in checks if c.reconciled),
            )
        return Verdict(True, False, None, _admitted(now, parts))

    def release(self, now: int, release: Release) -> bool:
        """End a held lease and reconcile its tokens; False if not held."""
        record = self.records.pop(release.record, None)
        if record is None:
            self.tombstones[release.record] = now + RELEASE_TOMBSTONE_MS
            return False
        if record.expires_at <= now:
            return False
        for key in record.slot_keys:
            if (slots := self.slots.get(key)) is not None:
                slots.remove(release.token)
        if release.actual_tokens >= 0:
            for key in record.token_keys:
                if (window := self.windows.get(key)) is not None:
                    window.reconcile(record.member, release.actual_tokens)
        return True

    def sweep(self, now: int) -> None:
        """Forget empty windows and slot sets and expired records."""
        for name, window in list(self.windows.items()):
            window.expire(now)
            if window.is_empty():
                del self.windows[name]
        for name, slots in list(self.slots.items()):
            slots.expire(now)
            if not slots.used:
                del self.slots[name]
        for name in [n for n, r in self.records.items() if r.expires_at <= now]:
            del self.records[name]
        for name in [n for n, until in self.tombstones.items() if until <= now]:
            del self.tombstones[name]

    def _part(self, check: Check) -> Window | Slots:
        if check.is_slots:
            slots = self.slots.get(check.key)
            if slots is None:
                slots = self.slots[check.key] = Slots()
            return slots
        window = self.windows.get(check.key)
        if window is None:
            window = self.windows[check.key] = Window(check.window_ms)
        return window

    def _replayed(self, now: int, record_key: str) -> bool:
        record = self.records.get(record_key) if record_key else None
        if record is None:
            return False
        if record.expires_at > now:
            return True
        del self.records[record_key]
        return False


def _admitted(now: int, parts: list[Window | Slots]) -> tuple[Usage, ...]:
    return tuple(
        Usage(part.used, 0 if isinstance(part, Slots) else part.oldest_reset(now))
        for part in parts
    )


def _unique_member(base: str, parts: list[Window | Slots]) -> str:
    # The same token admitted twice in one millisecond (released, then acquired again)
    # must not collide with its earlier entry.
    member, n = base, 0
    while any(isinstance(p, Window) and p.has(member) for p in parts):
        n += 1
        member = f"{base}:{n}"
    return member
