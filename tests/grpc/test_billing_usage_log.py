"""The usage log's reads (ListUsage, GetDailyUsage) on SQLite and PostgreSQL, and via gRPC."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Connection, insert

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from services.billing.database import create_schema, open_database
from services.billing.errors import InvalidBillingRequest
from services.billing.models import UsageRecordRow
from services.billing.runner import TransactionRunner
from services.billing.usage_service import UsageQueries
from tests.grpc.billing_helpers import ADMIN, fund, reserve, serve_billing, settle

T0 = datetime(2026, 3, 14, 23, 59, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # Sync on purpose: the session's postgres_url fixture starts its own event loop.
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def runner(database_url: str) -> AsyncIterator[TransactionRunner]:
    runner = open_database(database_url)
    await create_schema(runner)
    try:
        yield runner
    finally:
        await runner.close()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def row(account: str, at: datetime, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "request_id": uid("req"), "account_id": account, "key_id": "key-a", "model": "m",
        "channel": "ch", "price_group": "default", "prompt_tokens": 10,
        "completion_tokens": 5, "cached_prompt_tokens": 0, "cache_write_prompt_tokens": 0,
        "reasoning_tokens": 0, "units_json": "{}", "usage_source": "upstream",
        "cost_nanos": 1_000, "status": "ok", "error_code": "", "stream": False,
        "latency_ms": 100, "first_token_ms": 0, "late": False,
        "day": at.astimezone(UTC).date().isoformat(), "created_at": at,
    }
    values.update(overrides)
    return values


async def insert_rows(runner: TransactionRunner, rows: list[dict[str, Any]]) -> None:
    def body(conn: Connection) -> None:
        conn.execute(insert(UsageRecordRow), rows)

    await runner.write(body)


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


async def all_pages(queries: UsageQueries, **fields: Any) -> list[list[str]]:
    pages, token = [], ""
    while True:
        reply = await queries.list_usage(billing_pb2.ListUsageRequest(page_token=token, **fields))
        pages.append([r.request_id for r in reply.records])
        token = reply.next_page_token
        if not token:
            return pages


async def test_pages_are_newest_first_complete_and_break_ties_by_request_id(
    runner: TransactionRunner,
) -> None:
    account = uid("acc")
    # Three records share one timestamp: the keyset must not skip or repeat any of them.
    times = [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1),
             T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    rows = [row(account, at, request_id=f"{account}-{i}") for i, at in enumerate(times)]
    await insert_rows(runner, rows)
    pages = await all_pages(UsageQueries(runner), account_id=account, page_size=2)
    expected = [f"{account}-{i}" for i in (4, 3, 2, 1, 0)]
    assert pages == [expected[0:2], expected[2:4], expected[4:5]]


async def test_a_record_converts_with_units_sources_and_outcome(runner: TransactionRunner) -> None:
    account = uid("acc")
    await insert_rows(runner, [
        row(account, T0, request_id=account + "-a", units_json='{"image/1024x1024/hd":2}',
            prompt_tokens=30, completion_tokens=20, cached_prompt_tokens=7,
            cache_write_prompt_tokens=3, reasoning_tokens=11, usage_source="estimated",
            cost_nanos=4_999_986_050, status="client_closed", error_code="", stream=True,
            latency_ms=1234, first_token_ms=56, channel="mock", key_id="key-z"),
        row(account, T0 - timedelta(seconds=1), request_id=account + "-b", usage_source="none",
            status="upstream_cut", error_code="upstream_error", cost_nanos=0),
        row(account, T0 - timedelta(seconds=2), request_id=account + "-c", status=""),
    ])
    reply = await UsageQueries(runner).list_usage(billing_pb2.ListUsageRequest(account_id=account))
    first, second, third = reply.records
    assert reply.next_page_token == ""
    assert first.usage == usage_pb2.Usage(
        prompt_tokens=30, completion_tokens=20, total_tokens=50, cached_prompt_tokens=7,
        cache_write_prompt_tokens=3, reasoning_tokens=11,
        units=[usage_pb2.UnitUsage(unit="image/1024x1024/hd", quantity=2)])
    assert first.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert first.outcome == billing_pb2.RequestOutcome(
        status=billing_pb2.REQUEST_STATUS_CLIENT_CLOSED, stream=True, latency_ms=1234,
        first_token_ms=56)
    assert (first.account_id, first.key_id, first.model, first.channel, first.cost_nanos) == (
        account, "key-z", "m", "mock", 4_999_986_050)
    assert first.created_at.ToDatetime(tzinfo=UTC) == T0
    assert second.usage_source == usage_pb2.USAGE_SOURCE_UNSPECIFIED
    assert second.outcome.status == billing_pb2.REQUEST_STATUS_UPSTREAM_CUT
    assert second.outcome.error_code == "upstream_error"
    assert third.outcome.status == billing_pb2.REQUEST_STATUS_UNSPECIFIED
    assert third.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM


async def test_filters_narrow_by_key_model_and_time(runner: TransactionRunner) -> None:
    account, other = uid("acc"), uid("acc")
    at = [T0 + timedelta(minutes=i) for i in range(4)]
    await insert_rows(runner, [
        row(account, at[0], request_id=account + "-0", key_id="k1"),
        row(account, at[1], request_id=account + "-1", key_id="k2", model="big"),
        row(account, at[2], request_id=account + "-2", key_id="k1", model="big"),
        row(account, at[3], request_id=account + "-3", key_id="k1"),
        row(other, at[2], request_id=other + "-0", key_id="k1"),
    ])
    queries = UsageQueries(runner)

    async def ids(**fields: Any) -> list[str]:
        reply = await queries.list_usage(billing_pb2.ListUsageRequest(account_id=account, **fields))
        return [r.request_id.rsplit("-", 1)[1] for r in reply.records]

    assert await ids() == ["3", "2", "1", "0"]
    assert await ids(key_id="k1") == ["3", "2", "0"]
    assert await ids(model="big") == ["2", "1"]
    assert await ids(key_id="k1", model="big") == ["2"]
    # since is inclusive, until exclusive.
    assert await ids(since=stamp(at[1]), until=stamp(at[3])) == ["2", "1"]


async def test_pages_do_not_shift_when_records_arrive_between_pages(
    runner: TransactionRunner,
) -> None:
    account = uid("acc")
    await insert_rows(runner, [row(account, T0 + timedelta(seconds=i), request_id=f"{account}-{i}")
                               for i in range(4)])
    queries = UsageQueries(runner)
    first = await queries.list_usage(billing_pb2.ListUsageRequest(account_id=account, page_size=2))
    await insert_rows(runner, [row(account, T0 + timedelta(seconds=9), request_id=account + "-9")])
    second = await queries.list_usage(billing_pb2.ListUsageRequest(
        account_id=account, page_size=2, page_token=first.next_page_token))
    assert [r.request_id[-1] for r in first.records] == ["3", "2"]
    assert [r.request_id[-1] for r in second.records] == ["1", "0"]
    assert second.next_page_token == ""


async def test_page_size_defaults_to_100_and_is_bounded(runner: TransactionRunner) -> None:
    account = uid("acc")
    await insert_rows(runner, [row(account, T0 + timedelta(milliseconds=i)) for i in range(101)])
    queries = UsageQueries(runner)
    reply = await queries.list_usage(billing_pb2.ListUsageRequest(account_id=account))
    assert len(reply.records) == 100 and reply.next_page_token
    rest = await queries.list_usage(billing_pb2.ListUsageRequest(
        account_id=account, page_token=reply.next_page_token))
    assert len(rest.records) == 1 and not rest.next_page_token
    full = await queries.list_usage(billing_pb2.ListUsageRequest(account_id=account,
                                                                 page_size=1000))
    assert len(full.records) == 101
    for size in (1001, -1):
        with pytest.raises(InvalidBillingRequest):
            await queries.list_usage(billing_pb2.ListUsageRequest(page_size=size))


@pytest.mark.parametrize("token", [
    "not a token!", base64.urlsafe_b64encode(b"[1,2]").decode(),
    base64.urlsafe_b64encode(b'{"v":1,"t":"yesterday","r":"x","f":"y"}').decode(),
    base64.urlsafe_b64encode(b'{"v":1,"t":"2026-01-01T00:00:00","r":"x","f":"y"}').decode(),
])
async def test_a_bad_page_token_is_invalid(runner: TransactionRunner, token: str) -> None:
    with pytest.raises(InvalidBillingRequest):
        await UsageQueries(runner).list_usage(billing_pb2.ListUsageRequest(page_token=token))


async def test_a_page_token_only_continues_its_own_query(runner: TransactionRunner) -> None:
    account = uid("acc")
    await insert_rows(runner, [row(account, T0 + timedelta(seconds=i)) for i in range(3)])
    queries = UsageQueries(runner)
    reply = await queries.list_usage(billing_pb2.ListUsageRequest(account_id=account, page_size=1))
    with pytest.raises(InvalidBillingRequest):
        await queries.list_usage(billing_pb2.ListUsageRequest(
            account_id=account, model="other", page_size=1, page_token=reply.next_page_token))


async def test_daily_sums_per_day_account_model_with_failures(runner: TransactionRunner) -> None:
    a, b = uid("acc"), uid("acc")
    day1, day2, day3 = T0, T0 + timedelta(minutes=1), T0 + timedelta(days=1, minutes=1)
    await insert_rows(runner, [
        row(a, day1, prompt_tokens=10, completion_tokens=1, cost_nanos=100),
        row(a, day1, prompt_tokens=20, completion_tokens=2, cost_nanos=200, status="error"),
        row(a, day1, model="big", cost_nanos=7, status="client_closed"),
        row(a, day2, cost_nanos=5, status="upstream_cut"),
        row(a, day2, cost_nanos=6, status=""),
        row(a, day3, cost_nanos=1),
        row(b, day1, cost_nanos=50),
    ])
    queries = UsageQueries(runner)
    reply = await queries.daily_usage(billing_pb2.GetDailyUsageRequest(account_id=a))
    got = [(d.day, d.model, d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nanos,
            d.failed_requests) for d in reply.days]
    assert got == [
        ("2026-03-14", "big", 1, 10, 5, 7, 1),
        ("2026-03-14", "m", 2, 30, 3, 300, 1),
        ("2026-03-15", "m", 2, 20, 10, 11, 1),
        ("2026-03-16", "m", 1, 10, 5, 1, 0),
    ]
    assert all(d.account_id == a for d in reply.days)
    bounded = await queries.daily_usage(billing_pb2.GetDailyUsageRequest(
        account_id=a, model="m", since_day="2026-03-15", until_day="2026-03-15"))
    assert [(d.day, d.requests) for d in bounded.days] == [("2026-03-15", 2)]
    both = await queries.daily_usage(billing_pb2.GetDailyUsageRequest(
        since_day="2026-03-14", until_day="2026-03-14", model="m"))
    mine = [(d.account_id, d.cost_nanos) for d in both.days if d.account_id in (a, b)]
    assert mine == sorted([(a, 300), (b, 50)])


@pytest.mark.parametrize("day", ["2026-13-01", "2026-3-14", "yesterday", "2026-03-14T00:00"])
async def test_a_bad_day_is_invalid(runner: TransactionRunner, day: str) -> None:
    queries = UsageQueries(runner)
    for fields in ({"since_day": day}, {"until_day": day}):
        with pytest.raises(InvalidBillingRequest):
            await queries.daily_usage(billing_pb2.GetDailyUsageRequest(**fields))


async def test_grpc_lists_settled_requests_for_the_admin_only(tmp_path: Path) -> None:
    async with serve_billing(tmp_path) as stub:
        account = await fund(stub, 10**9)
        rids = [uid("req") for _ in range(3)]
        for rid in rids:
            await stub.ReserveCredit(reserve(account, rid))
            request = settle(rid, prompt=100, completion=20)
            request.outcome.CopyFrom(billing_pb2.RequestOutcome(
                status=billing_pb2.REQUEST_STATUS_OK, stream=True, latency_ms=42))
            await stub.SettleCredit(request)
        pages, token = [], ""
        while True:
            reply = await stub.ListUsage(billing_pb2.ListUsageRequest(
                account_id=account, page_size=2, page_token=token), metadata=ADMIN)
            pages.append(reply.records)
            if not (token := reply.next_page_token):
                break
        records = [r for page in pages for r in page]
        assert [len(page) for page in pages] == [2, 1]
        assert sorted(r.request_id for r in records) == sorted(rids)
        assert all(r.usage.prompt_tokens == 100 and r.outcome.latency_ms == 42
                   and r.outcome.status == billing_pb2.REQUEST_STATUS_OK
                   and r.cost_nanos == 100 * 150 + 20 * 600 for r in records)
        daily = await stub.GetDailyUsage(
            billing_pb2.GetDailyUsageRequest(account_id=account), metadata=ADMIN)
        assert [(d.requests, d.cost_nanos) for d in daily.days] == [(3, 3 * (100 * 150 + 20 * 600))]
        for call in (stub.ListUsage(billing_pb2.ListUsageRequest()),
                     stub.GetDailyUsage(billing_pb2.GetDailyUsageRequest())):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListUsage(billing_pb2.ListUsageRequest(page_token="junk"), metadata=ADMIN)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
