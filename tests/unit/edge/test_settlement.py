"""edge.settlement: what gets settled, the retries, and the durable path when billing is down."""

from __future__ import annotations

import grpc

from apirelay.billing.v1 import billing_pb2
from edge.delivered import completion_event_texts
from edge.domain import Usage, UsageSource
from edge.metrics import DEAD_LETTERS, SPOOLED
from edge.outcome import Metering, Outcome, UnitsBilled
from edge.spool_sqlite import SqliteSpool
from edge.translate import usage_from_proto
from services.common.tokens import estimate_tokens
from tests.unit.edge.billing_fakes import FakeBilling, FakeLeases, settler_for


def outcome(**fields: object) -> Outcome:
    return Outcome("r1", "k1", "r1", prompt_estimate=10, **fields)  # type: ignore[arg-type]


def settled(billing: FakeBilling) -> list[tuple[str, Usage, UsageSource, str]]:
    return [
        (s.request_id, usage_from_proto(s.usage) or Usage(0, 0, 0),
         UsageSource(s.usage_source), s.channel)
        for s in billing.settles
    ]


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
    settler = settler_for(billing, leases, backoff_s=0)
    settler.finish(outcome(usage=Usage(5, 6, 11), channel="c"))
    await settler.drain()
    assert settled(billing) == [("r1", Usage(5, 6, 11), UsageSource.UPSTREAM, "c")]
    assert billing.releases == []
    assert leases.releases == [("r1", "r1", "k1", 11)]
    assert settler.pending == 0


async def test_release_when_nothing_was_consumed() -> None:
    billing, leases = FakeBilling(), FakeLeases()
    settler = settler_for(billing, leases, backoff_s=0)
    settler.finish(outcome(channel="c"))
    await settler.drain()
    assert billing.settles == []
    assert [r.request_id for r in billing.releases] == ["r1"]
    assert billing.releases[0].HasField("outcome")  # the request ran: the log records it
    assert billing.releases[0].outcome.status == billing_pb2.REQUEST_STATUS_ERROR
    assert leases.releases == [("r1", "r1", "k1", 0)]


async def test_settle_retries_unavailable_then_succeeds() -> None:
    billing, leases = FakeBilling([grpc.StatusCode.UNAVAILABLE] * 2), FakeLeases()
    settler = settler_for(billing, leases, attempts=3, backoff_s=0)
    settler.finish(outcome(usage=Usage(1, 1, 2)))
    await settler.drain()
    assert billing.attempts == 3 and len(billing.settles) == 1
    assert await settler.outbox.spool.depth() == 0
    assert len(leases.releases) == 1  # the lease is released after the settle


async def test_unreachable_billing_spools_the_settle_and_the_drain_applies_it_once() -> None:
    billing, leases = FakeBilling([grpc.StatusCode.DEADLINE_EXCEEDED] * 3), FakeLeases()
    settler = settler_for(billing, leases, attempts=2, backoff_s=0)
    spooled = SPOOLED.labels("settle")._value.get()
    settler.finish(outcome(usage=Usage(1, 1, 2), channel="c"))
    await settler.drain()
    assert billing.settles == [] and await settler.outbox.spool.depth() == 1
    assert SPOOLED.labels("settle")._value.get() == spooled + 1
    assert len(leases.releases) == 1  # the lease does not wait for billing
    assert await settler.outbox.drain() is False  # billing still down: the entry stays
    assert await settler.outbox.spool.depth() == 1
    assert await settler.outbox.drain() is True
    assert settled(billing) == [("r1", Usage(1, 1, 2), UsageSource.UPSTREAM, "c")]
    assert await settler.outbox.spool.depth() == 0
    assert await settler.outbox.drain() is True and len(billing.settles) == 1
    await settler.outbox.close(1.0)


async def test_a_permanent_refusal_is_a_dead_letter_never_retried(caplog) -> None:  # type: ignore[no-untyped-def]
    billing, leases = FakeBilling([grpc.StatusCode.NOT_FOUND]), FakeLeases()
    settler = settler_for(billing, leases, attempts=3, backoff_s=0)
    dead = DEAD_LETTERS.labels("settle")._value.get()
    settler.finish(outcome(usage=Usage(1, 1, 2)))
    await settler.drain()
    assert billing.attempts == 1
    spool = settler.outbox.spool
    assert isinstance(spool, SqliteSpool)
    assert await spool.depth() == 0 and await spool.dead_letters() == 1
    assert DEAD_LETTERS.labels("settle")._value.get() == dead + 1
    assert "r1" in caplog.text and "dead letter" in caplog.text
    assert len(leases.releases) == 1
    await settler.outbox.close(1.0)


async def test_undo_releases_only_what_it_is_told_without_an_outcome() -> None:
    billing, leases = FakeBilling(), FakeLeases()
    settler = settler_for(billing, leases, backoff_s=0)
    settler.undo("r2", "k1", hold=True, lease_id="")
    settler.undo("r3", "k1", hold=False, lease_id="r3")
    await settler.drain()
    assert [r.request_id for r in billing.releases] == ["r2"]
    assert not billing.releases[0].HasField("outcome")  # the request never ran
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
