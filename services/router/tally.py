"""What one streamed attempt delivered: pieces held back, text, finish reason, usage.

Pieces before the first output (a role announcement, `response.created`) are held
back until it comes, so that a failure before it can still fail over unseen; the
usage-bearing piece is held until the end, to go out in the stream's last item.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.tokens import estimate_tokens
from services.router.outcomes import CompletionError, RouteInfo, StreamOutcome, source_of
from services.router.providers.base import StreamPiece, Usage
from services.router.request import ChatRequest


class HoldBack:
    """The hold-back rules, for any stream of byte pieces."""

    __slots__ = ("_held", "delivered", "tail")

    def __init__(self) -> None:
        self._held: list[bytes] = []
        self.tail: list[bytes] = []
        self.delivered = False

    def deliver(self, data: bytes, *, is_output: bool, is_last: bool) -> Sequence[bytes]:
        """What to send now of `data` and the pieces held before it (maybe nothing)."""
        if is_last:
            self.tail.append(data)
            return ()
        if self.delivered:
            return (data,)
        self._held.append(data)
        if not is_output:
            return ()
        self.delivered = True
        return self.release()

    def release(self) -> list[bytes]:
        """The pieces still held (a stream that ended without any output)."""
        held, self._held = self._held, []
        return held


class StreamTally:
    """Counts a chat stream's delivery through a HoldBack."""

    def __init__(self, chat: ChatRequest) -> None:
        self._chat = chat
        self._hold = HoldBack()
        self._texts: list[str] = []
        self._usage: Usage | None = None
        self._prompt_usage: Usage | None = None
        self.finish_reason = ""

    @property
    def delivered(self) -> bool:
        """True once a chunk went out (no failover after that)."""
        return self._hold.delivered

    def take(self, piece: StreamPiece) -> Sequence[bytes]:
        """Account for `piece`; return the chunks to deliver now (maybe none)."""
        if piece.usage is not None:
            self._usage = piece.usage
        if piece.prompt_usage is not None:
            self._prompt_usage = piece.prompt_usage
        if piece.finish_reason and not self.finish_reason:
            self.finish_reason = piece.finish_reason
        if piece.chunk is None:
            return ()
        if piece.text:
            self._texts.append(piece.text)
        return self._hold.deliver(piece.chunk, is_output=piece.is_output, is_last=piece.is_last)

    def flush(self) -> list[bytes]:
        """Release held chunks (a stream that ended without any output chunk)."""
        return self._hold.release()

    def outcome(self, route: RouteInfo, error: CompletionError | None) -> StreamOutcome:
        """The end of the stream, with the held usage chunk."""
        usage, reported = self.usage()
        return StreamOutcome(usage, source_of(reported), self.finish_reason, route, error,
                             tuple(self._hold.tail))

    def usage(self) -> tuple[Usage, bool]:
        """The usage and whether the upstream reported it (else it is estimated)."""
        if self._usage is not None:
            return self._usage, True
        completion = self.estimate_completion("".join(self._texts), len(self._texts))
        known = self._prompt_usage
        if known is None:
            return Usage(self._chat.estimated_prompt_tokens(), completion), False
        # The prompt as the upstream reported it before the cut, cache counts included.
        return Usage(known.prompt_tokens, completion, known.cached_prompt_tokens,
                     cache_write_prompt_tokens=known.cache_write_prompt_tokens), False

    @staticmethod
    def estimate_completion(text: str, content_chunks: int) -> int:
        """Completion tokens of delivered text: the estimate, at least one per content chunk."""
        return max(estimate_tokens(text), content_chunks)
