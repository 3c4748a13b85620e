"""Which rate limits one request is checked against, and how they read in a response.

A request counts against its key (the key's own limits, else its account group's, else
the configured or built-in defaults), its account (all keys together, when its group or
the config sets account limits) and its key on the model (when the config sets limits
for the model). All of them go to the limiter in one acquire: all or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from edge.domain import LimitKind, LimitRule, LimitScope, LimitState, Principal
from services.common.limits_config import LimitsConfig, LimitValues

# The response header family of each kind (OpenAI sends requests and tokens).
_FAMILY = {
    LimitKind.RPM: "requests", LimitKind.RPD: "requests",
    LimitKind.TPM: "tokens", LimitKind.CONCURRENCY: "concurrency",
}
_KIND_TEXT = {
    LimitKind.RPM: "requests per min (RPM)",
    LimitKind.RPD: "requests per day (RPD)",
    LimitKind.TPM: "tokens per min (TPM)",
}


class LimitPolicy:
    """The `limits:` configuration applied to a request's key, account and model."""

    def __init__(self, config: LimitsConfig) -> None:
        self._config = config

    def rules(self, principal: Principal, model: str) -> tuple[LimitRule, ...]:
        """Every finite limit of a request of `principal` for `model` (empty: none apply)."""
        config, group = self._config, principal.group
        return (
            *_rules(LimitScope.KEY, config.key_limits(group, principal.limits)),
            *_rules(LimitScope.ACCOUNT, config.account_limits(group)),
            *_rules(LimitScope.KEY_MODEL, config.model_limits(model)),
        )


def _rules(scope: LimitScope, values: LimitValues) -> Iterable[LimitRule]:
    return (LimitRule(scope, LimitKind(kind), limit) for kind, limit in values.finite())


def ratelimit_headers(states: Iterable[LimitState]) -> Mapping[str, str]:
    """OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers.

    Of several limits of one family (a key's RPM and its account's RPD, say) the
    tightest is shown: the one with the least room left, then the longest wait.
    """
    tightest: dict[str, LimitState] = {}
    for state in states:
        family = _FAMILY[state.kind]
        shown = tightest.get(family)
        if shown is None or _tighter(state, shown):
            tightest[family] = state
    headers: dict[str, str] = {}
    for family, state in tightest.items():
        headers[f"x-ratelimit-limit-{family}"] = str(state.limit)
        headers[f"x-ratelimit-remaining-{family}"] = str(max(0, state.remaining))
        headers[f"x-ratelimit-reset-{family}"] = format_duration(state.reset_after_s)
    return headers


def _tighter(state: LimitState, than: LimitState) -> bool:
    return (state.remaining, -state.reset_after_s) < (than.remaining, -than.reset_after_s)


def retry_after_s(states: Iterable[LimitState], denied: LimitState | None) -> int:
    """Whole seconds until every limit that refused the request has room (at least 1)."""
    waits = [s.reset_after_s for s in states if s.over_limit]
    if not waits and denied is not None:
        waits = [denied.reset_after_s]
    return max(1, math.ceil(max(waits, default=0.0)))


def denial_message(denied: LimitState | None, model: str, retry_after: int) -> str:
    """The 429 message naming the limit that refused the request."""
    if denied is None:
        return f"Rate limit reached. Please try again in {retry_after}s."
    whose = {
        LimitScope.KEY: "this API key",
        LimitScope.ACCOUNT: "this account (all of its keys together)",
        LimitScope.KEY_MODEL: f"this API key on model '{model}'",
    }[denied.scope]
    if denied.kind is LimitKind.CONCURRENCY:
        return (f"Too many requests in flight for {whose}: Limit {denied.limit}. "
                f"Please try again in {retry_after}s.")
    return (f"Rate limit reached for {whose} on {_KIND_TEXT[denied.kind]}: Limit "
            f"{denied.limit}, Remaining {max(0, denied.remaining)}. "
            f"Please try again in {retry_after}s.")


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it: "250ms", "1s", "6m0s", "23h59m59s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes >= 1 else text
