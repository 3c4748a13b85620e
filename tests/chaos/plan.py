"""What each BL-1 request is: its plan, written into the prompt so every process agrees.

The deterministic upstream (tests/chaos/upstream.py) reads the plan from the request's
last user message, so both router replicas get the same answer for the same request,
and the oracle knows what was asked without sharing memory with the upstream.
Faults the upstream plays (`UpstreamFault`) travel in the marker; faults the client
plays (a disconnect after k chunks) stay with the client.
"""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass

from services.common.tokens import estimate_tokens

_MARKER = re.compile(r"\[\[bl1 n=(\d+) fault=([a-z0-9]+)(?::(\d+))? pace=(\d+)\]\]")
# Milliseconds between content chunks. A stream the client will leave is slower, so the
# edge is still relaying when the client goes (else the edge would finish first and the
# disconnect policy would go untested); the others are quick, to keep the run short.
PACE_MS = 4
LEAVING_PACE_MS = 80
LEAVE_MARGIN = 8
# One short word per content chunk: the gateway's token estimate of any prefix of the
# reply is then exactly the number of its chunks (see services.common.tokens).
_WORDS = (" ab", " cd", " ef", " gh", " ij", " kl", " mn", " op")


class UpstreamFault(enum.Enum):
    """What the upstream does wrong for one request."""

    NONE = "none"
    OMIT_USAGE = "omit"  # answers in full but reports no usage
    ERROR_5XX = "e5xx"  # 503 before the first byte, on the request's first attempt only
    CUT = "cut"  # ends the stream's connection after `cut_after` content chunks


class ClientFault(enum.Enum):
    """What the client does wrong for one request."""

    NONE = "none"
    DISCONNECT = "disconnect"  # closes the stream after reading `disconnect_after` chunks


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """One request of the workload: who, where, what, and which faults."""

    request_id: str
    account: int
    edge: int
    model: str
    stream: bool
    pieces: int
    upstream_fault: UpstreamFault = UpstreamFault.NONE
    cut_after: int = 0
    client_fault: ClientFault = ClientFault.NONE
    disconnect_after: int = 0

    @property
    def max_tokens(self) -> int:
        """The request's completion cap: above what the upstream reports (pieces + 1)."""
        return self.pieces + 8

    @property
    def pace_ms(self) -> int:
        """The upstream's pause between content chunks."""
        return LEAVING_PACE_MS if self.client_fault is ClientFault.DISCONNECT else PACE_MS

    @property
    def prompt(self) -> str:
        """The user message, carrying the upstream's instructions."""
        fault = self.upstream_fault.value
        if self.upstream_fault is UpstreamFault.CUT:
            fault += f":{self.cut_after}"
        return (f"[[bl1 n={self.pieces} fault={fault} pace={self.pace_ms}]] "
                f"ledger exactness probe {self.request_id}")


@dataclass(frozen=True, slots=True)
class UpstreamOrder:
    """What the upstream reads from a prompt."""

    pieces: int
    fault: UpstreamFault
    cut_after: int
    pace_ms: int = PACE_MS


def read_order(text: str) -> UpstreamOrder | None:
    """The plan in a prompt, or None when there is none."""
    match = _MARKER.search(text)
    if match is None:
        return None
    return UpstreamOrder(int(match.group(1)), UpstreamFault(match.group(2)),
                         int(match.group(3) or 0), int(match.group(4)))


def piece(index: int) -> str:
    """The text of content chunk `index` (0-based)."""
    return _WORDS[index % len(_WORDS)]


def reply_text(pieces: int) -> str:
    """The first `pieces` content chunks' text, joined."""
    return "".join(piece(i) for i in range(pieces))


def reported_prompt_tokens(prompt: str) -> int:
    """The prompt tokens the upstream reports: neither gateway estimate, below the hold's."""
    # The edge holds for 3 + 4 + estimate(prompt) tokens; the router estimates
    # estimate(prompt). Reporting between the two proves reported usage is what is billed,
    # and never above the hold keeps "no overdraft" a real check.
    return estimate_tokens(prompt) + 3


def reported_completion_tokens(pieces: int) -> int:
    """The completion tokens the upstream reports: one more than it sent chunks."""
    return pieces + 1


def reported_cached_tokens(model: str, prompt_tokens: int) -> int:
    """Cached prompt tokens the upstream reports (only the model with a cached price)."""
    return prompt_tokens // 3 if model == CACHED_MODEL else 0


CACHED_MODEL = "bl1-large"
MODELS = ("bl1-small", "bl1-medium", CACHED_MODEL)


@dataclass(frozen=True, slots=True)
class Mix:
    """The workload's proportions (fractions of all requests or of streams)."""

    stream: float = 0.70
    disconnect: float = 0.20  # of streams
    cut: float = 0.05  # of streams
    error_5xx: float = 0.02
    omit_usage: float = 0.01


def make_plans(count: int, accounts: int, edges: int, seed: int, mix: Mix = Mix()) -> list[
        RequestPlan]:
    """`count` request plans drawn from `seed`; faults are exclusive per request."""
    rng = random.Random(seed)
    plans = []
    for number in range(count):
        stream = rng.random() < mix.stream
        pieces = rng.randint(4, 24)
        roll = rng.random()
        upstream, cut_after, client, after = UpstreamFault.NONE, 0, ClientFault.NONE, 0
        if roll < mix.error_5xx:
            upstream = UpstreamFault.ERROR_5XX
        elif roll < mix.error_5xx + mix.omit_usage:
            upstream = UpstreamFault.OMIT_USAGE
        elif stream and roll < mix.error_5xx + mix.omit_usage + mix.cut:
            upstream, cut_after = UpstreamFault.CUT, rng.randint(1, pieces - 1)
        elif stream and roll < mix.error_5xx + mix.omit_usage + mix.cut + mix.disconnect:
            # LEAVE_MARGIN chunks are still to come when the client leaves: a client
            # loaded by the whole run reads a chunk up to a few hundred ms after it came.
            pieces = max(pieces, LEAVE_MARGIN + 4)
            client, after = ClientFault.DISCONNECT, rng.randint(0, pieces - LEAVE_MARGIN)
        plans.append(RequestPlan(
            request_id=f"bl1-{seed}-{number:05d}-{rng.getrandbits(32):08x}",
            account=rng.randrange(accounts), edge=number % edges,
            model=rng.choice(MODELS), stream=stream, pieces=pieces,
            upstream_fault=upstream, cut_after=cut_after, client_fault=client,
            disconnect_after=after,
        ))
    return plans
