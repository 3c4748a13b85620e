"""What one streamed attempt delivered: held chunks, content text, finish reason, usage."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.tokens import estimate_tokens
from services.router.providers.base import StreamPiece, Usage
from services.router.request import ChatRequest


class StreamTally:
    """Counts a stream's delivery and holds back chunks until the first output chunk."""

    def __init__(self, chat: ChatRequest) -> None:
        self._chat = chat
        self._held: list[bytes] = []
        self._texts: list[str] = []
        self._content_chunks = 0
        self._usage: Usage | None = None
        self.delivered = False
        self.finish_reason = ""

    def take(self, piece: StreamPiece) -> Sequence[bytes]:
        """Account for `piece`; return the chunks to deliver now (maybe none)."""
        if piece.usage is not None:
            self._usage = piece.usage
        if piece.finish_reason and not self.finish_reason:
            self.finish_reason = piece.finish_reason
        chunk = piece.chunk
        if chunk is None:
            return ()
        if not self.delivered and not piece.is_output:
            self._held.append(chunk)
            return ()
        if piece.text:
            self._texts.append(piece.text)
            self._content_chunks += 1
        if self.delivered:
            return (chunk,)
        self.delivered = True
        self._held.append(chunk)
        return self.flush()

    def flush(self) -> list[bytes]:
        """Release held chunks (a stream that ended without any output chunk)."""
        held, self._held = self._held, []
        return held

    def usage(self) -> tuple[Usage, bool]:
        """The usage and whether the upstream reported it (else it is estimated)."""
        if self._usage is not None:
            return self._usage, True
        completion = self.estimate_completion("".join(self._texts), self._content_chunks)
        return Usage(self._chat.estimated_prompt_tokens(), completion), False

    @staticmethod
    def estimate_completion(text: str, content_chunks: int) -> int:
        """Completion tokens of delivered text: the estimate, at least one per content chunk."""
        return max(estimate_tokens(text), content_chunks)
