"""edge.settlement: what gets settled, and the retries of the background calls."""

from __future__ import annotations

import grpc

from edge.delivered import completion_event_texts
from edge.domain import Usage, UsageSource
from edge.errors import UpstreamError
from edge.settlement import Metering, Outcome, Settler, UnitsBilled
from services.common.tokens import estimate_tokens


class FakeBilling:
    def __init__(self, failures: list[grpc.StatusCode] | None = None) -> None:
        self.failures = list(failures or [])
        self.settles: list[tuple[str, Usage, UsageSource, str]] = []
        self.releases: list[str] = []
        self.attempts = 0

    async def settle(self, request_id: str, usage: Usage, source: UsageSource, channel: str) -> int:
        self.attempts += 1
        if self.failures:
            raise UpstreamError("billing", self.failures.pop(0), "down")
        self.settles.append((request_id, usage, source, channel))
        return 1

    async def release(self, request_id: str) -> bool:
        self.releases.append(request_id)
        return True


class FakeLeases:
    def __init__(self) -> None:
        self.releases: list[tuple[str, str, str, int]] = []

    async def release(self, request_id: str, lease_id: str, subject: str, actual: int) -> bool:
        self.releases.append((request_id, lease_id, subject, actual))
        return True


def outcome(**fields: object) -> Outcome:
    return Outcome("r1", "k1", "r1", prompt_estimate=10, **fields)  # type: ignore[arg-type]


def test_reported_usage_wins() -> None:
    usage = Usage(5, 6, 11)
    found = outcome(usage=usage, usage_source=UsageSource.UPSTREAM)
    found.delivered.append("ignored")
    assert found.final_usage() == (usage, UsageSource.UPSTREAM)


def test_nothing_consumed_means_release() -> None:
    assert outcome().final_usage() is None


def test_delivered_text_or_a_gone_client_is_estimated() -> None:
    delivered = outcome()
    delivered.record_chunk(b'{"choices":[{"delta":{"content":"Hello world"}}]}')
    n = estimate_tokens("Hello world")
    assert delivered.final_usage() == (Usage(10, n, 10 + n), UsageSource.ESTIMATED)
    assert outcome(client_gone=True).final_usage() == (Usage(10, 0, 10), UsageSource.ESTIMATED)
    assert outcome(completed=True).final_usage() == (Usage(10, 0, 10), UsageSource.ESTIMATED)


async def test_settle_then_lease_release_with_actual_tokens() -> None:
    billing, leases = FakeBilling(), FakeLeases()
    settler = Settler(billing, leases, backoff_s=0)
    settler.finish(outcome(usage=Usage(5, 6, 11), channel="c"))
    await settler.drain()
    assert billing.settles == [("r1", Usage(5, 6, 11), UsageSource.UPSTREAM, "c")]
    assert billing.releases == []
    assert leases.releases == [("r1", "r1", "k1", 11)]
    assert settler.pending == 0


async def test_release_when_nothing_was_consumed() -> None:
    billing, leases = FakeBilling(), FakeLeases()
    settler = Settler(billing, leases, backoff_s=0)
    settler.finish(outcome())
    await settler.drain()
    assert billing.settles == [] and billing.releases == ["r1"]
    assert leases.releases == [("r1", "r1", "k1", 0)]


async def test_settle_retries_unavailable_then_succeeds() -> None:
    billing, leases = FakeBilling([grpc.StatusCode.UNAVAILABLE] * 2), FakeLeases()
    settler = Settler(billing, leases, attempts=3, backoff_s=0)
    settler.finish(outcome(usage=Usage(1, 1, 2)))
    await settler.drain()
    assert billing.attempts == 3 and len(billing.settles) == 1
    assert len(leases.releases) == 1  # the lease is released after the settle


async def test_settle_gives_up_and_logs_but_still_releases_the_lease(caplog) -> None:  # type: ignore[no-untyped-def]
    billing, leases = FakeBilling([grpc.StatusCode.UNAVAILABLE] * 5), FakeLeases()
    settler = Settler(billing, leases, attempts=3, backoff_s=0)
    settler.finish(outcome(usage=Usage(1, 1, 2)))
    await settler.drain()
    assert billing.attempts == 3 and billing.settles == []
    assert "settle_credit gave up after 3" in caplog.text
    assert len(leases.releases) == 1


async def test_non_retryable_errors_are_not_retried() -> None:
    billing, leases = FakeBilling([grpc.StatusCode.INVALID_ARGUMENT]), FakeLeases()
    settler = Settler(billing, leases, attempts=3, backoff_s=0)
    settler.finish(outcome(usage=Usage(1, 1, 2)))
    await settler.drain()
    assert billing.attempts == 1


async def test_undo_releases_only_what_it_is_told() -> None:
    billing, leases = FakeBilling(), FakeLeases()
    settler = Settler(billing, leases, backoff_s=0)
    settler.undo("r2", "k1", hold=True, lease_id="")
    settler.undo("r3", "k1", hold=False, lease_id="r3")
    await settler.drain()
    assert billing.releases == ["r2"]
    assert leases.releases == [("r3", "r3", "k1", 0)]


# --- billing without a reported usage, per endpoint kind ---------------------------------


def test_unit_requests_bill_their_units_once_consumed() -> None:
    speech = Metering(units={"character": 12})
    nothing_sent = Outcome("r", "k", "r", 0, speech, client_gone=True)
    assert nothing_sent.final_usage() is None  # no audio reached the client
    audio_sent = Outcome("r", "k", "r", 0, speech)
    audio_sent.record_chunk(b"ID3")
    assert audio_sent.final_usage() == (Usage(0, 0, 0, units={"character": 12}),
                                        UsageSource.ESTIMATED)

    audio_in = Metering(units={"audio_second": 3}, units_billed=UnitsBilled.ON_CALL)
    assert Outcome("r", "k", "r", 0, audio_in).final_usage() is None  # never called
    lost = Outcome("r", "k", "r", 0, audio_in, called=True)
    assert lost.final_usage() == (Usage(0, 0, 0, units={"audio_second": 3}),
                                  UsageSource.ESTIMATED)
    refused = Outcome("r", "k", "r", 0, audio_in, called=True)
    refused.record_usage(None, UsageSource.UPSTREAM, "c", failed=True)
    assert refused.final_usage() is None


def test_delivered_text_is_read_with_the_endpoints_reader() -> None:
    legacy = Outcome("r", "k", "r", 10, Metering(texts=completion_event_texts))
    legacy.record_chunk(b'data: {"choices":[{"text":"Hello world"}]}\n\n')
    n = estimate_tokens("Hello world")
    assert legacy.final_usage() == (Usage(10, n, 10 + n), UsageSource.ESTIMATED)
