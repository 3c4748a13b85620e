"""Prompt-cache affinity: one account's repeated prompt goes back to the target that
served it, where the upstream's prompt cache is warm.

Upstream prompt caches (OpenAI's automatic caching, Anthropic's and Gemini's cached
prefixes) live per upstream account, so spreading one conversation over many keys pays
full price for the prompt every time. A request's affinity key is a SHA-256 over the
caller's account, the requested model and either the client's `prompt_cache_key` (else
its `user`) or the first `prefix_chars` characters of the prompt's start: the leading
system/developer messages and the first message after them (chat), `instructions` and
the first `input` item (responses), the first `prompt` (completions). Later turns of a
conversation keep that start, so they keep the key. Other operations (embeddings, images,
audio) have no prompt cache and no key; neither has a request without an account, so
two accounts never share an entry.

The book remembers, per key, the (channel, key id) that last served the first try of a
request, for `ttl_s` after it last served (a bounded LRU in memory). A request's first
try goes there when that target is still a candidate and available; otherwise (an
ejected, cooling or disabled key, a removed channel) normal selection picks, and the
target that then serves is remembered instead. Lookups are counted by outcome (hit,
miss, unavailable): the hit rate is hits over all lookups.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.affinity_config import AffinityConfig
from services.router import metrics
from services.router.balancer import Target
from services.router.relay_request import Operation, RelayRequest
from services.router.request import ChatRequest

# The relayed operations whose upstreams keep prompt caches (chat always has a key).
CACHED = frozenset({Operation.COMPLETIONS, Operation.RESPONSES})
# Leading messages of these roles are the system prompt, part of every turn's start.
SYSTEM_ROLES = frozenset({"system", "developer"})
HIT, MISS, UNAVAILABLE = "hit", "miss", "unavailable"


@dataclass(slots=True)
class AffinityStats:
    """Lookups of one book by outcome."""

    hit: int = 0
    miss: int = 0
    unavailable: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over all lookups (0 before the first)."""
        total = self.hit + self.miss + self.unavailable
        return self.hit / total if total else 0.0


@dataclass(slots=True)
class _Entry:
    target: tuple[str, str]
    expires: float


class AffinityBook:
    """Which (channel, key) last served each affinity key, for a TTL, in a bounded LRU."""

    def __init__(self, config: AffinityConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or AffinityConfig()
        self.stats = AffinityStats()
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def chat_key(self, account: str, chat: ChatRequest) -> str | None:
        """The affinity key of a chat request of `account`, or None (no affinity)."""
        if not self._applies(account):
            return None
        return self._key(account, chat.model, chat.payload, _chat_start(chat.payload))

    def relay_key(self, account: str, request: RelayRequest) -> str | None:
        """The affinity key of a relayed request of `account`, or None (no affinity)."""
        if request.operation not in CACHED or not self._applies(account):
            return None
        return self._key(account, request.model, request.payload, _relay_start(request.payload))

    def choose(self, key: str, targets: Sequence[Target],
               available: Callable[[Target], bool]) -> Target | None:
        """The target remembered for `key` if it is one of `targets` and `available`;
        counts the lookup's outcome."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= self._clock():
            del self._entries[key]
            entry = None
        if entry is None:
            self._count(MISS)
            return None
        target = next((t for t in targets if t.name == entry.target), None)
        if target is None or not available(target):
            self._count(UNAVAILABLE)
            return None
        self._entries.move_to_end(key)
        self._count(HIT)
        return target

    def remember(self, key: str, target: Target) -> None:
        """`target` served `key`'s request: send the next ones there for a TTL."""
        self._entries[key] = _Entry(target.name, self._clock() + self.config.ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)

    def _key(self, account: str, model: str, payload: Mapping[str, Any],
             start: Sequence[Any]) -> str | None:
        named = _named(payload)
        if named is not None:
            return _digest(account, model, "named", named)
        if not start:
            return None
        text = orjson.dumps(start, option=orjson.OPT_SORT_KEYS).decode()
        return _digest(account, model, "prefix", text[: self.config.prefix_chars])

    def _applies(self, account: str) -> bool:
        # Checked before the prompt's start is read: a disabled book costs nothing.
        return self.config.enabled and bool(account)

    def _count(self, outcome: str) -> None:
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        metrics.AFFINITY_LOOKUPS.labels(outcome).inc()


def _named(payload: Mapping[str, Any]) -> str | None:
    """The client's own cache key: `prompt_cache_key`, else `user` (None if neither)."""
    for name in ("prompt_cache_key", "user"):
        value = payload.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _chat_start(payload: Mapping[str, Any]) -> list[Any]:
    """The leading system/developer messages and the first message after them."""
    messages = payload.get("messages")
    start: list[Any] = []
    for message in messages if isinstance(messages, list) else ():
        start.append(message)
        if not (isinstance(message, dict) and message.get("role") in SYSTEM_ROLES):
            break
    return start


def _relay_start(payload: Mapping[str, Any]) -> list[Any]:
    """`instructions` and the first `input` item (responses), or the first `prompt`."""
    start: list[Any] = []
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        start.append(instructions)
    for name in ("input", "prompt"):
        value = payload.get(name)
        if isinstance(value, list) and value:
            # A token array is one prompt; any other list is a batch (or turns): its first.
            tokens = all(isinstance(v, int) for v in value)
            start.append(value if tokens else value[0])
        elif isinstance(value, str) and value:
            start.append(value)
    return start


def _digest(account: str, model: str, kind: str, material: str) -> str:
    # A JSON array, so no two (account, model, ...) tuples share a preimage.
    return hashlib.sha256(orjson.dumps([account, model, kind, material])).hexdigest()
