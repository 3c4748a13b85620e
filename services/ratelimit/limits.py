"""Value types shared by the limiter's core and its stores (times in integer milliseconds)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class LimitKind(enum.Enum):
    """One of the limits a lease is checked against, in checking order."""

    RPM = 1
    TPM = 2
    CONCURRENCY = 3


@dataclass(frozen=True, slots=True)
class Limits:
    """A subject's limits; zero means unlimited."""

    rpm: int = 0
    tpm: int = 0
    concurrency: int = 0

    def of(self, kind: LimitKind) -> int:
        """The size of one limit."""
        if kind is LimitKind.RPM:
            return self.rpm
        if kind is LimitKind.TPM:
            return self.tpm
        return self.concurrency

    def shared_by(self, replicas: int) -> Limits:
        """Each replica's share when they cannot coordinate; a finite limit stays >= 1."""
        if replicas <= 1:
            return self

        def share(limit: int) -> int:
            return max(1, limit // replicas) if limit else 0

        return replace(
            self,
            rpm=share(self.rpm),
            tpm=share(self.tpm),
            concurrency=share(self.concurrency),
        )


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """An acquisition: one request, `tokens` estimated tokens and one slot for `ttl_ms`."""

    subject: str
    lease_id: str
    limits: Limits
    tokens: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class LeaseRelease:
    """The end of a lease; `actual_tokens` < 0 keeps the estimate."""

    subject: str
    lease_id: str
    actual_tokens: int = -1


@dataclass(frozen=True, slots=True)
class Usage:
    """What one limit holds after a decision and when room frees up (ms from now)."""

    used: int
    reset_after_ms: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """A store's raw answer: allowed or the denying limit, and the usage of each limit."""

    allowed: bool
    denied_by: LimitKind | None
    replayed: bool
    rpm: Usage
    tpm: Usage
    concurrency: Usage

    def usage(self, kind: LimitKind) -> Usage:
        """The usage of one limit."""
        if kind is LimitKind.RPM:
            return self.rpm
        if kind is LimitKind.TPM:
            return self.tpm
        return self.concurrency


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """One finite limit after a decision, for rate-limit response headers."""

    kind: LimitKind
    limit: int
    remaining: int
    reset_after_ms: int


@dataclass(frozen=True, slots=True)
class LeaseResult:
    """The decision of an acquisition; `lease_id` is empty when denied."""

    allowed: bool
    denied_by: LimitKind | None
    statuses: tuple[LimitStatus, ...]
    lease_id: str
    replayed: bool = False
