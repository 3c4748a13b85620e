"""The exact limit algorithms for one subject, in memory; `lua.py` runs the same in Redis.

- RPM, sliding window log: every admitted request is logged with its time; a request is
  admitted iff fewer than `rpm` logged requests are younger than the window. Any window
  of that length (not only aligned ones) therefore holds at most `rpm` admissions.
- TPM, sliding window of token weights: every admitted request logs its estimated
  tokens; it is admitted iff the logged tokens younger than the window plus its own fit
  in `tpm`. Releasing a lease replaces its weight with the actual tokens while it is
  still in the window (reserve, then reconcile).
- Concurrency: the set of held leases with their expiry times; a lease is admitted iff
  fewer than `concurrency` unexpired leases are held. A lease nobody releases leaves the
  set at its expiry, so a dead caller cannot leak a slot.

An entry logged at `t` counts while `now < t + window`. Reset times: after an admission,
the time until the oldest entry leaves (concurrency: 0); after a denial, per limit, the
time until it would admit this same request (0 if it already would). A request whose
estimate exceeds `tpm` can never fit: it is denied with a reset of one full window.
For concurrency the retry time is the earliest lease expiry, capped at
CONCURRENCY_RETRY_HINT_MS because a release can come at any moment.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from services.ratelimit.limits import LeaseRelease, LeaseRequest, LimitKind, Usage, Verdict

CONCURRENCY_RETRY_HINT_MS = 1_000


@dataclass(slots=True)
class _TokenEntry:
    at: int
    tokens: int
    counted: bool = True


@dataclass(slots=True)
class _Lease:
    expires_at: int
    tokens: _TokenEntry


class SubjectWindows:
    """The windows and leases of one subject; methods never await, so they are atomic."""

    def __init__(self, window_ms: int) -> None:
        self._window = window_ms
        self._requests: deque[int] = deque()
        self._tokens: deque[_TokenEntry] = deque()
        self._token_sum = 0
        self._leases: dict[str, _Lease] = {}
        self._expiries: list[tuple[int, str]] = []

    def acquire(self, now: int, request: LeaseRequest) -> Verdict:
        """Admit the request into every limit, or into none."""
        self._expire(now)
        if request.lease_id in self._leases:
            return self._admitted_view(now, replayed=True)
        limits = request.limits
        waits = {
            LimitKind.RPM: self._rpm_wait(now, limits.rpm),
            LimitKind.TPM: self._tpm_wait(now, limits.tpm, request.tokens),
            LimitKind.CONCURRENCY: self._concurrency_wait(now, limits.concurrency),
        }
        denied_by = next((kind for kind, wait in waits.items() if wait > 0), None)
        if denied_by is not None:
            return Verdict(
                allowed=False,
                denied_by=denied_by,
                replayed=False,
                rpm=Usage(len(self._requests), waits[LimitKind.RPM]),
                tpm=Usage(self._token_sum, waits[LimitKind.TPM]),
                concurrency=Usage(len(self._leases), waits[LimitKind.CONCURRENCY]),
            )
        entry = _TokenEntry(now, request.tokens)
        self._requests.append(now)
        self._tokens.append(entry)
        self._token_sum += request.tokens
        expires_at = now + request.ttl_ms
        self._leases[request.lease_id] = _Lease(expires_at, entry)
        heapq.heappush(self._expiries, (expires_at, request.lease_id))
        return self._admitted_view(now, replayed=False)

    def release(self, now: int, release: LeaseRelease) -> bool:
        """Free the lease's slot and reconcile its tokens; False if it is not held."""
        self._expire(now)
        lease = self._leases.pop(release.lease_id, None)
        if lease is None:
            return False
        entry = lease.tokens
        if release.actual_tokens >= 0 and entry.counted:
            self._token_sum += release.actual_tokens - entry.tokens
            entry.tokens = release.actual_tokens
        return True

    def is_idle(self, now: int) -> bool:
        """True when nothing is counted or held any more (the subject can be forgotten)."""
        self._expire(now)
        return not (self._requests or self._tokens or self._leases)

    def _expire(self, now: int) -> None:
        horizon = now - self._window
        while self._requests and self._requests[0] <= horizon:
            self._requests.popleft()
        while self._tokens and self._tokens[0].at <= horizon:
            entry = self._tokens.popleft()
            entry.counted = False
            self._token_sum -= entry.tokens
        heap = self._expiries
        while heap:
            expires_at, lease_id = heap[0]
            lease = self._leases.get(lease_id)
            if lease is not None and lease.expires_at == expires_at:
                if expires_at > now:
                    break
                del self._leases[lease_id]
            heapq.heappop(heap)
        # Released leases leave stale heap entries; rebuild before they pile up.
        if len(heap) > 2 * len(self._leases) + 64:
            self._expiries = [(lease.expires_at, lid) for lid, lease in self._leases.items()]
            heapq.heapify(self._expiries)

    def _rpm_wait(self, now: int, limit: int) -> int:
        used = len(self._requests)
        if not limit or used < limit:
            return 0
        # Room for one more once all but limit - 1 of the logged requests have left.
        return self._requests[used - limit] + self._window - now

    def _tpm_wait(self, now: int, limit: int, tokens: int) -> int:
        if not limit or self._token_sum + tokens <= limit:
            return 0
        if tokens > limit:
            return self._window
        freed = 0
        for entry in self._tokens:
            freed += entry.tokens
            if self._token_sum - freed + tokens <= limit:
                return entry.at + self._window - now
        return self._window

    def _concurrency_wait(self, now: int, limit: int) -> int:
        if not limit or len(self._leases) < limit:
            return 0
        earliest = self._expiries[0][0] if self._expiries else now + CONCURRENCY_RETRY_HINT_MS
        return max(1, min(earliest - now, CONCURRENCY_RETRY_HINT_MS))

    def _admitted_view(self, now: int, replayed: bool) -> Verdict:
        rpm_reset = self._requests[0] + self._window - now if self._requests else 0
        tpm_reset = self._tokens[0].at + self._window - now if self._tokens else 0
        return Verdict(
            allowed=True,
            denied_by=None,
            replayed=replayed,
            rpm=Usage(len(self._requests), rpm_reset),
            tpm=Usage(self._token_sum, tpm_reset),
            concurrency=Usage(len(self._leases), 0),
        )
