"""Value types shared by the limiter's core and its stores (times in integer milliseconds)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from services.ratelimit.defaults import DEFAULT_DOMAIN


class LimitKind(enum.Enum):
    """One kind of limit; the shorthand `Limits` are checked in this order."""

    RPM = 1
    TPM = 2
    CONCURRENCY = 3
    RPD = 4


@dataclass(frozen=True, slots=True)
class Limits:
    """A subject's limits (shorthand for rules on its key); zero means unlimited."""

    rpm: int = 0
    tpm: int = 0
    concurrency: int = 0
    rpd: int = 0

    def of(self, kind: LimitKind) -> int:
        """The size of one limit."""
        return {
            LimitKind.RPM: self.rpm,
            LimitKind.TPM: self.tpm,
            LimitKind.CONCURRENCY: self.concurrency,
            LimitKind.RPD: self.rpd,
        }[kind]

    def finite(self) -> tuple[LimitKind, ...]:
        """The kinds with a limit, in checking order."""
        return tuple(kind for kind in LimitKind if self.of(kind))


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a rule limits: ordered key/value entries (Envoy's rate-limit descriptor)."""

    entries: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, *entries: tuple[str, str]) -> Descriptor:
        """A descriptor from its entries, e.g. `Descriptor.of(("account", "acc_1"))`."""
        return cls(tuple(entries))


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit on one descriptor; `window_ms` 0 means the kind's standard window."""

    descriptor: Descriptor
    kind: LimitKind
    limit: int
    window_ms: int = 0


@dataclass(frozen=True, slots=True)
class Check:
    """A resolved rule as the stores see it: where it counts, its size, what this adds."""

    key: str
    kind: LimitKind
    limit: int
    window_ms: int
    amount: int

    @property
    def is_slots(self) -> bool:
        """True for a concurrency limit (a set of held leases, not a window)."""
        return self.kind is LimitKind.CONCURRENCY

    @property
    def reconciled(self) -> bool:
        """True when a release replaces this check's amount with the actual tokens."""
        return self.kind is LimitKind.TPM

    def shared_by(self, replicas: int) -> Check:
        """One replica's share when replicas cannot coordinate; stays at least 1."""
        return replace(self, limit=max(1, self.limit // replicas)) if replicas > 1 else self


@dataclass(frozen=True, slots=True)
class Acquisition:
    """What a store decides in one atomic step: every check, and the lease to record."""

    checks: tuple[Check, ...]
    # Names this admission in windows and slot sets (unique per domain).
    token: str
    # The lease record's key; empty for a check without a lease (CheckLimits).
    record: str = ""
    ttl_ms: int = 0

    def shared_by(self, replicas: int) -> Acquisition:
        """Every check at one replica's share."""
        return replace(self, checks=tuple(c.shared_by(replicas) for c in self.checks))


@dataclass(frozen=True, slots=True)
class Release:
    """A lease's end as the stores see it; `actual_tokens` < 0 keeps the estimates."""

    record: str
    token: str
    actual_tokens: int


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """An acquisition: one request, `tokens` estimated tokens, slots for `ttl_ms`."""

    subject: str
    lease_id: str
    limits: Limits
    tokens: int
    ttl_ms: int
    domain: str = DEFAULT_DOMAIN
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaseRelease:
    """The end of a lease; `actual_tokens` < 0 keeps the estimate."""

    subject: str
    lease_id: str
    actual_tokens: int = -1
    domain: str = DEFAULT_DOMAIN


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """A check without a lease: every rule consumes `hits`, all or nothing."""

    rules: tuple[Rule, ...]
    hits: int = 1
    domain: str = DEFAULT_DOMAIN


@dataclass(frozen=True, slots=True)
class Usage:
    """What one limit holds after a decision and when room frees up (ms from now)."""

    used: int
    reset_after_ms: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """A store's raw answer: one usage per check, and the first denying check's index.

    After a denial a check's reset is its wait (0: it had room); after an admission it
    is the time until the window's oldest entry leaves (slots: 0).
    """

    allowed: bool
    replayed: bool
    denied: int | None
    usages: tuple[Usage, ...]
    # The store's clock at the decision, microseconds since the epoch; None in memory.
    at_us: int | None = None


@dataclass(frozen=True, slots=True)
class ReleaseVerdict:
    """A store's answer to a release."""

    released: bool
    at_us: int | None = None


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """One limit after a decision, for rate-limit response headers."""

    kind: LimitKind
    limit: int
    remaining: int
    reset_after_ms: int
    over_limit: bool = False


@dataclass(frozen=True, slots=True)
class LeaseResult:
    """The decision of an acquisition; `lease_id` is empty when denied."""

    allowed: bool
    denied_by: LimitKind | None
    statuses: tuple[LimitStatus, ...]
    lease_id: str
    replayed: bool = False
    rule_statuses: tuple[LimitStatus, ...] = ()
    decided_at_us: int | None = None
    local: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The decision of a check: one status per rule, in the request's order."""

    allowed: bool
    statuses: tuple[LimitStatus, ...]
    decided_at_us: int | None = None
    local: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """Whether a held lease was released, and when by the shared store's clock."""

    released: bool
    decided_at_us: int | None = None
