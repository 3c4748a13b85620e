"""rules.py: what a request may carry, the windows it gets, and the storage keys."""

from __future__ import annotations

import pytest

from services.ratelimit.errors import InvalidArgument
from services.ratelimit.limits import (
    CheckRequest,
    Descriptor,
    LeaseRelease,
    LeaseRequest,
    LimitKind,
    Limits,
    Rule,
)
from services.ratelimit.rules import (
    StandardWindows,
    check_acquisition,
    descriptor_key,
    lease_acquisition,
    lease_release,
)

WINDOWS = StandardWindows(minute_ms=2_000, day_ms=9_000)
ACCOUNT = Descriptor.of(("account", "acc_1"))
NONE = Limits()


def lease(*rules: Rule, limits: Limits = NONE, subject: str = "s", lease_id: str = "r",
          tokens: int = 0, ttl_ms: int = 0, domain: str = "") -> LeaseRequest:
    return LeaseRequest(subject, lease_id, limits, tokens, ttl_ms, domain or "apirelay", rules)


@pytest.mark.parametrize(
    "request_",
    [
        lease(subject=""), lease(lease_id=""), lease(subject="s" * 257),
        lease(lease_id="r" * 257), lease(limits=Limits(rpm=-1)), lease(limits=Limits(tpm=-1)),
        lease(limits=Limits(concurrency=-1)), lease(limits=Limits(rpd=-1)), lease(tokens=-1),
        lease(limits=Limits(tpm=10**12 + 1)), lease(tokens=10**12 + 1), lease(ttl_ms=-1),
        lease(ttl_ms=24 * 3600 * 1000 + 1), lease(domain="d" * 257),
        lease(Rule(Descriptor(()), LimitKind.RPM, 1)),
        lease(Rule(Descriptor.of(*[("k", "v")] * 9), LimitKind.RPM, 1)),
        lease(Rule(Descriptor.of(("", "v")), LimitKind.RPM, 1)),
        lease(Rule(Descriptor.of(("account", "")), LimitKind.RPM, 1)),
        lease(Rule(ACCOUNT, LimitKind.RPM, 0)),
        lease(Rule(ACCOUNT, LimitKind.RPM, 1, window_ms=-1)),
        lease(Rule(ACCOUNT, LimitKind.RPM, 1, window_ms=32 * 24 * 3600 * 1000)),
        lease(Rule(ACCOUNT, LimitKind.CONCURRENCY, 1, window_ms=1_000)),
        lease(*[Rule(Descriptor.of(("n", str(i))), LimitKind.RPM, 1) for i in range(17)]),
        lease(Rule(ACCOUNT, LimitKind.RPM, 1), Rule(ACCOUNT, LimitKind.RPM, 5)),
        lease(Rule(Descriptor.of(("key", "s")), LimitKind.TPM, 5), limits=Limits(tpm=9)),
    ],
)
def test_malformed_lease_requests_are_invalid_arguments(request_: LeaseRequest) -> None:
    with pytest.raises(InvalidArgument):
        lease_acquisition(request_, WINDOWS, 1_000)


def test_limits_come_first_as_rules_on_the_key_then_the_rules() -> None:
    rules = (Rule(ACCOUNT, LimitKind.TPM, 50), Rule(ACCOUNT, LimitKind.RPM, 7, window_ms=500))
    acquisition = lease_acquisition(
        lease(*rules, limits=Limits(rpm=1, tpm=2, concurrency=3, rpd=4), tokens=40), WINDOWS, 1_000)
    checks = [(c.key, c.kind, c.limit, c.window_ms, c.amount) for c in acquisition.checks]
    assert checks == [
        ("r:2000:apirelay|key=s", LimitKind.RPM, 1, 2_000, 1),
        ("t:2000:apirelay|key=s", LimitKind.TPM, 2, 2_000, 40),
        ("c:apirelay|key=s", LimitKind.CONCURRENCY, 3, 0, 1),
        ("d:9000:apirelay|key=s", LimitKind.RPD, 4, 9_000, 1),
        ("t:2000:apirelay|account=acc_1", LimitKind.TPM, 50, 2_000, 40),
        ("r:500:apirelay|account=acc_1", LimitKind.RPM, 7, 500, 1),
    ]
    assert acquisition.ttl_ms == 1_000 and acquisition.record == "l:apirelay:s:r"


def test_the_same_descriptor_with_another_window_is_another_limit() -> None:
    rules = (Rule(ACCOUNT, LimitKind.RPM, 5), Rule(ACCOUNT, LimitKind.RPM, 100, window_ms=60_000))
    assert len(lease_acquisition(lease(*rules), WINDOWS, 1_000).checks) == 2


def test_descriptor_keys_are_injective() -> None:
    tricky = [
        ("d", Descriptor.of(("a", "b"), ("c", "d"))),
        ("d", Descriptor.of(("a", "b,c=d"))),
        ("d", Descriptor.of(("a=b", "c"))),
        ("d|a=b", Descriptor.of(("c", "d"))),
        ("d", Descriptor.of(("c", "d"), ("a", "b"))),
        ("d:x", Descriptor.of(("a", "b"))),
        ("d", Descriptor.of(("a", "b\nc"))),
    ]
    keys = [descriptor_key(domain, descriptor) for domain, descriptor in tricky]
    assert len(set(keys)) == len(keys)
    assert not any("\n" in key or ":" in key for key in keys)


def test_lease_names_are_scoped_by_domain_and_subject() -> None:
    a = lease_acquisition(lease(subject="a:b", lease_id="c"), WINDOWS, 1)
    b = lease_acquisition(lease(subject="a", lease_id="b:c"), WINDOWS, 1)
    c = lease_acquisition(lease(subject="a:b", lease_id="c", domain="other"), WINDOWS, 1)
    assert len({a.record, b.record, c.record}) == 3 and a.token != b.token
    release = lease_release(LeaseRelease("a:b", "c"))
    assert (release.record, release.token) == (a.record, a.token)


def test_a_check_takes_its_hits_from_every_rule() -> None:
    rules = (Rule(ACCOUNT, LimitKind.TPM, 100), Rule(ACCOUNT, LimitKind.RPD, 10))
    acquisition = check_acquisition(CheckRequest(rules, hits=7, domain="router"), WINDOWS, "t1")
    assert [c.amount for c in acquisition.checks] == [7, 7]
    assert acquisition.checks[0].key == "t:2000:router|account=acc_1"
    assert (acquisition.record, acquisition.ttl_ms, acquisition.token) == ("", 0, "t1")


@pytest.mark.parametrize(
    "request_",
    [
        CheckRequest(()),
        CheckRequest((Rule(ACCOUNT, LimitKind.CONCURRENCY, 1),)),
        CheckRequest((Rule(ACCOUNT, LimitKind.RPM, 1),), hits=0),
        CheckRequest((Rule(ACCOUNT, LimitKind.RPM, 1),), hits=10**12 + 1),
        CheckRequest(tuple(Rule(Descriptor.of(("n", str(i))), LimitKind.RPM, 1)
                           for i in range(17))),
    ],
)
def test_malformed_checks_are_invalid_arguments(request_: CheckRequest) -> None:
    with pytest.raises(InvalidArgument):
        check_acquisition(request_, WINDOWS, "t")


@pytest.mark.parametrize(("subject", "lease_id"), [("", "r"), ("s", ""), ("s" * 257, "r")])
def test_malformed_releases_are_invalid_arguments(subject: str, lease_id: str) -> None:
    with pytest.raises(InvalidArgument):
        lease_release(LeaseRelease(subject, lease_id))
