"""What one admitted request consumed and how it ran, filled in while it runs.

`Outcome.charge` decides what is settled: the router's usage unless edge.usage_guard
rejects it, else (and when no usage came) the prompt plus the tokens of the delivered
text; `Outcome.report` says how the request ended, for billing's usage log.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.delivered import TextReader, delta_texts
from edge.domain import NO_UNITS, Usage, UsageSource
from edge.errors import ApiError
from edge.request_report import RequestReport, RequestStatus
from edge.usage_guard import Rejection, judge, sane_prompt
from services.common.tokens import estimate_tokens


class UnitsBilled(enum.Enum):
    """When a request billed by units has consumed them, if its usage never came."""

    ON_DELIVERY = "delivery"  # speech: once audio reached the client; images: once answered
    ON_CALL = "call"  # transcription: once the router had the audio (and did not refuse it)


@dataclass(frozen=True, slots=True)
class Metering:
    """How a request is billed when the router never reported its usage.

    Token endpoints bill the prompt estimate plus the text read from what was delivered
    (`texts` reads one delivered chunk); unit endpoints bill `units` (the estimate's)
    once `units_billed` says they were consumed.
    """

    texts: TextReader = delta_texts
    units: Mapping[str, int] = field(default_factory=lambda: NO_UNITS)
    units_billed: UnitsBilled = UnitsBilled.ON_DELIVERY


CHAT_METERING = Metering()


@dataclass(frozen=True, slots=True)
class Charge:
    """What to settle: the usage, its source, and why a reported usage was replaced."""

    usage: Usage
    source: UsageSource
    rejected: Rejection | None = None


@dataclass(slots=True)
class Outcome:
    """What one admitted request consumed and how it ran, filled in as it runs."""

    request_id: str
    subject: str
    lease_id: str
    prompt_estimate: int
    metering: Metering = CHAT_METERING
    usage: Usage | None = None
    usage_source: UsageSource = UsageSource.UPSTREAM
    channel: str = ""
    delivered: list[str] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    client_gone: bool = False
    completed: bool = False
    called: bool = False
    failed: bool = False
    # The most completion tokens the request allowed (the admission's cap); None: unknown.
    max_completion: int | None = None
    stream: bool = False
    started_at: float = 0.0  # time.perf_counter() at arrival; 0: unknown
    first_byte_at: float = 0.0  # when the first content byte went out; 0: none did
    error_code: str = ""
    cut: bool = False  # an error ended the answer after its first byte

    def record_chunk(self, chunk: bytes) -> None:
        """Keep a delivered chunk; its text is read only if usage is missing or doubtful."""
        self.chunks.append(chunk)

    def record_usage(
        self, usage: Usage | None, source: UsageSource, channel: str, *, failed: bool = False
    ) -> None:
        """Keep the router's typed usage, the channel that served, and whether it failed."""
        self.usage = usage
        self.usage_source = source
        self.channel = channel
        self.failed = failed

    def record_error(self, error: ApiError, *, cut: bool = False) -> None:
        """Keep the error the client got (`cut`: in-band, after the first byte)."""
        self.error_code = error.code or error.type
        self.cut = self.cut or cut

    def mark_first_byte(self) -> None:
        """Note that content reached the client now (the first time only counts)."""
        if not self.first_byte_at:
            self.first_byte_at = time.perf_counter()

    def final_usage(self) -> tuple[Usage, UsageSource] | None:
        """The usage to settle, or None when nothing was consumed (release instead)."""
        charge = self.charge()
        return None if charge is None else (charge.usage, charge.source)

    def charge(self) -> Charge | None:
        """What to settle, or None when nothing was consumed (release instead).

        A reported usage is billed unless edge.usage_guard rejects it; then, and when no
        usage came, a token request that completed, delivered text or lost its client is
        billed as the prompt (the estimate, or the reported one if sane) plus the tokens
        of the delivered text, flagged ESTIMATED; a unit request is billed its units once
        they count as consumed.
        """
        if self.usage is not None:
            return self._checked(self.usage)
        if self.metering.units:
            if not self._units_consumed():
                return None
            return Charge(Usage(0, 0, 0, units=self.metering.units), UsageSource.ESTIMATED)
        texts = self._texts()
        if not (self.client_gone or self.completed or texts):
            return None
        return Charge(self._counted(self.prompt_estimate, texts), UsageSource.ESTIMATED)

    def report(self, now: float) -> RequestReport:
        """How the request ran, for the usage log (`now`: time.perf_counter() at its end)."""
        start = self.started_at
        return RequestReport(
            status=self._status(), error_code=self.error_code, stream=self.stream,
            latency_ms=_ms(now - start) if start else 0,
            first_token_ms=_ms(self.first_byte_at - start) if start and self.first_byte_at
            else 0,
        )

    def _checked(self, usage: Usage) -> Charge:
        units = bool(self.metering.units)  # a unit request's tokens have no cap or text
        rejected = judge(usage, None if units else self.max_completion,
                         lambda: not units and bool(self._texts()),
                         0 if units else self.prompt_estimate)
        if rejected is None:
            return Charge(usage, self.usage_source)
        if units:
            return Charge(Usage(0, 0, 0, units=self.metering.units), UsageSource.ESTIMATED,
                          rejected)
        prompt = sane_prompt(usage, self.prompt_estimate)
        return Charge(self._counted(prompt, self._texts()), UsageSource.ESTIMATED, rejected)

    def _texts(self) -> list[str]:
        read = self.metering.texts
        return self.delivered + [text for chunk in self.chunks for text in read(chunk)]

    def _counted(self, prompt: int, texts: list[str]) -> Usage:
        completion = estimate_tokens("".join(texts))
        if self.max_completion is not None:
            completion = min(completion, self.max_completion)  # never past the hold's cap
        return Usage(prompt, completion, prompt + completion)

    def _units_consumed(self) -> bool:
        if self.completed:
            return True
        if self.metering.units_billed is UnitsBilled.ON_CALL:
            return self.called and not self.failed
        return bool(self.chunks)

    def _status(self) -> RequestStatus:
        if self.client_gone:
            return RequestStatus.CLIENT_CLOSED
        if self.cut:
            return RequestStatus.UPSTREAM_CUT
        if self.completed and not self.error_code:
            return RequestStatus.OK
        return RequestStatus.ERROR


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
