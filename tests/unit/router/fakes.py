"""A scripted provider for the router's core tests: chat and relayed requests alike."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.router.errors import ProviderError
from services.router.providers.base import (
    Completion,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
    Usage,
)
from services.router.relay_request import Operation

USAGE = Usage(7, 3)
COMPLETION = Completion(b'{"ok":1}', USAGE, "stop", "hi")
ANSWER = RelayAnswer(b'{"data":[]}', "application/json", Usage(3, 0), True)


@dataclass
class FakeProvider:
    """Plays a script: stream pieces then maybe an error; records requests and closes."""

    pieces: Sequence[Any] = ()
    error: ProviderError | None = None
    requests: list[Any] = field(default_factory=list)
    closed: int = 0
    native: bool = True  # False: a chat-only provider (relays nothing natively)

    async def complete(self, request: UpstreamRequest) -> Completion:
        """COMPLETION, or the scripted error."""
        return self._answer(request, COMPLETION)

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """The scripted pieces, then the scripted error."""
        return self._play(request)

    def relays(self, operation: Operation) -> bool:
        """`native` for every operation."""
        return self.native

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """ANSWER, or the scripted error."""
        return self._answer(attempt, ANSWER)

    def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """The scripted pieces, then the scripted error."""
        return self._play(attempt)

    def _answer(self, request: Any, answer: Any) -> Any:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return answer

    async def _play(self, request: Any) -> AsyncGenerator[Any, None]:
        self.requests.append(request)
        try:
            for piece in self.pieces:
                yield piece
            if self.error is not None:
                raise self.error
        finally:
            self.closed += 1
