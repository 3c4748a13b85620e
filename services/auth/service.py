"""The gRPC adapter of AuthService: proto in, core call, proto out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf import timestamp_pb2
from prometheus_client import Counter

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.core import (
    Account,
    AccountAdmin,
    AccountStatus,
    ApiKey,
    AuthResult,
    Decision,
    KeySpec,
    KeyStatus,
    KeyVerifier,
    Limits,
)
from services.auth.errors import (
    AccountNameTaken,
    AccountNotFound,
    ApiKeyNotFound,
    InvalidArgument,
    StoreUnavailable,
)

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name

# Every RPC except AuthenticateKey needs the admin key.
ADMIN_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in (
        "CreateAccount", "GetAccount", "ListAccounts", "CreateApiKey", "ListApiKeys",
        "RevokeApiKey",
    )
)

ERRORS: Mapping[type[BaseException], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    AccountNameTaken: grpc.StatusCode.ALREADY_EXISTS,
    AccountNotFound: grpc.StatusCode.NOT_FOUND,
    ApiKeyNotFound: grpc.StatusCode.NOT_FOUND,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
}

AUTHENTICATIONS = Counter(
    "apirelay_auth_authentications_total", "Key authentications by decision.", ["decision"]
)
KEYS_CREATED = Counter("apirelay_auth_api_keys_created_total", "API keys issued.")

_DECISIONS = {
    Decision.ALLOWED: auth_pb2.AUTH_DECISION_ALLOWED,
    Decision.UNKNOWN_KEY: auth_pb2.AUTH_DECISION_UNKNOWN_KEY,
    Decision.REVOKED: auth_pb2.AUTH_DECISION_REVOKED,
    Decision.ACCOUNT_DISABLED: auth_pb2.AUTH_DECISION_ACCOUNT_DISABLED,
}
_ACCOUNT_STATUSES = {
    AccountStatus.ACTIVE: auth_pb2.ACCOUNT_STATUS_ACTIVE,
    AccountStatus.DISABLED: auth_pb2.ACCOUNT_STATUS_DISABLED,
}
_KEY_STATUSES = {
    KeyStatus.ACTIVE: auth_pb2.KEY_STATUS_ACTIVE,
    KeyStatus.REVOKED: auth_pb2.KEY_STATUS_REVOKED,
}


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """gRPC adapter over KeyVerifier and AccountAdmin; holds no rules."""

    def __init__(self, verifier: KeyVerifier, admin: AccountAdmin) -> None:
        self._verifier = verifier
        self._admin = admin

    async def AuthenticateKey(
        self, request: auth_pb2.AuthenticateKeyRequest, context: Context
    ) -> auth_pb2.AuthenticateKeyResponse:
        """Resolve a secret into a decision and, when allowed, a principal."""
        result = await self._verifier.authenticate(request.secret)
        AUTHENTICATIONS.labels(decision=result.decision.value).inc()
        return _auth_response(result)

    async def CreateAccount(
        self, request: auth_pb2.CreateAccountRequest, context: Context
    ) -> auth_pb2.CreateAccountResponse:
        """Create an account."""
        account = await self._admin.create_account(request.name, request.group)
        return auth_pb2.CreateAccountResponse(account=_account(account))

    async def GetAccount(
        self, request: auth_pb2.GetAccountRequest, context: Context
    ) -> auth_pb2.GetAccountResponse:
        """Find one account by id or name."""
        account = await self._admin.get_account(request.account_id, request.name)
        return auth_pb2.GetAccountResponse(account=_account(account))

    async def ListAccounts(
        self, request: auth_pb2.ListAccountsRequest, context: Context
    ) -> auth_pb2.ListAccountsResponse:
        """List every account, oldest first."""
        accounts = await self._admin.list_accounts()
        return auth_pb2.ListAccountsResponse(accounts=[_account(a) for a in accounts])

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: Context
    ) -> auth_pb2.CreateApiKeyResponse:
        """Issue a key; the secret appears in this response only."""
        spec = KeySpec(
            account_id=request.account_id,
            name=request.name,
            allowed_models=tuple(request.allowed_models),
            limits=Limits(request.limits.rpm, request.limits.tpm, request.limits.concurrency,
                          request.limits.rpd),
        )
        issued = await self._admin.create_api_key(spec)
        KEYS_CREATED.inc()
        return auth_pb2.CreateApiKeyResponse(key=_api_key(issued.key), secret=issued.secret)

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: Context
    ) -> auth_pb2.ListApiKeysResponse:
        """List an account's keys without secrets."""
        keys = await self._admin.list_api_keys(request.account_id)
        return auth_pb2.ListApiKeysResponse(keys=[_api_key(k) for k in keys])

    async def RevokeApiKey(
        self, request: auth_pb2.RevokeApiKeyRequest, context: Context
    ) -> auth_pb2.RevokeApiKeyResponse:
        """Revoke a key (idempotent)."""
        key = await self._admin.revoke_api_key(request.key_id)
        return auth_pb2.RevokeApiKeyResponse(key=_api_key(key))


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _limits(limits: Limits) -> auth_pb2.KeyLimits:
    return auth_pb2.KeyLimits(rpm=limits.rpm, tpm=limits.tpm, concurrency=limits.concurrency,
                              rpd=limits.rpd)


def _auth_response(result: AuthResult) -> auth_pb2.AuthenticateKeyResponse:
    response = auth_pb2.AuthenticateKeyResponse(decision=_DECISIONS[result.decision])
    if result.principal is not None:
        p = result.principal
        response.principal.CopyFrom(
            auth_pb2.Principal(
                key_id=p.key_id,
                account_id=p.account_id,
                account_name=p.account_name,
                group=p.group,
                allowed_models=p.allowed_models,
                limits=_limits(p.limits),
            )
        )
    return response


def _account(account: Account) -> auth_pb2.Account:
    return auth_pb2.Account(
        account_id=account.account_id,
        name=account.name,
        group=account.group,
        status=_ACCOUNT_STATUSES[account.status],
        create_time=_timestamp(account.created_at),
    )


def _api_key(key: ApiKey) -> auth_pb2.ApiKey:
    message = auth_pb2.ApiKey(
        key_id=key.key_id,
        account_id=key.account_id,
        name=key.name,
        display_prefix=key.display_prefix,
        status=_KEY_STATUSES[key.status],
        allowed_models=key.allowed_models,
        limits=_limits(key.limits),
        create_time=_timestamp(key.created_at),
    )
    if key.revoked_at is not None:
        message.revoke_time.CopyFrom(_timestamp(key.revoked_at))
    return message
