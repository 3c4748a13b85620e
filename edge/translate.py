"""Pure conversions between the services' proto messages and the edge's dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from apirelay.auth.v1 import auth_pb2
from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2
from apirelay.router.v1 import router_pb2
from edge.domain import (
    NO_UNITS,
    AuthOutcome,
    Completion,
    CompletionFailure,
    Lease,
    LimitKind,
    LimitRule,
    LimitScope,
    LimitState,
    ModelInfo,
    Operation,
    Principal,
    Reservation,
    ReserveDecision,
    StreamEnd,
    StreamItem,
    Usage,
    UsageSource,
)
from edge.request_report import RequestReport, RequestStatus
from services.common.charges import Tariff
from services.common.limits_config import LimitValues

_AUTH = {
    auth_pb2.AUTH_DECISION_ALLOWED: AuthOutcome.ALLOWED,
    auth_pb2.AUTH_DECISION_UNKNOWN_KEY: AuthOutcome.UNKNOWN_KEY,
    auth_pb2.AUTH_DECISION_REVOKED: AuthOutcome.REVOKED,
    auth_pb2.AUTH_DECISION_ACCOUNT_DISABLED: AuthOutcome.ACCOUNT_DISABLED,
}
_LIMIT_KIND = {
    ratelimit_pb2.LIMIT_KIND_RPM: LimitKind.RPM,
    ratelimit_pb2.LIMIT_KIND_TPM: LimitKind.TPM,
    ratelimit_pb2.LIMIT_KIND_CONCURRENCY: LimitKind.CONCURRENCY,
    ratelimit_pb2.LIMIT_KIND_RPD: LimitKind.RPD,
}
_PROTO_KIND = {kind: value for value, kind in _LIMIT_KIND.items()}
# A key's own limit in auth's KeyLimits: 0 is "not set", -1 "no limit" (0 in LimitValues).
_KEY_LIMIT_NOT_SET = 0
_RESERVE = {
    billing_pb2.RESERVE_DECISION_RESERVED: ReserveDecision.RESERVED,
    billing_pb2.RESERVE_DECISION_INSUFFICIENT_BALANCE: ReserveDecision.INSUFFICIENT_BALANCE,
    billing_pb2.RESERVE_DECISION_MODEL_NOT_PRICED: ReserveDecision.MODEL_NOT_PRICED,
    billing_pb2.RESERVE_DECISION_KEY_BUDGET_EXCEEDED: ReserveDecision.KEY_BUDGET_EXCEEDED,
}
_OPERATION = {
    Operation.COMPLETIONS: router_pb2.OPERATION_COMPLETIONS,
    Operation.EMBEDDINGS: router_pb2.OPERATION_EMBEDDINGS,
    Operation.IMAGE_GENERATIONS: router_pb2.OPERATION_IMAGE_GENERATIONS,
    Operation.IMAGE_EDITS: router_pb2.OPERATION_IMAGE_EDITS,
    Operation.AUDIO_TRANSCRIPTIONS: router_pb2.OPERATION_AUDIO_TRANSCRIPTIONS,
    Operation.AUDIO_TRANSLATIONS: router_pb2.OPERATION_AUDIO_TRANSLATIONS,
    Operation.AUDIO_SPEECH: router_pb2.OPERATION_AUDIO_SPEECH,
    Operation.RESPONSES: router_pb2.OPERATION_RESPONSES,
}


def auth_outcome(
    response: auth_pb2.AuthenticateKeyResponse,
) -> tuple[AuthOutcome, Principal | None]:
    """The decision and, when allowed, the principal; an unset decision counts as unknown."""
    outcome = _AUTH.get(response.decision, AuthOutcome.UNKNOWN_KEY)
    if outcome is not AuthOutcome.ALLOWED or not response.HasField("principal"):
        return (AuthOutcome.UNKNOWN_KEY if outcome is AuthOutcome.ALLOWED else outcome), None
    p = response.principal
    own = (p.limits.rpm, p.limits.tpm, p.limits.concurrency, p.limits.rpd)
    limits = LimitValues(*(None if v == _KEY_LIMIT_NOT_SET else max(0, v) for v in own))
    principal = Principal(
        key_id=p.key_id,
        account_id=p.account_id,
        account_name=p.account_name,
        group=p.group,
        allowed_models=frozenset(p.allowed_models),
        limits=limits,
    )
    return outcome, principal


def acquire_request(
    request_id: str, principal: Principal, model: str, rules: tuple[LimitRule, ...],
    estimated_tokens: int,
) -> ratelimit_pb2.AcquireLeaseRequest:
    """The limiter request for one request of `principal`: every rule, on its descriptor."""
    return ratelimit_pb2.AcquireLeaseRequest(
        request_id=request_id,
        subject=principal.key_id,
        estimated_tokens=estimated_tokens,
        rules=[
            ratelimit_pb2.LimitRule(descriptor=descriptor(rule.scope, principal, model),
                                    kind=_PROTO_KIND[rule.kind], limit=rule.limit)
            for rule in rules
        ],
    )


def descriptor(scope: LimitScope, principal: Principal, model: str) -> ratelimit_pb2.Descriptor:
    """What a scope's limits count: [key], [account] or [key, model] (domain "apirelay")."""
    key = ratelimit_pb2.DescriptorEntry(key="key", value=principal.key_id)
    if scope is LimitScope.ACCOUNT:
        return ratelimit_pb2.Descriptor(
            entries=[ratelimit_pb2.DescriptorEntry(key="account", value=principal.account_id)])
    if scope is LimitScope.KEY_MODEL:
        return ratelimit_pb2.Descriptor(
            entries=[key, ratelimit_pb2.DescriptorEntry(key="model", value=model)])
    return ratelimit_pb2.Descriptor(entries=[key])


def lease(response: ratelimit_pb2.AcquireLeaseResponse, rules: tuple[LimitRule, ...]) -> Lease:
    """The limiter's decision on `rules` as a Lease (rule statuses come in rule order)."""
    states = tuple(
        LimitState(
            kind=rule.kind,
            limit=s.limit,
            remaining=s.remaining,
            reset_after_s=s.reset_after.seconds + s.reset_after.nanos / 1e9,
            scope=rule.scope,
            over_limit=s.over_limit,
        )
        for rule, s in zip(rules, response.rule_statuses, strict=False)
    )
    allowed = response.decision == ratelimit_pb2.LEASE_DECISION_ALLOWED
    denied = None
    if not allowed:
        denied_kind = _LIMIT_KIND.get(response.denied_by)
        denied = next((s for s in states if s.over_limit), None) or next(
            (s for s in states if s.kind is denied_kind), None)
    return Lease(allowed=allowed, lease_id=response.lease_id, denied=denied, states=states)


def reservation(response: billing_pb2.ReserveCreditResponse) -> Reservation:
    """Billing's reserve decision; an unset decision is treated as no hold placed."""
    decision = _RESERVE.get(response.decision, ReserveDecision.INSUFFICIENT_BALANCE)
    held_at = tariff(response.tariff) if response.HasField("tariff") else None
    return Reservation(decision=decision, held_nanos=response.held_nanos, tariff=held_at)


def tariff(message: billing_pb2.Tariff) -> Tariff:
    """The prices a hold was placed at."""
    return Tariff(
        prompt_nanos=message.prompt_nanos_per_token,
        completion_nanos=message.completion_nanos_per_token,
        cached_prompt_nanos=message.cached_prompt_nanos_per_token,
        multiplier_bps=message.multiplier_bps,
        unit_nanos={price.unit: price.nanos_per_unit for price in message.unit_prices},
        cache_write_nanos=message.cache_write_nanos_per_token,
        reasoning_nanos=message.reasoning_nanos_per_token,
        request_nanos=message.request_nanos,
    )


def unit_usages(units: Mapping[str, int]) -> list[usage_pb2.UnitUsage]:
    """Units as proto entries, sorted by name; zero quantities are left out."""
    return [
        usage_pb2.UnitUsage(unit=unit, quantity=quantity)
        for unit, quantity in sorted(units.items()) if quantity > 0
    ]


def usage_to_proto(usage: Usage) -> usage_pb2.Usage:
    """A Usage as the proto message."""
    return usage_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        units=unit_usages(usage.units),
        cache_write_prompt_tokens=usage.cache_write_prompt_tokens,
    )


def settle_request(
    request_id: str, usage: Usage, source: UsageSource, channel: str,
    report: RequestReport | None = None,
) -> billing_pb2.SettleCreditRequest:
    """The settle request for a finished request (with how it ran, when known)."""
    proto_source = (
        usage_pb2.USAGE_SOURCE_ESTIMATED
        if source is UsageSource.ESTIMATED
        else usage_pb2.USAGE_SOURCE_UPSTREAM
    )
    return billing_pb2.SettleCreditRequest(
        request_id=request_id, usage=usage_to_proto(usage), usage_source=proto_source,
        channel=channel, outcome=request_outcome(report) if report is not None else None,
    )


def release_request(
    request_id: str, report: RequestReport | None, channel: str
) -> billing_pb2.ReleaseCreditRequest:
    """The release of a hold: with how the request ran, or none for an undone admission."""
    return billing_pb2.ReleaseCreditRequest(
        request_id=request_id, channel=channel,
        outcome=request_outcome(report) if report is not None else None,
    )


_STATUS = {
    RequestStatus.OK: billing_pb2.REQUEST_STATUS_OK,
    RequestStatus.ERROR: billing_pb2.REQUEST_STATUS_ERROR,
    RequestStatus.CLIENT_CLOSED: billing_pb2.REQUEST_STATUS_CLIENT_CLOSED,
    RequestStatus.UPSTREAM_CUT: billing_pb2.REQUEST_STATUS_UPSTREAM_CUT,
}


def request_outcome(report: RequestReport) -> billing_pb2.RequestOutcome:
    """How a request ran, for billing's usage log."""
    return billing_pb2.RequestOutcome(
        status=_STATUS[report.status], error_code=report.error_code, stream=report.stream,
        latency_ms=report.latency_ms, first_token_ms=report.first_token_ms,
    )


def usage_from_proto(message: usage_pb2.Usage) -> Usage | None:
    """The usage, or None when nothing was reported."""
    total = message.total_tokens or message.prompt_tokens + message.completion_tokens
    units = {entry.unit: int(entry.quantity) for entry in message.units if entry.quantity > 0}
    if total == 0 and not units:
        return None
    return Usage(
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        total_tokens=total,
        cached_prompt_tokens=message.cached_prompt_tokens,
        reasoning_tokens=message.reasoning_tokens,
        units=MappingProxyType(units) if units else NO_UNITS,
        cache_write_prompt_tokens=message.cache_write_prompt_tokens,
    )


def _source(value: int) -> UsageSource:
    if value == usage_pb2.USAGE_SOURCE_ESTIMATED:
        return UsageSource.ESTIMATED
    return UsageSource.UPSTREAM


def failure(error: router_pb2.CompletionError) -> CompletionFailure:
    """The router's CompletionError as a dataclass (empty strings become None)."""
    return CompletionFailure(
        http_status=error.http_status,
        type=error.type,
        code=error.code or None,
        message=error.message,
        param=error.param or None,
    )


def caller(principal: Principal) -> router_pb2.Caller:
    """Who is asking, for the router."""
    return router_pb2.Caller(
        account_id=principal.account_id, key_id=principal.key_id, group=principal.group
    )


def completion(response: router_pb2.CreateChatCompletionResponse) -> Completion:
    """A non-streaming router answer."""
    return Completion(
        body=response.body,
        usage=usage_from_proto(response.usage) if response.HasField("usage") else None,
        usage_source=_source(response.usage_source),
        channel=response.route.channel,
        failure=failure(response.error) if response.HasField("error") else None,
    )


def stream_item(item: router_pb2.StreamChatCompletionResponse) -> StreamItem:
    """One item of a router stream."""
    end = stream_end(item.end) if item.HasField("end") else None
    return StreamItem(tuple(item.chunks), end)


def operation(op: Operation) -> router_pb2.Operation.ValueType:
    """The router's Operation for an endpoint other than chat completions."""
    return _OPERATION[op]


def relayed(response: router_pb2.RelayResponse) -> Completion:
    """A non-streaming Relay answer."""
    return Completion(
        body=response.body,
        usage=usage_from_proto(response.usage) if response.HasField("usage") else None,
        usage_source=_source(response.usage_source),
        channel=response.route.channel,
        failure=failure(response.error) if response.HasField("error") else None,
        content_type=response.content_type or "application/json",
    )


def relay_item(item: router_pb2.StreamRelayResponse) -> StreamItem:
    """One item of a StreamRelay stream."""
    end = stream_end(item.end) if item.HasField("end") else None
    return StreamItem(tuple(item.pieces), end, item.content_type)


def stream_end(end: router_pb2.StreamEnd) -> StreamEnd:
    """The typed end of a router stream."""
    return StreamEnd(
        usage=usage_from_proto(end.usage) if end.HasField("usage") else None,
        usage_source=_source(end.usage_source),
        finish_reason=end.finish_reason,
        channel=end.route.channel,
        failure=failure(end.error) if end.HasField("error") else None,
    )


def model_info(model: router_pb2.Model) -> ModelInfo:
    """One catalog entry."""
    return ModelInfo(
        id=model.id,
        owned_by=model.owned_by,
        created=model.created,
        max_output_tokens=model.max_output_tokens,
    )
