"""From requests to store checks: input checks, windows, and the storage keys.

A lease request's `limits` become rules on the descriptor [("key", subject)], checked
before its own rules. Storage keys are the same in both stores: `<tag>:<window_ms>:
<descriptor>` for a window (tag r = RPM, d = RPD, t = TPM) and `c:<descriptor>` for a
set of held leases, where <descriptor> is the domain and the entries percent-encoded,
so two different descriptors never share a key. A lease is recorded under
`l:<domain>:<subject>:<lease_id>`: lease ids come from clients, so they only name a
lease together with the subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from services.ratelimit.defaults import DAY_MS, DEFAULT_DOMAIN, MINUTE_MS
from services.ratelimit.errors import InvalidArgument
from services.ratelimit.limits import (
    Acquisition,
    Check,
    CheckRequest,
    Descriptor,
    LeaseRelease,
    LeaseRequest,
    LimitKind,
    Release,
    Rule,
)

MAX_ID_LENGTH = 256
MAX_LEASE_TTL_MS = 24 * 3600 * 1000
MAX_WINDOW_MS = 31 * 24 * 3600 * 1000
MAX_RULES = 16
MAX_ENTRIES = 8
# Far above any real limit, and keeps window sums exact in Lua's doubles.
MAX_QUANTITY = 10**12

_TAGS = {LimitKind.RPM: "r", LimitKind.RPD: "d", LimitKind.TPM: "t"}


@dataclass(frozen=True, slots=True)
class StandardWindows:
    """The window of a rule that names none (shorter only for tests and benches)."""

    minute_ms: int = MINUTE_MS
    day_ms: int = DAY_MS

    def of(self, kind: LimitKind) -> int:
        """The standard window of a kind (0 for concurrency, which has none)."""
        if kind is LimitKind.CONCURRENCY:
            return 0
        return self.day_ms if kind is LimitKind.RPD else self.minute_ms


def lease_acquisition(
    request: LeaseRequest, windows: StandardWindows, default_ttl_ms: int
) -> Acquisition:
    """The checks of a lease request (shorthand first); raises InvalidArgument."""
    _check_id("subject", request.subject)
    _check_id("request_id", request.lease_id)
    domain = _domain(request.domain)
    for kind in LimitKind:
        _check_quantity(f"limits.{kind.name.lower()}", request.limits.of(kind), minimum=0)
    _check_quantity("estimated_tokens", request.tokens, minimum=0)
    if not 0 <= request.ttl_ms <= MAX_LEASE_TTL_MS:
        raise InvalidArgument(f"lease_ttl must be between 0 and {MAX_LEASE_TTL_MS // 1000} s")
    if len(request.rules) > MAX_RULES:
        raise InvalidArgument(f"at most {MAX_RULES} rules per request")
    key_descriptor = Descriptor.of(("key", request.subject))
    rules = [Rule(key_descriptor, kind, request.limits.of(kind))
             for kind in request.limits.finite()]
    rules += [_checked_rule(rule) for rule in request.rules]
    amounts = {LimitKind.TPM: request.tokens}
    checks = _unique(tuple(
        _check(domain, rule, windows, amounts.get(rule.kind, 1)) for rule in rules))
    record, token = _lease_names(domain, request.subject, request.lease_id)
    return Acquisition(
        checks=checks, token=token, record=record, ttl_ms=request.ttl_ms or default_ttl_ms)


def check_acquisition(request: CheckRequest, windows: StandardWindows, token: str) -> Acquisition:
    """The checks of a lease-less request; raises InvalidArgument."""
    domain = _domain(request.domain)
    if not 1 <= len(request.rules) <= MAX_RULES:
        raise InvalidArgument(f"a check needs 1 to {MAX_RULES} rules")
    _check_quantity("hits", request.hits, minimum=1)
    rules = [_checked_rule(rule) for rule in request.rules]
    if any(rule.kind is LimitKind.CONCURRENCY for rule in rules):
        raise InvalidArgument("CONCURRENCY needs a lease: use AcquireLease")
    return Acquisition(tuple(_check(domain, r, windows, request.hits) for r in rules), token)


def lease_release(release: LeaseRelease) -> Release:
    """The store's view of a release; raises InvalidArgument."""
    _check_id("subject", release.subject)
    _check_id("lease_id", release.lease_id)
    record, token = _lease_names(_domain(release.domain), release.subject, release.lease_id)
    return Release(record=record, token=token, actual_tokens=release.actual_tokens)


def _lease_names(domain: str, subject: str, lease_id: str) -> tuple[str, str]:
    """A lease's record key and its token in windows and slot sets (module docstring)."""
    subject, lease_id = quote(subject, safe=""), quote(lease_id, safe="")
    return f"l:{quote(domain, safe='')}:{subject}:{lease_id}", f"{subject}/{lease_id}"


def descriptor_key(domain: str, descriptor: Descriptor) -> str:
    """The descriptor's part of a storage key: injective, no separators left unencoded."""
    entries = ",".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in descriptor.entries)
    return f"{quote(domain, safe='')}|{entries}"


def _check(domain: str, rule: Rule, windows: StandardWindows, amount: int) -> Check:
    where = descriptor_key(domain, rule.descriptor)
    if rule.kind is LimitKind.CONCURRENCY:
        return Check(f"c:{where}", rule.kind, rule.limit, 0, amount)
    window = rule.window_ms or windows.of(rule.kind)
    return Check(f"{_TAGS[rule.kind]}:{window}:{where}", rule.kind, rule.limit, window, amount)


def _unique(checks: tuple[Check, ...]) -> tuple[Check, ...]:
    if len({check.key for check in checks}) < len(checks):
        raise InvalidArgument("two rules limit the same descriptor with the same kind and window")
    return checks


def _checked_rule(rule: Rule) -> Rule:
    entries = rule.descriptor.entries
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise InvalidArgument(f"a descriptor needs 1 to {MAX_ENTRIES} entries")
    for key, value in entries:
        _check_id("descriptor entry key", key)
        _check_id("descriptor entry value", value)
    _check_quantity("rule limit", rule.limit, minimum=1)
    if rule.kind is LimitKind.CONCURRENCY and rule.window_ms:
        raise InvalidArgument("a CONCURRENCY rule has no window")
    if not 0 <= rule.window_ms <= MAX_WINDOW_MS:
        raise InvalidArgument(f"a rule's window must be between 0 and {MAX_WINDOW_MS // 1000} s")
    return rule


def _domain(domain: str) -> str:
    if len(domain) > MAX_ID_LENGTH:
        raise InvalidArgument(f"domain is longer than {MAX_ID_LENGTH} characters")
    return domain or DEFAULT_DOMAIN


def _check_id(name: str, value: str) -> None:
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{name} is longer than {MAX_ID_LENGTH} characters")


def _check_quantity(name: str, value: int, minimum: int) -> None:
    if not minimum <= value <= MAX_QUANTITY:
        raise InvalidArgument(f"{name} must be between {minimum} and {MAX_QUANTITY}")
