"""The window algorithms through MemoryLimiterStore, with a fixed clock: exact boundaries."""

from __future__ import annotations

import itertools

import pytest

from services.ratelimit.limits import (
    Descriptor,
    LeaseRelease,
    LeaseRequest,
    LimitKind,
    Limits,
    Rule,
    Usage,
)
from services.ratelimit.rules import StandardWindows, lease_acquisition, lease_release
from services.ratelimit.store import MemoryLimiterStore
from services.ratelimit.windows import CONCURRENCY_RETRY_HINT_MS
from tests.unit.ratelimit.fakes import FixedClock, View

WINDOW = 60_000
DAY = 86_400_000
TTL = 600_000
ACCOUNT = Descriptor.of(("account", "acc_1"))


class Harness:
    """A memory store on a fixed clock, with short helpers."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.store = MemoryLimiterStore(self.clock)
        self._ids = itertools.count()

    async def acquire(
        self, *, rpm: int = 0, tpm: int = 0, concurrency: int = 0, rpd: int = 0,
        tokens: int = 0, lease_id: str | None = None, ttl_ms: int = TTL,
        subject: str = "key_1", rules: tuple[Rule, ...] = (),
    ) -> View:
        lease_id = lease_id or f"req_{next(self._ids)}"
        limits = Limits(rpm=rpm, tpm=tpm, concurrency=concurrency, rpd=rpd)
        request = LeaseRequest(subject, lease_id, limits, tokens, ttl_ms, rules=rules)
        acquisition = lease_acquisition(request, StandardWindows(WINDOW, DAY), TTL)
        return View(await self.store.acquire(acquisition), limits.finite())

    async def release(self, lease_id: str, actual: int = -1, subject: str = "key_1") -> bool:
        release = lease_release(LeaseRelease(subject, lease_id, actual))
        return (await self.store.release(release)).released


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_rpm_admits_exactly_n_then_denies_until_the_window_passes(h: Harness) -> None:
    results = [await h.acquire(rpm=5) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    denied = results[-1]
    assert denied.denied_by is LimitKind.RPM
    assert denied.rpm == Usage(used=5, reset_after_ms=WINDOW)
    h.clock.advance(WINDOW - 1)
    assert not (await h.acquire(rpm=5)).allowed
    h.clock.advance(1)
    after = [await h.acquire(rpm=5) for _ in range(6)]
    assert [v.allowed for v in after] == [True] * 5 + [False]
    assert [v.rpm.used for v in after] == [1, 2, 3, 4, 5, 5]


async def test_rpm_window_slides_instead_of_resetting(h: Harness) -> None:
    for _ in range(3):
        assert (await h.acquire(rpm=5)).allowed
    h.clock.advance(30_000)
    for _ in range(2):
        assert (await h.acquire(rpm=5)).allowed
    h.clock.advance(30_000)
    # The first three left the window, the two from t=30 s are still in it.
    assert [(await h.acquire(rpm=5)).allowed for _ in range(4)] == [True] * 3 + [False]
    denied = await h.acquire(rpm=5)
    assert denied.rpm.reset_after_ms == 30_000


async def test_rpd_counts_requests_over_a_day(h: Harness) -> None:
    assert [(await h.acquire(rpd=2)).allowed for _ in range(3)] == [True, True, False]
    h.clock.advance(WINDOW * 60)
    denied = await h.acquire(rpm=100, rpd=2)
    assert denied.denied_by is LimitKind.RPD and denied.rpd.reset_after_ms == DAY - WINDOW * 60
    assert denied.rpm.reset_after_ms == 0
    h.clock.advance(DAY - WINDOW * 60)
    assert (await h.acquire(rpd=2)).allowed


async def test_admission_reports_when_the_oldest_entry_leaves(h: Harness) -> None:
    await h.acquire(rpm=5, tpm=100, concurrency=9, tokens=10)
    h.clock.advance(10_000)
    verdict = await h.acquire(rpm=5, tpm=100, concurrency=9, tokens=10)
    assert verdict.rpm == Usage(2, WINDOW - 10_000)
    assert verdict.tpm == Usage(20, WINDOW - 10_000)
    assert verdict.concurrency == Usage(2, 0)


async def test_a_denial_consumes_nothing(h: Harness) -> None:
    assert (await h.acquire(rpm=2, tpm=100, concurrency=5, tokens=60)).allowed
    denied = await h.acquire(rpm=2, tpm=100, concurrency=5, tokens=60)
    assert denied.denied_by is LimitKind.TPM
    assert (denied.rpm.used, denied.tpm.used, denied.concurrency.used) == (1, 60, 1)
    # The denied request took neither its RPM unit nor its slot.
    assert (await h.acquire(rpm=2, tpm=100, concurrency=5, tokens=40)).allowed
    assert (await h.acquire(rpm=2)).denied_by is LimitKind.RPM


async def test_first_denying_limit_is_named_and_every_limit_reports_its_wait(h: Harness) -> None:
    assert (await h.acquire(rpm=1, tpm=10, concurrency=1, tokens=10)).allowed
    denied = await h.acquire(rpm=1, tpm=10, concurrency=1, tokens=10)
    assert denied.denied_by is LimitKind.RPM
    assert denied.rpm.reset_after_ms == WINDOW
    assert denied.tpm.reset_after_ms == WINDOW
    assert denied.concurrency.reset_after_ms == CONCURRENCY_RETRY_HINT_MS


async def test_limits_with_room_report_no_wait_on_a_denial(h: Harness) -> None:
    assert (await h.acquire(rpm=10, tpm=50, tokens=50)).allowed
    denied = await h.acquire(rpm=10, tpm=50, tokens=1)
    assert denied.denied_by is LimitKind.TPM
    assert denied.rpm.reset_after_ms == 0


async def test_tpm_admits_up_to_the_limit_and_says_when_enough_tokens_leave(h: Harness) -> None:
    assert (await h.acquire(tpm=100, tokens=60)).allowed
    h.clock.advance(5_000)
    assert (await h.acquire(tpm=100, tokens=30)).allowed
    assert (await h.acquire(tpm=100, tokens=10)).allowed  # exactly 100
    denied = await h.acquire(tpm=100, tokens=50)
    assert denied.denied_by is LimitKind.TPM and denied.tpm.used == 100
    # 60 tokens must leave: the first entry, 5 s older than now.
    assert denied.tpm.reset_after_ms == WINDOW - 5_000
    h.clock.advance(WINDOW - 5_000)
    assert (await h.acquire(tpm=100, tokens=50)).allowed
    assert not (await h.acquire(tpm=100, tokens=11)).allowed


async def test_tpm_wait_walks_entries_until_enough_tokens_leave(h: Harness) -> None:
    for _ in range(4):
        assert (await h.acquire(tpm=100, tokens=25)).allowed
        h.clock.advance(1_000)
    denied = await h.acquire(tpm=100, tokens=60)
    # Three of the four 25-token entries must leave; the third was logged at t=2 s.
    assert denied.tpm.reset_after_ms == WINDOW - 2_000


async def test_an_estimate_above_the_tpm_limit_never_fits(h: Harness) -> None:
    denied = await h.acquire(tpm=100, tokens=101)
    assert denied.denied_by is LimitKind.TPM
    assert denied.tpm == Usage(0, WINDOW)


async def test_release_replaces_the_estimate_with_actual_tokens(h: Harness) -> None:
    assert (await h.acquire(tpm=100, tokens=80, lease_id="a")).allowed
    assert not (await h.acquire(tpm=100, tokens=30)).allowed
    assert await h.release("a", actual=10)
    verdict = await h.acquire(tpm=100, tokens=90)
    assert verdict.allowed and verdict.tpm.used == 100


async def test_release_can_reconcile_upwards_and_over_the_limit(h: Harness) -> None:
    assert (await h.acquire(tpm=100, tokens=10, lease_id="a")).allowed
    assert await h.release("a", actual=150)
    denied = await h.acquire(tpm=100, tokens=0)
    assert denied.denied_by is LimitKind.TPM and denied.tpm.used == 150


async def test_negative_actual_tokens_keep_the_estimate(h: Harness) -> None:
    assert (await h.acquire(tpm=100, tokens=80, lease_id="a")).allowed
    assert await h.release("a", actual=-1)
    assert (await h.acquire(tpm=100, tokens=21)).tpm.used == 80


async def test_reconcile_after_the_window_does_not_touch_the_new_window(h: Harness) -> None:
    assert (await h.acquire(tpm=100, tokens=80, lease_id="a")).allowed
    h.clock.advance(WINDOW)
    assert (await h.acquire(tpm=100, tokens=100)).allowed
    assert await h.release("a", actual=0)
    assert (await h.acquire(tpm=100, tokens=1)).denied_by is LimitKind.TPM


async def test_concurrency_slots_free_on_release(h: Harness) -> None:
    assert (await h.acquire(concurrency=2, lease_id="a")).allowed
    assert (await h.acquire(concurrency=2, lease_id="b")).allowed
    denied = await h.acquire(concurrency=2)
    assert denied.denied_by is LimitKind.CONCURRENCY and denied.concurrency.used == 2
    assert await h.release("a")
    assert (await h.acquire(concurrency=2)).allowed
    assert not (await h.acquire(concurrency=2)).allowed


async def test_concurrency_slots_expire_at_their_ttl(h: Harness) -> None:
    assert (await h.acquire(concurrency=1, lease_id="a", ttl_ms=5_000)).allowed
    h.clock.advance(4_500)
    denied = await h.acquire(concurrency=1)
    assert denied.concurrency.reset_after_ms == 500
    h.clock.advance(500)
    assert (await h.acquire(concurrency=1, lease_id="b")).allowed
    assert not await h.release("a")
    assert await h.release("b")


async def test_acquiring_the_same_lease_twice_consumes_once(h: Harness) -> None:
    first = await h.acquire(rpm=2, tpm=100, concurrency=1, tokens=60, lease_id="a")
    again = await h.acquire(rpm=2, tpm=100, concurrency=1, tokens=60, lease_id="a")
    assert first.allowed and not first.replayed
    assert again.allowed and again.replayed
    assert (again.rpm.used, again.tpm.used, again.concurrency.used) == (1, 60, 1)


async def test_a_released_lease_id_counts_again_when_reacquired(h: Harness) -> None:
    assert (await h.acquire(rpm=2, tpm=100, tokens=30, lease_id="a")).allowed
    assert await h.release("a", actual=10)
    # Same millisecond, same lease: a second entry, not an overwrite of the first.
    again = await h.acquire(rpm=2, tpm=100, tokens=30, lease_id="a")
    assert again.allowed and not again.replayed
    assert (again.rpm.used, again.tpm.used) == (2, 40)
    assert await h.release("a", actual=5)
    assert (await h.acquire(tpm=100, tokens=85)).tpm.used == 100


async def test_releasing_twice_or_an_unknown_lease_is_a_no(h: Harness) -> None:
    assert (await h.acquire(concurrency=1, lease_id="a")).allowed
    assert not await h.release("a", subject="another-subject")
    assert await h.release("a")
    assert not await h.release("a")
    assert not await h.release("never-acquired")


async def test_subjects_do_not_share_limits_or_lease_ids(h: Harness) -> None:
    assert (await h.acquire(rpm=1, subject="x", lease_id="same")).allowed
    other = await h.acquire(rpm=1, subject="y", lease_id="same")
    assert other.allowed and not other.replayed
    assert not (await h.acquire(rpm=1, subject="x")).allowed


async def test_unlimited_limits_are_not_counted(h: Harness) -> None:
    for _ in range(100):
        assert (await h.acquire(tokens=1_000)).allowed
    verdict = await h.acquire(rpm=5, tpm=10, tokens=1)
    assert (verdict.rpm.used, verdict.tpm.used) == (1, 1)


async def test_a_rule_on_the_account_binds_every_key_and_denies_all_or_nothing(
    h: Harness,
) -> None:
    account = (Rule(ACCOUNT, LimitKind.RPM, 3),)
    assert (await h.acquire(rpm=2, subject="k1", rules=account)).allowed
    assert (await h.acquire(rpm=2, subject="k2", rules=account)).allowed
    assert (await h.acquire(rpm=2, subject="k1", rules=account)).allowed
    denied = await h.acquire(rpm=2, subject="k2", rules=account)
    assert denied.denied_by == "rule0" and denied.rule(0) == Usage(3, WINDOW)
    assert denied.rpm == Usage(1, 0)  # k2 had room, and nothing of it was taken
    assert (await h.acquire(rpm=2, subject="k2")).rpm.used == 2


async def test_a_rule_with_its_own_window_and_a_key_and_model_descriptor(h: Harness) -> None:
    model = Descriptor.of(("key", "key_1"), ("model", "gpt-x"))
    rules = (Rule(model, LimitKind.RPM, 1, window_ms=2_000),)
    assert (await h.acquire(rpm=10, rules=rules)).allowed
    denied = await h.acquire(rpm=10, rules=rules)
    assert denied.denied_by == "rule0" and denied.rule(0).reset_after_ms == 2_000
    assert (await h.acquire(rpm=10)).rpm.used == 2  # other models: only the key's limit
    h.clock.advance(2_000)
    assert (await h.acquire(rpm=10, rules=rules)).allowed


async def test_concurrency_on_the_account_is_freed_by_the_release(h: Harness) -> None:
    rules = (Rule(ACCOUNT, LimitKind.CONCURRENCY, 1), Rule(ACCOUNT, LimitKind.TPM, 100))
    assert (await h.acquire(subject="k1", lease_id="a", tokens=90, rules=rules)).allowed
    denied = await h.acquire(subject="k2", tokens=5, rules=rules)
    assert denied.denied_by == "rule0" and denied.rule(1).reset_after_ms == 0
    assert await h.release("a", actual=20, subject="k1")
    assert (await h.acquire(subject="k2", tokens=80, rules=rules)).rule(1).used == 100


async def test_idle_windows_and_records_are_forgotten(h: Harness) -> None:
    for i in range(10):
        await h.acquire(rpm=5, concurrency=5, subject=f"idle_{i}", ttl_ms=1_000)
    assert h.store.size() == 30
    h.clock.advance(WINDOW)
    for _ in range(1_100):
        await h.acquire(rpm=10_000, subject="busy", ttl_ms=1)
        h.clock.advance(1)
    state = h.store._state  # white-box: what the sweep kept
    names = [*state.windows, *state.slots, *state.records]
    assert not [name for name in names if "idle" in name]
    assert h.store.size() < 100  # busy's window and the records since the sweep


async def test_many_released_leases_do_not_keep_expiry_entries(h: Harness) -> None:
    for i in range(5_000):
        assert (await h.acquire(concurrency=1, lease_id=f"l{i}")).allowed
        assert await h.release(f"l{i}")
    assert (await h.acquire(concurrency=1)).allowed
    assert not (await h.acquire(concurrency=1)).allowed
    (slots,) = h.store._state.slots.values()  # white-box: the stale-entry compaction
    assert len(slots._expiries) < 100
