"""The typed facts the edge works with, translated from the services' protos."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from services.common.charges import Tariff
from services.common.limits_config import LimitValues

NO_UNITS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, as AuthService resolved its key."""

    key_id: str
    account_id: str
    account_name: str
    group: str
    allowed_models: frozenset[str]
    # The key's own limits (None: the group's or configured default applies; 0: none).
    limits: LimitValues

    def may_use(self, model: str) -> bool:
        """True if the key may call `model` (an empty allow-list allows every model)."""
        return not self.allowed_models or model in self.allowed_models


class AuthOutcome(enum.Enum):
    """What AuthService decided about a secret."""

    ALLOWED = "allowed"
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"
    ACCOUNT_DISABLED = "account_disabled"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One entry of the router's model catalog."""

    id: str
    owned_by: str
    created: int
    max_output_tokens: int


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and non-token units (services.common.units) one request consumed."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    # A factory, not a default: a mappingproxy is unhashable before Python 3.12.
    units: Mapping[str, int] = field(default_factory=lambda: NO_UNITS)
    # Prompt tokens written to the provider's prompt cache (a subset of prompt_tokens,
    # disjoint from cached_prompt_tokens); last, so positional constructions stay valid.
    cache_write_prompt_tokens: int = 0

    @property
    def empty(self) -> bool:
        """True when nothing at all was consumed."""
        return self.total_tokens == 0 and not any(q > 0 for q in self.units.values())


class UsageSource(enum.IntEnum):
    """Where a usage came from (values equal the proto enum's)."""

    UPSTREAM = 1
    ESTIMATED = 2


class LimitKind(enum.Enum):
    """Which limit a rule or status is about (values as in the `limits:` config)."""

    RPM = "rpm"
    TPM = "tpm"
    CONCURRENCY = "concurrency"
    RPD = "rpd"


class LimitScope(enum.Enum):
    """Whose capacity a limit counts."""

    KEY = "key"
    ACCOUNT = "account"  # all keys of the account together
    KEY_MODEL = "key_model"  # one key on one model


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One limit a request is checked against."""

    scope: LimitScope
    kind: LimitKind
    limit: int


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit after a decision."""

    kind: LimitKind
    limit: int
    remaining: int
    reset_after_s: float
    scope: LimitScope = LimitScope.KEY
    over_limit: bool = False  # this limit had no room for the request


@dataclass(frozen=True, slots=True)
class Lease:
    """The limiter's answer to an acquire: `denied` is the first limit without room."""

    allowed: bool
    lease_id: str
    denied: LimitState | None
    states: tuple[LimitState, ...]


class ReserveDecision(enum.Enum):
    """Billing's answer to a reserve."""

    RESERVED = "reserved"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    MODEL_NOT_PRICED = "model_not_priced"
    KEY_BUDGET_EXCEEDED = "key_budget_exceeded"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold placed (or not) on the account's wallet."""

    decision: ReserveDecision
    held_nanos: int
    tariff: Tariff | None = None


@dataclass(frozen=True, slots=True)
class CompletionFailure:
    """An error the router asks the edge to show the client."""

    http_status: int
    type: str
    code: str | None
    message: str
    param: str | None


@dataclass(frozen=True, slots=True)
class Completion:
    """A non-streaming answer: the OpenAI body and its content type, or the failure."""

    body: bytes
    usage: Usage | None
    usage_source: UsageSource
    channel: str
    failure: CompletionFailure | None
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a router stream ended."""

    usage: Usage | None
    usage_source: UsageSource
    finish_reason: str
    channel: str
    failure: CompletionFailure | None


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One item of a router stream: chunks to send in order, and the end on the last.

    A chat stream's chunks are JSON objects; a relayed stream's are whole SSE events or
    pieces of audio, with the answer's content type on the first item.
    """

    chunks: tuple[bytes, ...]
    end: StreamEnd | None = None
    content_type: str = ""


class Operation(enum.Enum):
    """The OpenAI endpoint a request is for (the value labels metrics and logs)."""

    CHAT = "chat.completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    IMAGE_GENERATIONS = "images.generations"
    IMAGE_EDITS = "images.edits"
    AUDIO_TRANSCRIPTIONS = "audio.transcriptions"
    AUDIO_TRANSLATIONS = "audio.translations"
    AUDIO_SPEECH = "audio.speech"
    RESPONSES = "responses"
