"""The usage log's admin reads, ListUsage and GetDailyUsage: proto in, SQL, proto out.

ListUsage pages newest first by keyset on (created_at, request_id), so a page costs the
same however deep it is and records inserted meanwhile never shift a page. The page
token is opaque to callers: URL-safe base64 of a small JSON object holding the last
record's position and a digest of the filters it was made for (a token replayed with
other filters is refused rather than silently skipping records).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import UTC, date, datetime

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from services.billing.admin_wire import optional_time, timestamp
from services.billing.errors import InvalidBillingRequest
from services.billing.runner import TransactionRunner
from services.billing.unit_json import load_units
from services.billing.usage_queries import (
    DailyFilter,
    DailyLine,
    PagePosition,
    UsageFilter,
    UsageLine,
    read_daily_usage,
    read_usage_page,
)
from services.billing.wire import SOURCES, STATUSES

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TOKEN_VERSION = 1
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The wire's tables read backwards: stored value -> proto enum.
_SOURCES = {source.value: proto for proto, source in SOURCES.items()}
_STATUSES = {status.value: proto for proto, status in STATUSES.items()}


class UsageQueries:
    """Answers ListUsage and GetDailyUsage from the usage_records table."""

    def __init__(self, runner: TransactionRunner) -> None:
        self._runner = runner

    async def list_usage(self, req: billing_pb2.ListUsageRequest) -> billing_pb2.ListUsageResponse:
        """One page of records matching the filters, newest first."""
        size = page_size(req.page_size)
        where = UsageFilter(
            account_id=req.account_id,
            key_id=req.key_id,
            model=req.model,
            since=optional_time(req.HasField("since"), req.since),
            until=optional_time(req.HasField("until"), req.until),
        )
        digest = filter_digest(where)
        after = decode_page_token(req.page_token, digest) if req.page_token else None
        # One more than the page: whether it exists decides if there is a next page.
        lines = await self._runner.read(read_usage_page, where, after, size + 1)
        page = lines[:size]
        token = ""
        if len(lines) > size:
            last = page[-1]
            token = encode_page_token(PagePosition(last.created_at, last.request_id), digest)
        return billing_pb2.ListUsageResponse(
            records=[record_to_proto(line) for line in page], next_page_token=token
        )

    async def daily_usage(
        self, req: billing_pb2.GetDailyUsageRequest
    ) -> billing_pb2.GetDailyUsageResponse:
        """Sums per UTC day, account and model, by day then account then model."""
        where = DailyFilter(
            account_id=req.account_id,
            model=req.model,
            since_day=parse_day(req.since_day, "since_day"),
            until_day=parse_day(req.until_day, "until_day"),
        )
        lines = await self._runner.read(read_daily_usage, where)
        return billing_pb2.GetDailyUsageResponse(days=[daily_to_proto(line) for line in lines])


def page_size(requested: int) -> int:
    """The page size to use: 0 means the default; outside 1..1000 is invalid."""
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise InvalidBillingRequest(f"page_size must be 0 to {MAX_PAGE_SIZE}, got {requested}")
    return requested


def parse_day(text: str, field: str) -> str:
    """A "YYYY-MM-DD" day as given ("" for no bound); InvalidBillingRequest otherwise."""
    if not text:
        return ""
    try:
        if not _DAY.match(text):
            raise ValueError(text)
        date.fromisoformat(text)
    except ValueError:
        raise InvalidBillingRequest(f"{field} must be a day YYYY-MM-DD, got {text!r}") from None
    return text


def filter_digest(where: UsageFilter) -> str:
    """A short fingerprint of the filters, kept in page tokens."""
    parts = [
        where.account_id,
        where.key_id,
        where.model,
        where.since.isoformat() if where.since else "",
        where.until.isoformat() if where.until else "",
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def encode_page_token(position: PagePosition, digest: str) -> str:
    """The opaque token of the page after `position`."""
    payload = {
        "v": _TOKEN_VERSION,
        "t": position.created_at.astimezone(UTC).isoformat(),
        "r": position.request_id,
        "f": digest,
    }
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, digest: str) -> PagePosition:
    """The position in `token`; InvalidBillingRequest if it is not one of ours for `digest`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("v") != _TOKEN_VERSION:
            raise ValueError("unknown token")
        moment, request_id, made_for = payload["t"], payload["r"], payload["f"]
        if not all(isinstance(value, str) for value in (moment, request_id, made_for)):
            raise ValueError("malformed token")
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None:
            raise ValueError("naive time")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidBillingRequest("page_token is not a valid page token") from None
    if made_for != digest:
        raise InvalidBillingRequest("page_token was made for other filters")
    return PagePosition(created_at.astimezone(UTC), request_id)


def record_to_proto(line: UsageLine) -> billing_pb2.UsageRecord:
    """A stored usage record as the wire's UsageRecord."""
    usage = usage_pb2.Usage(
        prompt_tokens=line.prompt_tokens,
        completion_tokens=line.completion_tokens,
        total_tokens=line.prompt_tokens + line.completion_tokens,
        cached_prompt_tokens=line.cached_prompt_tokens,
        cache_write_prompt_tokens=line.cache_write_prompt_tokens,
        reasoning_tokens=line.reasoning_tokens,
        units=[
            usage_pb2.UnitUsage(unit=unit, quantity=quantity)
            for unit, quantity in load_units(line.units_json).items()
        ],
    )
    outcome = billing_pb2.RequestOutcome(
        status=_STATUSES.get(line.status, billing_pb2.REQUEST_STATUS_UNSPECIFIED),
        error_code=line.error_code,
        stream=line.stream,
        latency_ms=line.latency_ms,
        first_token_ms=line.first_token_ms,
    )
    return billing_pb2.UsageRecord(
        request_id=line.request_id,
        account_id=line.account_id,
        key_id=line.key_id,
        model=line.model,
        channel=line.channel,
        usage=usage,
        # "none" (released without usage) and anything unknown: UNSPECIFIED.
        usage_source=_SOURCES.get(line.usage_source, usage_pb2.USAGE_SOURCE_UNSPECIFIED),
        cost_nanos=line.cost_nanos,
        outcome=outcome,
        created_at=timestamp(line.created_at),
    )


def daily_to_proto(line: DailyLine) -> billing_pb2.DailyUsage:
    """One (day, account, model) sum as the wire's DailyUsage."""
    return billing_pb2.DailyUsage(
        day=line.day,
        account_id=line.account_id,
        model=line.model,
        requests=line.requests,
        prompt_tokens=line.prompt_tokens,
        completion_tokens=line.completion_tokens,
        cost_nanos=line.cost_nanos,
        failed_requests=line.failed_requests,
    )
