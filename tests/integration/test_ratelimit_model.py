"""RL-6: the Lua scripts on real Redis against a brute-force model of the algorithm.

Hypothesis draws random sequences of acquisitions (shorthand limits plus account, key and
model rules), releases with actual tokens, lease-less checks and clock jumps that land
on window and TTL boundaries (plus or minus one millisecond). Every decision of the Redis
store (its clock injected in place of Redis TIME, so boundaries can be hit exactly) and of
the memory store must equal the reference's, field by field: allowed, replayed, the
denying check, and each check's used amount and reset time. The reference recomputes
everything from the full admission history, sharing no code with the stores.

Examples: RATELIMIT_MODEL_EXAMPLES (default 2000, in `make test`); `make soak` runs
20,000 more (tests/soak/test_ratelimit_soak.py).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ratelimit.limits import (
    Acquisition,
    Check,
    CheckRequest,
    Descriptor,
    LeaseRelease,
    LeaseRequest,
    LimitKind,
    Limits,
    Release,
    Rule,
    Usage,
    Verdict,
)
from services.ratelimit.redis_store import RedisLimiterStore
from services.ratelimit.rules import (
    StandardWindows,
    check_acquisition,
    lease_acquisition,
    lease_release,
)
from services.ratelimit.store import LimiterStore, MemoryLimiterStore
from services.ratelimit.windows import CONCURRENCY_RETRY_HINT_MS
from tests.unit.ratelimit.fakes import FixedClock

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("RATELIMIT_MODEL_EXAMPLES", "2000"))
# Windows and TTLs stay far above an example's real duration: Redis expires keys in real
# time (PEXPIRE), the scripts decide on the injected clock.
WINDOWS = StandardWindows(minute_ms=2_000, day_ms=5_000)
TTLS = (2_000, 2_500, 4_000)
START_MS = 1_700_000_000_000
TOMBSTONE_MS = 60_000  # the algorithm's, restated: the reference shares no code
ACCOUNT = Descriptor.of(("account", "acc"))
MODEL = Descriptor.of(("key", "A"), ("model", "m"))
RULES = (
    Rule(ACCOUNT, LimitKind.RPM, 3, window_ms=3_000),
    Rule(ACCOUNT, LimitKind.TPM, 90),
    Rule(ACCOUNT, LimitKind.CONCURRENCY, 2),
    Rule(MODEL, LimitKind.RPD, 4),
)


@dataclass
class _Entry:
    at: int
    weight: int


@dataclass
class _Record:
    expires_at: int
    entries: list[_Entry]
    slot_keys: list[str]


@dataclass
class _Live:
    """What counts in one check now: the window's entries, or the held slots' expiries."""

    entries: list[_Entry]
    expiries: list[int]

    @property
    def used(self) -> int:
        return len(self.expiries) + sum(e.weight for e in self.entries)


@dataclass
class Reference:
    """Brute force over the whole history: what the algorithm promises, nothing cached."""

    windows: dict[str, list[_Entry]] = field(default_factory=dict)
    slots: dict[str, dict[str, int]] = field(default_factory=dict)
    records: dict[str, _Record] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)

    def acquire(self, now: int, acq: Acquisition) -> Verdict:
        """Decide as the algorithm says, recomputing each window from its full log."""
        if acq.record and self.tombstones.get(acq.record, 0) > now:
            # Released before acquired: refused, so the order cannot leak a slot.
            usages = tuple(Usage(self._live(now, c).used, 0) for c in acq.checks)
            return Verdict(False, False, 0 if acq.checks else None, usages)
        record = self.records.get(acq.record) if acq.record else None
        if record is not None and record.expires_at > now:
            return Verdict(True, True, None, self._admitted(now, acq))
        lives = [self._live(now, check) for check in acq.checks]
        waits = [_wait(now, c, live) for c, live in zip(acq.checks, lives, strict=True)]
        denied = next((i for i, w in enumerate(waits) if w > 0), None)
        if denied is not None:
            usages = tuple(Usage(live.used, w) for live, w in zip(lives, waits, strict=True))
            return Verdict(False, False, denied, usages)
        reconciled, slot_keys = [], []
        for check in acq.checks:
            if check.is_slots:
                self.slots.setdefault(check.key, {})[acq.token] = now + acq.ttl_ms
                slot_keys.append(check.key)
            else:
                entry = _Entry(now, check.amount)
                self.windows.setdefault(check.key, []).append(entry)
                if check.reconciled:
                    reconciled.append(entry)
        if acq.record:
            self.records[acq.record] = _Record(now + acq.ttl_ms, reconciled, slot_keys)
        return Verdict(True, False, None, self._admitted(now, acq))

    def release(self, now: int, release: Release) -> bool:
        """Free the slots and reweigh the entries of a held, unexpired lease."""
        record = self.records.pop(release.record, None)
        if record is None:
            self.tombstones[release.record] = now + TOMBSTONE_MS
            return False
        if record.expires_at <= now:
            return False
        for key in record.slot_keys:
            self.slots[key].pop(release.token, None)
        if release.actual_tokens >= 0:
            for entry in record.entries:
                entry.weight = release.actual_tokens
        return True

    def _live(self, now: int, check: Check) -> _Live:
        if check.is_slots:
            return _Live([], sorted(e for e in self.slots.get(check.key, {}).values() if e > now))
        log = self.windows.get(check.key, [])
        return _Live([e for e in log if e.at > now - check.window_ms], [])

    def _admitted(self, now: int, acq: Acquisition) -> tuple[Usage, ...]:
        usages = []
        for check in acq.checks:
            live = self._live(now, check)
            oldest = live.entries[0].at + check.window_ms - now if live.entries else 0
            usages.append(Usage(live.used, oldest))
        return tuple(usages)


def _wait(now: int, check: Check, live: _Live) -> int:
    if check.is_slots:
        if len(live.expiries) < check.limit:
            return 0
        return max(1, min(live.expiries[0] - now, CONCURRENCY_RETRY_HINT_MS))
    if live.used + check.amount <= check.limit:
        return 0
    if check.amount > check.limit:
        return check.window_ms
    freed = 0
    for entry in live.entries:
        freed += entry.weight
        if live.used - freed + check.amount <= check.limit:
            return entry.at + check.window_ms - now
    return check.window_ms


@dataclass(frozen=True)
class AcquireStep:
    """Acquire lease L<lease> of subject A or B with the rules picked by `mask`."""

    lease: int
    subject: str
    mask: int
    tokens: int
    ttl_ms: int


@dataclass(frozen=True)
class ReleaseStep:
    """Release lease L<lease> of a subject (maybe the wrong one) with actual tokens."""

    lease: int
    subject: str
    actual: int


@dataclass(frozen=True)
class CheckStep:
    """A lease-less check of the (non-concurrency) rules picked by `mask`."""

    mask: int
    hits: int


@dataclass(frozen=True)
class AdvanceStep:
    """Move the clock."""

    ms: int


Step = AcquireStep | ReleaseStep | CheckStep | AdvanceStep

STEP = st.one_of(
    st.builds(AcquireStep, st.integers(0, 5), st.sampled_from("AB"), st.integers(0, 15),
              st.integers(0, 60), st.sampled_from(TTLS)),
    st.builds(ReleaseStep, st.integers(0, 5), st.sampled_from("AB"), st.integers(-1, 80)),
    st.builds(CheckStep, st.integers(1, 15), st.integers(1, 30)),
    st.builds(AdvanceStep, st.one_of(
        st.sampled_from([0, 1, 999, 1_000, 1_001, 1_999, 2_000, 2_001, 2_499, 2_500, 2_501,
                         2_999, 3_000, 3_001, 3_999, 4_000, 4_001, 4_999, 5_000, 5_001]),
        st.integers(0, 6_000))),
)
LIMITS = st.builds(Limits, rpm=st.integers(0, 4), tpm=st.sampled_from([0, 50, 100]),
                    concurrency=st.integers(0, 3), rpd=st.integers(0, 6))


@dataclass
class Subjects:
    """What one example runs against: the reference, both stores, one clock."""

    clock: FixedClock
    reference: Reference
    stores: list[LimiterStore]


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="module")
def client(redis_url: str, runner: asyncio.Runner) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    runner.run(connection.aclose())


def _rules(mask: int, lease: bool) -> tuple[Rule, ...]:
    picked = tuple(rule for i, rule in enumerate(RULES)
                   if mask & (1 << i) and (lease or rule.kind is not LimitKind.CONCURRENCY))
    return picked or ((RULES[0],) if not lease else ())


def _acquisition(n: int, step: AcquireStep | CheckStep, limits: Limits) -> Acquisition:
    if isinstance(step, CheckStep):
        request = CheckRequest(_rules(step.mask, lease=False), step.hits)
        return check_acquisition(request, WINDOWS, f"c{n}")
    lease = LeaseRequest(step.subject, f"L{step.lease}", limits, step.tokens, step.ttl_ms,
                         rules=_rules(step.mask, lease=True))
    return lease_acquisition(lease, WINDOWS, 1)


async def _run(subjects: Subjects, limits: Limits, steps: list[Step]) -> None:
    clock, reference = subjects.clock, subjects.reference
    for n, step in enumerate(steps):
        if isinstance(step, AdvanceStep):
            clock.advance(step.ms)
        elif isinstance(step, ReleaseStep):
            release = lease_release(LeaseRelease(step.subject, f"L{step.lease}", step.actual))
            want = reference.release(clock(), release)
            got = [(await s.release(release)).released for s in subjects.stores]
            assert got == [want, want], (n, step)
        else:
            acq = _acquisition(n, step, limits)
            expected = reference.acquire(clock(), acq)
            redis_v, memory_v = [await s.acquire(acq) for s in subjects.stores]
            assert redis_v.at_us == clock() * 1000, n
            for verdict in (redis_v, memory_v):
                assert (verdict.allowed, verdict.replayed, verdict.denied, verdict.usages) == (
                    expected.allowed, expected.replayed, expected.denied, expected.usages
                ), (n, step)


SEQUENCES = st.lists(STEP, min_size=1, max_size=40)
HYPOTHESIS = settings(deadline=None, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])


def check_sequence(runner: asyncio.Runner, client: redis.Redis, limits: Limits,
                   steps: list[Step]) -> None:
    """Run one drawn sequence against the reference, the Redis store and the memory store."""
    clock = FixedClock(START_MS)
    prefix = f"test:model:{uuid.uuid4().hex[:12]}:"
    stores: list[LimiterStore] = [RedisLimiterStore(client, prefix, clock),
                                  MemoryLimiterStore(clock)]
    runner.run(_run(Subjects(clock, Reference(), stores), limits, steps))


@settings(HYPOTHESIS, max_examples=EXAMPLES)
@given(limits=LIMITS, steps=SEQUENCES)
def test_the_lua_script_decides_as_the_model(
    runner: asyncio.Runner, client: redis.Redis, limits: Limits, steps: list[Step]
) -> None:
    check_sequence(runner, client, limits, steps)
