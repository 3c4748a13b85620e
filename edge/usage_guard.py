"""Which reported usages the edge does not trust (BL-6).

An upstream's usage decides what the client pays, so it is checked before it is
billed: negative counts would credit the wallet, a completion above the request's own
cap cannot be real, and zero completion tokens for text the client received would
bill delivered output as free. Such a usage is replaced by the edge's count (see
edge.outcome.Outcome.charge).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from edge.domain import Usage


class Rejection(enum.Enum):
    """Why a reported usage was not trusted (the metric's `reason` label)."""

    NEGATIVE = "negative"
    OVER_MAX_TOKENS = "over_max_tokens"
    ZERO_COMPLETION = "zero_completion"
    ZERO_PROMPT = "zero_prompt"


def _negative(usage: Usage) -> bool:
    counts = (
        usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
        usage.cached_prompt_tokens, usage.reasoning_tokens, usage.cache_write_prompt_tokens,
        *usage.units.values(),
    )
    return any(count < 0 for count in counts)


def judge(
    usage: Usage, max_completion: int | None, delivered: Callable[[], bool],
    prompt_estimate: int = 0,
) -> Rejection | None:
    """Why `usage` is not to be trusted, or None.

    `max_completion` is the most completion tokens the request allowed (None: no known
    cap); `delivered` says whether generated text reached the client (called only when
    the usage reports no completion tokens, since reading it costs a parse). A prompt
    reported as 0 for a request with prompt text (`prompt_estimate` > 0) is not trusted
    either (the router reads a negative count as 0).
    """
    if _negative(usage):
        return Rejection.NEGATIVE
    if usage.prompt_tokens == 0 and prompt_estimate > 0:
        return Rejection.ZERO_PROMPT
    if max_completion is not None and usage.completion_tokens > max_completion:
        return Rejection.OVER_MAX_TOKENS
    if usage.completion_tokens == 0 and delivered():
        return Rejection.ZERO_COMPLETION
    return None


def sane_prompt(usage: Usage, estimate: int) -> int:
    """The reported prompt when it is plausible (positive), else the edge's estimate."""
    return usage.prompt_tokens if usage.prompt_tokens > 0 else estimate
