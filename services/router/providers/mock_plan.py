"""What the mock answers a text request: its reply cut into pieces, and its magic.

The reply is `MockSettings.reply` cut into word-ish pieces (" word" with its leading
space); one piece is one completion token, one content event in a stream. A token
limit cuts the reply (finish reason "length"). Magic instructions in the request's text
make the mock misbehave on purpose:
- `[[mock:error:503]]` (any HTTP status) fails before the first piece the way an
  upstream answering that status would (429 rate limited, 400 rejected, ...).
- `[[mock:cut:N]]` cuts a stream with an upstream error after N content pieces; it has
  no effect on non-streaming requests.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass

import orjson

from services.common.gateway_config import MockSettings
from services.router.providers.base import Usage, error_for_status

SYSTEM_FINGERPRINT = "fp_apirelay_mock"
_PIECES = re.compile(r"\s*\S+")
_ERROR = re.compile(r"\[\[mock:error:(\d{3})\]\]")
_CUT = re.compile(r"\[\[mock:cut:(\d+)\]\]")


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    """What one request gets: its pieces, finish reason, usage, ids and failures."""

    reply_id: str
    created: int
    model: str
    pieces: tuple[str, ...]
    finish_reason: str
    usage: Usage
    cut_after: int | None

    @property
    def text(self) -> str:
        """The whole reply."""
        return "".join(self.pieces)


def check_magic_error(text: str) -> None:
    """Raise the ProviderError an upstream answering `[[mock:error:NNN]]`'s status would."""
    if match := _ERROR.search(text):
        status = int(match.group(1))
        raise error_for_status(status, error_body(status))


def plan_reply(
    settings: MockSettings, *, text: str, max_tokens: int | None, stream: bool,
    prompt_tokens: int, model: str, id_prefix: str, created: int,
) -> ReplyPlan:
    """The plan for a request whose magic is read from `text`; raises a magic error."""
    check_magic_error(text)
    pieces = tuple(_PIECES.findall(settings.reply))
    finish_reason = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces, finish_reason = pieces[:max_tokens], "length"
    cut = _CUT.search(text) if stream else None
    return ReplyPlan(
        reply_id=id_prefix + secrets.token_hex(12),
        created=created,
        model=model,
        pieces=pieces,
        finish_reason=finish_reason,
        usage=Usage(prompt_tokens, len(pieces)),
        cut_after=int(cut.group(1)) if cut and int(cut.group(1)) <= len(pieces) else None,
    )


def error_body(status: int) -> bytes:
    """The OpenAI error body the mock answers a magic error with."""
    return orjson.dumps({"error": {
        "message": f"mock upstream error {status}",
        "type": "invalid_request_error",
        "param": None,
        "code": "mock_error",
    }})


class Pacer:
    """The mock's timing: a delay before the first piece, then a pace between pieces."""

    def __init__(self, settings: MockSettings) -> None:
        self._settings = settings

    def pace(self, pieces: int) -> float:
        """Seconds that `pieces` pieces take at the configured pace."""
        tps = self._settings.tokens_per_second
        return pieces / tps if tps > 0 else 0.0

    async def first(self, then_pieces: int = 0) -> None:
        """Wait the first-token delay, plus the time of `then_pieces` pieces."""
        await self.wait(self._settings.first_token_delay_ms / 1000 + self.pace(then_pieces))

    async def next(self) -> None:
        """Wait the time of one piece."""
        await self.wait(self.pace(1))

    @staticmethod
    async def wait(seconds: float) -> None:
        """Sleep `seconds` (not at all for 0)."""
        if seconds > 0:
            await asyncio.sleep(seconds)
