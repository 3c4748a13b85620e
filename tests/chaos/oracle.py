"""The BL-1 oracle: what each request must have been charged, from outside the gateway.

It is fed only by what the test can see without the gateway's help: the request's plan,
what the client received, and the upstream's call log (what the upstream sent and
reported). Prices come from the test's own table. It computes amounts with the one
charge formula (services.common.charges.cost_nanos).

Which usage is billed (DESIGN.md, reliability-anchors §3.3, the cancel-and-bill-partial
policy):
- upstream reported usage: exactly that;
- a stream or answer without usage, or a stream the upstream cut: the router's estimate
  (prompt: the sum of the messages' estimates; completion: the delivered text's estimate,
  at least one token per content chunk);
- the client gone, or the router lost mid-stream: the edge's estimate (prompt: its
  admission estimate; completion: the estimate of the chunk text it wrote).

A client disconnect is the one class that cannot be exact from outside: the edge counts
the chunks it wrote, which may be more than the client read before its close reached the
edge. For those the oracle gives the exact set of possible charges: the edge estimate
for every chunk count from what the client read to what the upstream sent (or the full
charge, when the edge finished the stream first). Never 0 and never the hold.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edge.estimate import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY
from services.common.charges import Metered, Tariff, cost_nanos
from services.common.tokens import estimate_tokens
from tests.chaos.plan import RequestPlan, reply_text

UPSTREAM_ERROR = "upstream_error"  # the error code of a stream the upstream broke


class Seen(enum.Enum):
    """How a request ended, as the client saw it."""

    OK = "ok"  # a whole answer (a stream read to its finish)
    HTTP_ERROR = "http_error"  # an error status, nothing streamed
    STREAM_ERROR = "stream_error"  # an in-band error event after some chunks
    DISCONNECTED = "disconnected"  # the client closed the stream on purpose
    TRANSPORT_ERROR = "transport_error"  # the connection broke (never expected here)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the client received for one request."""

    request_id: str
    seen: Seen
    status: int = 0
    error_code: str = ""
    chunks: int = 0  # content chunks received
    text: str = ""
    shown_cost: int | None = None  # `usage.cost` of the answer, in nano-USD


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One attempt from the upstream's call log (tests/chaos/upstream.Call)."""

    request_id: str  # the gateway's internal id: the client's id + "." + a suffix
    attempt: int
    model: str
    stream: bool
    pieces: int
    status: int
    end: str
    sent: int
    usage_sent: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> UpstreamCall:
        """An entry of `GET /_calls`."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in names})  # type: ignore[arg-type]

    @property
    def client_request_id(self) -> str:
        """The id the client sent (the edge appends a random suffix after a dot)."""
        return client_id(self.request_id)


def client_id(internal_id: str) -> str:
    """The client's request id inside an internal one."""
    return internal_id.rsplit(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Expected:
    """The charges the request may have; exact when there is one.

    `labels` names how each amount of a set would have come about ("wrote k+2": the
    edge's estimate of two chunks more than the client read; "full": the whole answer).
    """

    amounts: frozenset[int]
    why: str
    labels: Mapping[int, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """True when exactly one amount is right."""
        return len(self.amounts) == 1


def edge_prompt_estimate(prompt: str) -> int:
    """The edge's admission estimate of a one-message chat prompt."""
    return TOKENS_PER_REPLY + TOKENS_PER_MESSAGE + estimate_tokens(prompt)


def router_prompt_estimate(prompt: str) -> int:
    """The router's estimate of the same prompt."""
    return estimate_tokens(prompt)


class Oracle:
    """Expected charges, given each model's tariff for each account's group."""

    def __init__(self, tariffs: Mapping[tuple[str, str], Tariff]) -> None:
        self._tariffs = tariffs

    def expect(
        self, plan: RequestPlan, group: str, seen: Observation, calls: Sequence[UpstreamCall]
    ) -> Expected:
        """The charges `plan` may have had, given what the client and the upstream saw."""
        tariff = self._tariffs[plan.model, group]
        served = [c for c in calls if c.status == 200]
        if not served or seen.seen is Seen.HTTP_ERROR:
            return Expected(frozenset({0}), "no answer reached the client: nothing to charge")
        call = served[-1]
        bill = _Biller(tariff, plan.prompt)
        if not plan.stream:
            if seen.seen is Seen.OK:
                return Expected(frozenset({bill.full(call)}), "answer: its usage")
            return Expected(frozenset({0, bill.full(call)}), "answer lost in transport")
        return _stream(bill, call, seen)


def _stream(bill: _Biller, call: UpstreamCall, seen: Observation) -> Expected:
    if seen.seen is Seen.OK:
        return Expected(frozenset({bill.full(call)}), "stream read to its end: its usage")
    if seen.seen is Seen.STREAM_ERROR:
        # The upstream's cut reaches the client as `upstream_error`; a router lost under
        # the stream (even one the upstream was about to cut) as a server error.
        if call.end == "cut" and seen.error_code == UPSTREAM_ERROR:
            return Expected(frozenset({bill.router_part(call.sent)}),
                            "upstream cut: the router's estimate of what it relayed")
        return Expected(frozenset({bill.edge_part(seen.chunks)}),
                        "router lost mid-stream: the edge's estimate of what it wrote")
    labels: dict[int, str] = {}
    if seen.seen is Seen.TRANSPORT_ERROR:
        labels[0] = "nothing"
    if call.end == "complete":
        labels[bill.full(call)] = "full"
    elif call.end == "cut":
        labels[bill.router_part(call.sent)] = "router estimate"
    for j in range(call.sent, seen.chunks - 1, -1):  # the fewest chunks wins a tie
        labels[bill.edge_part(j)] = f"wrote k+{j - seen.chunks}"
    return Expected(frozenset(labels), "client gone: the edge's estimate of what it wrote",
                    labels)


class _Biller:
    """The charge of each way a request may be billed."""

    def __init__(self, tariff: Tariff, prompt: str) -> None:
        self._tariff = tariff
        self._prompt = prompt

    def full(self, call: UpstreamCall) -> int:
        """The whole answer: reported usage, else the router's estimate of all of it."""
        if call.usage_sent:
            return self._cost(call.prompt_tokens, call.completion_tokens, call.cached_tokens)
        text = reply_text(call.pieces)
        completion = estimate_tokens(text)
        if call.stream:
            completion = max(completion, call.pieces)
        return self._cost(router_prompt_estimate(self._prompt), completion)

    def router_part(self, chunks: int) -> int:
        """A stream the router ended early, without usage: its estimate of `chunks`."""
        completion = max(estimate_tokens(reply_text(chunks)), chunks)
        return self._cost(router_prompt_estimate(self._prompt), completion)

    def edge_part(self, chunks: int) -> int:
        """A stream the edge ended early, without usage: its estimate of `chunks`."""
        completion = estimate_tokens(reply_text(chunks))
        return self._cost(edge_prompt_estimate(self._prompt), completion)

    def _cost(self, prompt: int, completion: int, cached: int = 0) -> int:
        return cost_nanos(self._tariff, Metered(prompt, completion, cached))


def by_client_id(calls: Iterable[UpstreamCall]) -> dict[str, list[UpstreamCall]]:
    """The upstream's calls grouped by the client's request id, in attempt order."""
    grouped: dict[str, list[UpstreamCall]] = {}
    for call in sorted(calls, key=lambda c: (c.request_id, c.attempt)):
        grouped.setdefault(call.client_request_id, []).append(call)
    return grouped
