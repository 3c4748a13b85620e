"""Tool call ids for Gemini function calls, carrying their thought signatures.

Gemini's thinking models put a `thoughtSignature` on a `functionCall` part and refuse the
next turn (400) unless the same part comes back with it. OpenAI clients keep nothing of
a tool call but its id, name and arguments, and the router keeps no conversation state,
so the signature travels inside the id:

    call_<24 hex digits>                       no signature
    call_<24 hex digits>_ts_<signature>        signature, base64 made URL-safe, no padding

The hex digits are a hash of the response id, the candidate, the call's position, its
name and arguments: stable (the same answer gives the same ids, streamed or not) and
unique within an answer. The tool call also carries the signature in
`extra_content.google.thought_signature`, as Google's own OpenAI-compatible endpoint
does; when the client sends the history back, either place is read.
"""

from __future__ import annotations

import hashlib
from typing import Any

from services.router.providers.base import field_of

PREFIX = "call_"
SIGNATURE_MARK = "_ts_"
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")


def tool_call_id(seed: str, position: str, name: str, arguments: str, signature: str) -> str:
    """The id of one tool call: a stable hash, then the signature when there is one."""
    digest = hashlib.sha256(
        f"{seed}\x00{position}\x00{name}\x00{arguments}".encode()).hexdigest()[:24]
    if not signature:
        return PREFIX + digest
    return PREFIX + digest + SIGNATURE_MARK + signature.translate(_TO_URLSAFE).rstrip("=")


def signature_of(tool_call: Any) -> str:
    """The thought signature an OpenAI tool call carries back ("" when none)."""
    google = field_of(field_of(tool_call, "extra_content"), "google")
    extra = field_of(google, "thought_signature")
    if isinstance(extra, str) and extra:
        return extra
    call_id = field_of(tool_call, "id")
    if not isinstance(call_id, str) or not call_id.startswith(PREFIX):
        return ""
    _, mark, encoded = call_id.partition(SIGNATURE_MARK)
    if not mark or not encoded:
        return ""
    return encoded.translate(_FROM_URLSAFE) + "=" * (-len(encoded) % 4)


def extra_content(signature: str) -> dict[str, Any]:
    """The `extra_content` field of a tool call with a signature (Google's own shape)."""
    return {"google": {"thought_signature": signature}}
