"""Rules of accounts and keys, on an in-memory store and a fixed clock."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from services.auth.core import (
    UNLIMITED,
    AccountAdmin,
    AccountStatus,
    ApiKey,
    Decision,
    KeyMatch,
    KeySpec,
    KeyStatus,
    KeyVerifier,
    Limits,
    SecretHasher,
    display_prefix,
    generate_secret,
)
from services.auth.errors import (
    AccountNameTaken,
    AccountNotFound,
    ApiKeyNotFound,
    InvalidArgument,
)
from tests.unit.auth.fakes import FixedClock, InMemoryAuthStore

SERVER_SECRET = b"unit-test-server-secret-0123456789abcdef"


@pytest.fixture
def store() -> InMemoryAuthStore:
    return InMemoryAuthStore()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def admin(store: InMemoryAuthStore, clock: FixedClock) -> AccountAdmin:
    return AccountAdmin(store, SecretHasher(SERVER_SECRET), clock)


@pytest.fixture
def verifier(store: InMemoryAuthStore) -> KeyVerifier:
    return KeyVerifier(store, SecretHasher(SERVER_SECRET))


def test_secrets_are_sk_plus_43_urlsafe_chars_and_unique() -> None:
    issued = {generate_secret() for _ in range(200)}
    assert len(issued) == 200
    for secret in issued:
        assert re.fullmatch(r"sk-[A-Za-z0-9_-]{43}", secret)
    assert display_prefix("sk-3fA9rest") == "sk-3fA9"


def test_hasher_is_hmac_sha256_keyed_by_the_server_secret() -> None:
    secret = generate_secret()
    expected = hmac.new(SERVER_SECRET, secret.encode(), hashlib.sha256).hexdigest()
    assert SecretHasher(SERVER_SECRET).digest(secret) == expected
    assert SecretHasher(b"another-server-secret").digest(secret) != expected
    with pytest.raises(ValueError):
        SecretHasher(b"")


async def test_create_account_defaults(admin: AccountAdmin, clock: FixedClock) -> None:
    account = await admin.create_account("team.a_1-B")
    assert re.fullmatch(r"acct_[0-9a-f]{24}", account.account_id)
    assert (account.name, account.group) == ("team.a_1-B", "default")
    assert account.status is AccountStatus.ACTIVE
    assert account.created_at == clock.now
    assert (await admin.create_account("x" * 64, group="vip")).group == "vip"


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "caf\u00e9", "a/b", "a:b"])
async def test_create_account_rejects_bad_names(admin: AccountAdmin, name: str) -> None:
    with pytest.raises(InvalidArgument):
        await admin.create_account(name)


async def test_create_account_rejects_bad_group(admin: AccountAdmin) -> None:
    with pytest.raises(InvalidArgument):
        await admin.create_account("ok", group="no spaces")


async def test_duplicate_account_name(admin: AccountAdmin) -> None:
    await admin.create_account("dup")
    with pytest.raises(AccountNameTaken):
        await admin.create_account("dup")


async def test_get_account_by_id_or_name(admin: AccountAdmin) -> None:
    account = await admin.create_account("findme")
    assert await admin.get_account(account_id=account.account_id) == account
    assert await admin.get_account(name="findme") == account
    with pytest.raises(AccountNotFound):
        await admin.get_account(name="nobody")
    with pytest.raises(AccountNotFound):
        await admin.get_account(account_id="acct_missing")


@pytest.mark.parametrize(("account_id", "name"), [("", ""), ("acct_1", "both")])
async def test_get_account_needs_exactly_one_selector(
    admin: AccountAdmin, account_id: str, name: str
) -> None:
    with pytest.raises(InvalidArgument):
        await admin.get_account(account_id=account_id, name=name)


async def test_list_accounts_oldest_first(admin: AccountAdmin, clock: FixedClock) -> None:
    first = await admin.create_account("first")
    clock.advance(1)
    second = await admin.create_account("second")
    assert await admin.list_accounts() == [first, second]


async def test_create_api_key_stores_only_the_hash(
    admin: AccountAdmin, store: InMemoryAuthStore, clock: FixedClock
) -> None:
    account = await admin.create_account("keys")
    spec = KeySpec(account.account_id, "ci", ("gpt-4o", "gpt-4o", "o3"), Limits(60, 1000, 2))
    issued = await admin.create_api_key(spec)
    key = issued.key
    assert re.fullmatch(r"key_[0-9a-f]{24}", key.key_id)
    assert key.display_prefix == issued.secret[:7]
    assert key.allowed_models == ("gpt-4o", "o3")
    assert key.limits == Limits(60, 1000, 2)
    assert (key.status, key.created_at, key.revoked_at) == (KeyStatus.ACTIVE, clock.now, None)
    assert store.hashes[key.key_id] == SecretHasher(SERVER_SECRET).digest(issued.secret)
    assert issued.secret not in repr(issued)
    assert issued.secret not in repr(store.keys)


async def test_create_api_key_for_unknown_account(admin: AccountAdmin) -> None:
    with pytest.raises(AccountNotFound):
        await admin.create_api_key(KeySpec("acct_missing"))


@pytest.mark.parametrize(
    "spec",
    [
        KeySpec(""),
        KeySpec("ACCOUNT", limits=Limits(rpm=-2)),
        KeySpec("ACCOUNT", limits=Limits(tpm=-2)),
        KeySpec("ACCOUNT", limits=Limits(concurrency=-2)),
        KeySpec("ACCOUNT", limits=Limits(rpd=-2)),
        KeySpec("ACCOUNT", allowed_models=("gpt-4o", "")),
        KeySpec("ACCOUNT", name="n" * 129),
    ],
)
async def test_create_api_key_rejects_bad_specs(admin: AccountAdmin, spec: KeySpec) -> None:
    account = await admin.create_account("bad-specs")
    if spec.account_id == "ACCOUNT":
        spec = KeySpec(account.account_id, spec.name, spec.allowed_models, spec.limits)
    with pytest.raises(InvalidArgument):
        await admin.create_api_key(spec)


async def test_a_key_may_say_unlimited_or_leave_a_limit_to_the_defaults(
    admin: AccountAdmin, verifier: KeyVerifier
) -> None:
    account = await admin.create_account("unlimited")
    limits = Limits(rpm=UNLIMITED, tpm=0, concurrency=5, rpd=UNLIMITED)
    issued = await admin.create_api_key(KeySpec(account.account_id, limits=limits))
    assert issued.key.limits == limits
    result = await verifier.authenticate(issued.secret)
    assert result.principal is not None and result.principal.limits == limits


async def test_list_api_keys(admin: AccountAdmin) -> None:
    mine = await admin.create_account("mine")
    other = await admin.create_account("other")
    a = await admin.create_api_key(KeySpec(mine.account_id, "a"))
    await admin.create_api_key(KeySpec(other.account_id, "b"))
    c = await admin.create_api_key(KeySpec(mine.account_id, "c"))
    assert await admin.list_api_keys(mine.account_id) == [a.key, c.key]
    with pytest.raises(AccountNotFound):
        await admin.list_api_keys("acct_missing")
    with pytest.raises(InvalidArgument):
        await admin.list_api_keys("")


async def test_revoke_is_idempotent_and_keeps_the_first_time(
    admin: AccountAdmin, clock: FixedClock
) -> None:
    account = await admin.create_account("revoker")
    issued = await admin.create_api_key(KeySpec(account.account_id))
    clock.advance(10)
    revoked_at = clock.now
    revoked = await admin.revoke_api_key(issued.key.key_id)
    assert (revoked.status, revoked.revoked_at) == (KeyStatus.REVOKED, revoked_at)
    clock.advance(10)
    assert await admin.revoke_api_key(issued.key.key_id) == revoked
    with pytest.raises(ApiKeyNotFound):
        await admin.revoke_api_key("key_missing")
    with pytest.raises(InvalidArgument):
        await admin.revoke_api_key("")


async def test_authenticate_allowed_returns_the_principal(
    admin: AccountAdmin, verifier: KeyVerifier
) -> None:
    account = await admin.create_account("caller", group="vip")
    issued = await admin.create_api_key(
        KeySpec(account.account_id, allowed_models=("m1",), limits=Limits(5, 6, 7, 8))
    )
    result = await verifier.authenticate(issued.secret)
    assert result.decision is Decision.ALLOWED
    assert result.principal is not None
    p = result.principal
    assert (p.key_id, p.account_id, p.account_name, p.group) == (
        issued.key.key_id, account.account_id, "caller", "vip",
    )
    assert (p.allowed_models, p.limits) == (("m1",), Limits(5, 6, 7, 8))


async def test_authenticate_unknown_well_formed_secret_reads_once(
    store: InMemoryAuthStore, verifier: KeyVerifier
) -> None:
    result = await verifier.authenticate(generate_secret())
    assert (result.decision, result.principal) == (Decision.UNKNOWN_KEY, None)
    assert store.reads == 1


@pytest.mark.parametrize(
    "secret",
    ["", "sk-", "sk-short", "pk-" + "a" * 43, "sk-" + "a" * 44, "sk-" + "a" * 42 + "=",
     "Bearer sk-" + "a" * 43, " sk-" + "a" * 43],
)
async def test_malformed_secret_is_unknown_without_a_read(
    store: InMemoryAuthStore, verifier: KeyVerifier, secret: str
) -> None:
    assert (await verifier.authenticate(secret)).decision is Decision.UNKNOWN_KEY
    assert store.reads == 0


async def test_authenticate_revoked_and_disabled(
    admin: AccountAdmin, store: InMemoryAuthStore, verifier: KeyVerifier
) -> None:
    account = await admin.create_account("states")
    revoked = await admin.create_api_key(KeySpec(account.account_id))
    active = await admin.create_api_key(KeySpec(account.account_id))
    await admin.revoke_api_key(revoked.key.key_id)
    assert (await verifier.authenticate(revoked.secret)).decision is Decision.REVOKED
    assert (await verifier.authenticate(active.secret)).decision is Decision.ALLOWED
    await store.set_account_status(account.account_id, AccountStatus.DISABLED)
    disabled = await verifier.authenticate(active.secret)
    assert (disabled.decision, disabled.principal) == (Decision.ACCOUNT_DISABLED, None)
    # A revoked key stays revoked whatever its account's state.
    assert (await verifier.authenticate(revoked.secret)).decision is Decision.REVOKED


async def test_secret_hashed_under_another_server_secret_is_unknown(
    admin: AccountAdmin, store: InMemoryAuthStore
) -> None:
    account = await admin.create_account("rotated")
    issued = await admin.create_api_key(KeySpec(account.account_id))
    other = KeyVerifier(store, SecretHasher(b"a-different-server-secret-value"))
    assert (await other.authenticate(issued.secret)).decision is Decision.UNKNOWN_KEY


class _MismatchedStore(InMemoryAuthStore):
    """Returns a row whose stored hash is not the one asked for."""

    async def find_key_by_hash(self, secret_hash: str) -> KeyMatch | None:
        match = next(iter(self.hashes.items()), None)
        if match is None:
            return None
        key: ApiKey = self.keys[match[0]]
        return KeyMatch(key, self.accounts[key.account_id], "0" * 64)


async def test_authenticate_compares_the_stored_hash(clock: FixedClock) -> None:
    store = _MismatchedStore()
    admin = AccountAdmin(store, SecretHasher(SERVER_SECRET), clock)
    account = await admin.create_account("mismatch")
    issued = await admin.create_api_key(KeySpec(account.account_id))
    verifier = KeyVerifier(store, SecretHasher(SERVER_SECRET))
    assert (await verifier.authenticate(issued.secret)).decision is Decision.UNKNOWN_KEY
