"""What one streamed relay attempt delivered: held pieces, text, usage, content type."""

from __future__ import annotations

from collections.abc import Sequence

from services.router.outcomes import (
    CompletionError,
    RouteInfo,
    StreamHead,
    StreamOutcome,
    source_of,
)
from services.router.providers.base import RelayPiece, Usage
from services.router.providers.relay_usage import stream_estimate
from services.router.relay_request import RelayRequest
from services.router.tally import HoldBack


class RelayTally:
    """Counts a relayed stream's delivery through a HoldBack (see `tally.py`).

    Its first delivery starts with a StreamHead naming the answer's content type.
    """

    def __init__(self, request: RelayRequest) -> None:
        self._request = request
        self._hold = HoldBack()
        self._texts: list[str] = []
        self._usage: Usage | None = None
        self._content_type = ""
        self._head_sent = False
        self.finish_reason = ""

    @property
    def delivered(self) -> bool:
        """True once a piece went out (no failover after that)."""
        return self._hold.delivered

    def take(self, piece: RelayPiece) -> Sequence[bytes | StreamHead]:
        """Account for `piece`; return what to deliver now (maybe nothing)."""
        if piece.usage is not None:
            self._usage = piece.usage
        if piece.finish_reason and not self.finish_reason:
            self.finish_reason = piece.finish_reason
        if piece.content_type and not self._content_type:
            self._content_type = piece.content_type
        if piece.data is None:
            return ()
        if piece.text:
            self._texts.append(piece.text)
        out = self._hold.deliver(piece.data, is_output=piece.is_output, is_last=piece.is_last)
        return out if self._head_sent or not out else [self._head(), *out]

    def flush(self) -> list[bytes | StreamHead]:
        """Release held pieces, after the head if it is not out yet."""
        held: list[bytes | StreamHead] = [*self._hold.release()]
        return held if self._head_sent else [self._head(), *held]

    def outcome(self, route: RouteInfo, error: CompletionError | None) -> StreamOutcome:
        """The end of the stream, with the held usage-bearing event."""
        if self._usage is not None:
            usage, reported = self._usage, True
        else:
            usage = stream_estimate(self._request, self._texts, delivered=self.delivered)
            reported = False
        return StreamOutcome(usage, source_of(reported), self.finish_reason, route, error,
                             tuple(self._hold.tail))

    def _head(self) -> StreamHead:
        self._head_sent = True
        return StreamHead(self._content_type)
