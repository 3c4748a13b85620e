"""The rules of accounts and API keys: naming, issuing secrets, authenticating them.

Secrets are `sk-` plus 43 characters (32 random bytes, urlsafe base64 without padding).
Only HMAC-SHA256(server secret, secret) reaches the store, so a leaked database does not
yield usable keys, and a lookup is one indexed equality read.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from services.auth.errors import AccountNotFound, ApiKeyNotFound, InvalidArgument

if TYPE_CHECKING:
    # store.py builds these dataclasses at run time, so the import goes one way only.
    from services.auth.store import AuthStore

Clock = Callable[[], datetime]

DEFAULT_GROUP = "default"
SECRET_PREFIX = "sk-"
SECRET_BYTES = 32
DISPLAY_PREFIX_CHARS = 4
MAX_KEY_NAME_CHARS = 128
MAX_MODEL_ID_CHARS = 256
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Exactly what generate_secret() issues: anything else is refused before any read.
_SECRET = re.compile(r"sk-[A-Za-z0-9_-]{43}")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class AccountStatus(enum.Enum):
    """Life-cycle state of an account."""

    ACTIVE = "active"
    DISABLED = "disabled"


class KeyStatus(enum.Enum):
    """Life-cycle state of an API key."""

    ACTIVE = "active"
    REVOKED = "revoked"


class Decision(enum.Enum):
    """The outcome of authenticating a secret."""

    ALLOWED = "allowed"
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"
    ACCOUNT_DISABLED = "account_disabled"


# A key limit of -1 means "no limit"; 0 means "not set" (see auth.proto's KeyLimits).
UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's own rate limits: 0 = not set (the defaults apply), UNLIMITED = no limit."""

    rpm: int = 0
    tpm: int = 0
    concurrency: int = 0
    rpd: int = 0


@dataclass(frozen=True, slots=True)
class Account:
    """A customer of the gateway."""

    account_id: str
    name: str
    group: str
    status: AccountStatus
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key without its secret."""

    key_id: str
    account_id: str
    name: str
    display_prefix: str
    status: KeyStatus
    allowed_models: tuple[str, ...]
    limits: Limits
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """What the store found for a secret hash: the key, its account, the stored hash."""

    key: ApiKey
    account: Account
    secret_hash: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its account, and what the key may do."""

    key_id: str
    account_id: str
    account_name: str
    group: str
    allowed_models: tuple[str, ...]
    limits: Limits


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A decision, with the principal when it is ALLOWED."""

    decision: Decision
    principal: Principal | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key and its secret, which is shown exactly once."""

    key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What the operator asks for when issuing a key."""

    account_id: str
    name: str = ""
    allowed_models: Sequence[str] = ()
    limits: Limits = Limits()


def generate_secret() -> str:
    """A fresh secret: "sk-" + 43 urlsafe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def display_prefix(secret: str) -> str:
    """The part of a secret shown in listings, for example "sk-3fA9"."""
    return secret[: len(SECRET_PREFIX) + DISPLAY_PREFIX_CHARS]


def new_id(kind: str) -> str:
    """An opaque id such as "acct_3f9c..." or "key_a01b..."."""
    return f"{kind}_{secrets.token_hex(12)}"


class SecretHasher:
    """Keyed hash of key secrets (HMAC-SHA256 with the server secret), hex encoded."""

    def __init__(self, server_secret: bytes) -> None:
        if not server_secret:
            raise ValueError("the server secret must not be empty")
        self._key = server_secret

    def digest(self, secret: str) -> str:
        """The stored form of `secret`."""
        return hmac.new(self._key, secret.encode(), hashlib.sha256).hexdigest()


class KeyVerifier:
    """Turns a presented secret into a decision (the hot path: at most one read)."""

    def __init__(self, store: AuthStore, hasher: SecretHasher) -> None:
        self._store = store
        self._hasher = hasher

    async def authenticate(self, secret: str) -> AuthResult:
        """Decide on `secret`; unknown, revoked and disabled are results, not errors."""
        if _SECRET.fullmatch(secret) is None:
            return AuthResult(Decision.UNKNOWN_KEY)
        digest = self._hasher.digest(secret)
        match = await self._store.find_key_by_hash(digest)
        if match is None or not hmac.compare_digest(match.secret_hash, digest):
            return AuthResult(Decision.UNKNOWN_KEY)
        if match.key.status is KeyStatus.REVOKED:
            return AuthResult(Decision.REVOKED)
        if match.account.status is AccountStatus.DISABLED:
            return AuthResult(Decision.ACCOUNT_DISABLED)
        principal = Principal(
            key_id=match.key.key_id,
            account_id=match.account.account_id,
            account_name=match.account.name,
            group=match.account.group,
            allowed_models=match.key.allowed_models,
            limits=match.key.limits,
        )
        return AuthResult(Decision.ALLOWED, principal)


class AccountAdmin:
    """The operator's side: create and look up accounts, issue, list and revoke keys."""

    def __init__(self, store: AuthStore, hasher: SecretHasher, clock: Clock = utc_now) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock

    async def create_account(self, name: str, group: str = "") -> Account:
        """Create an active account; AccountNameTaken if the name is in use."""
        _check_name("account name", name)
        group = group or DEFAULT_GROUP
        _check_name("group", group)
        account = Account(new_id("acct"), name, group, AccountStatus.ACTIVE, self._clock())
        await self._store.insert_account(account)
        return account

    async def get_account(self, account_id: str = "", name: str = "") -> Account:
        """The account with this id or this name (exactly one must be given)."""
        if bool(account_id) == bool(name):
            raise InvalidArgument("give exactly one of account_id and name")
        if account_id:
            account = await self._store.get_account(account_id)
        else:
            account = await self._store.get_account_by_name(name)
        if account is None:
            raise AccountNotFound(f"account {account_id or name!r} not found")
        return account

    async def list_accounts(self) -> list[Account]:
        """Every account, oldest first."""
        return await self._store.list_accounts()

    async def create_api_key(self, spec: KeySpec) -> IssuedKey:
        """Issue a key for an existing account; the secret is returned only here."""
        _check_key_spec(spec)
        await self.get_account(account_id=spec.account_id)
        secret = generate_secret()
        key = ApiKey(
            key_id=new_id("key"),
            account_id=spec.account_id,
            name=spec.name,
            display_prefix=display_prefix(secret),
            status=KeyStatus.ACTIVE,
            allowed_models=tuple(dict.fromkeys(spec.allowed_models)),
            limits=spec.limits,
            created_at=self._clock(),
        )
        await self._store.insert_key(key, self._hasher.digest(secret))
        return IssuedKey(key, secret)

    async def list_api_keys(self, account_id: str) -> list[ApiKey]:
        """The keys of an existing account, oldest first."""
        _check_id("account_id", account_id)
        await self.get_account(account_id=account_id)
        return await self._store.list_keys(account_id)

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key now; a revoked key stays as it is (same revoke time)."""
        _check_id("key_id", key_id)
        key = await self._store.get_key(key_id)
        if key is None:
            raise ApiKeyNotFound(f"API key {key_id!r} not found")
        if key.status is KeyStatus.REVOKED:
            return key
        revoked = await self._store.revoke_key(key_id, self._clock())
        if revoked is None:
            raise ApiKeyNotFound(f"API key {key_id!r} not found")
        return revoked


def _check_name(what: str, value: str) -> None:
    if _NAME.fullmatch(value) is None:
        raise InvalidArgument(f"{what} must be 1-64 characters of letters, digits, . _ -")


def _check_id(what: str, value: str) -> None:
    if not value:
        raise InvalidArgument(f"{what} is required")


def _check_key_spec(spec: KeySpec) -> None:
    _check_id("account_id", spec.account_id)
    if len(spec.name) > MAX_KEY_NAME_CHARS:
        raise InvalidArgument(f"key name must be at most {MAX_KEY_NAME_CHARS} characters")
    for model in spec.allowed_models:
        if not model or len(model) > MAX_MODEL_ID_CHARS:
            raise InvalidArgument(f"allowed model ids must be 1-{MAX_MODEL_ID_CHARS} characters")
    limits = spec.limits
    if min(limits.rpm, limits.tpm, limits.concurrency, limits.rpd) < UNLIMITED:
        raise InvalidArgument("a limit must be positive, 0 (the default) or -1 (no limit)")
