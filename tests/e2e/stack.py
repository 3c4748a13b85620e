"""The whole gateway in one event loop: four real gRPC services and the real edge."""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp.test_utils import TestServer

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from services.common.grpc_server import StartedService

SERVICE_NAMES = ("auth", "ratelimit", "router", "billing")


@dataclass
class Stack:
    """Handles on a running stack, plus admin helpers that use the real RPCs."""

    services: dict[str, StartedService]
    edge: TestServer
    channels: list[grpc.aio.Channel]
    auth: auth_pb2_grpc.AuthServiceStub
    billing: billing_pb2_grpc.BillingServiceStub
    admin_metadata: tuple[tuple[str, str], ...]
    # The environment the edge was started with (for starting another edge on the stack).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the edge."""
        return base_url(self.edge)

    async def account(self, credit_nanos: int = 0, group: str = "") -> str:
        """Create an account with `credit_nanos`; return its id."""
        name = "acct-" + secrets.token_hex(4)
        reply = await self.auth.CreateAccount(
            auth_pb2.CreateAccountRequest(name=name, group=group), metadata=self.admin_metadata)
        if credit_nanos:
            await self.billing.AddCredit(
                billing_pb2.AddCreditRequest(account_id=reply.account.account_id,
                                             amount_nanos=credit_nanos),
                metadata=self.admin_metadata)
        return reply.account.account_id

    async def key(self, account_id: str, **limits: int) -> tuple[str, str]:
        """Issue a key; returns (key_id, secret). `models=` is not supported here."""
        reply = await self.auth.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(account_id=account_id,
                                         limits=auth_pb2.KeyLimits(**limits)),
            metadata=self.admin_metadata)
        return reply.key.key_id, reply.secret

    async def key_for_models(self, account_id: str, models: list[str]) -> str:
        """Issue a key restricted to `models`; returns the secret."""
        reply = await self.auth.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(account_id=account_id, allowed_models=models),
            metadata=self.admin_metadata)
        return reply.secret

    async def wallet(self, account_id: str) -> billing_pb2.Wallet:
        """The account's wallet."""
        reply = await self.billing.GetBalance(
            billing_pb2.GetBalanceRequest(account_id=account_id), metadata=self.admin_metadata)
        return reply.wallet

    async def close(self) -> None:
        """Stop the edge, the channels, then every service."""
        await self.edge.close()
        for channel in self.channels:
            await channel.close()
        for started in self.services.values():
            await started.stop(0)


def base_url(edge: TestServer) -> str:
    """The OpenAI base URL of an edge served on 127.0.0.1."""
    return f"http://127.0.0.1:{edge.port}/v1"


def _settings(package: str, env: Mapping[str, str]) -> Any:
    return importlib.import_module(f"{package}.config").Settings.from_env(env)


async def start_stack(
    home: Path, config: Path, extra_env: Mapping[str, str],
    external: Mapping[str, str] | None = None,
) -> Stack:
    """Start auth, ratelimit, billing, router on free ports, then the edge; return handles.

    `external` maps a service name to the address of an instance the caller runs (a
    subprocess, say); it is not started here. `extra_env` may set APIRELAY_ADMIN_KEY
    (such an instance must share it).
    """
    admin_key = extra_env.get("APIRELAY_ADMIN_KEY") or "ak-" + secrets.token_hex(16)
    env: dict[str, str] = {
        "APIRELAY_HOME": str(home), "APIRELAY_CONFIG": str(config),
        "APIRELAY_ADMIN_KEY": admin_key, **{f"{n.upper()}_LISTEN_ADDR": "127.0.0.1:0"
                                             for n in SERVICE_NAMES},
        **extra_env,
    }
    services: dict[str, StartedService] = {}
    for name in SERVICE_NAMES:
        if external and name in external:
            env[f"{name.upper()}_SERVICE_ADDR"] = external[name]
            continue
        server = importlib.import_module(f"services.{name}.server")
        services[name] = await server.start(_settings(f"services.{name}", env))
        env[f"{name.upper()}_SERVICE_ADDR"] = f"127.0.0.1:{services[name].port}"
    edge_app = importlib.import_module("edge.app")
    edge = TestServer(edge_app.create_app(_settings("edge", env)), host="127.0.0.1")
    await edge.start_server()
    auth_channel = grpc.aio.insecure_channel(env["AUTH_SERVICE_ADDR"])
    billing_channel = grpc.aio.insecure_channel(env["BILLING_SERVICE_ADDR"])
    return Stack(
        services, edge, [auth_channel, billing_channel],
        auth_pb2_grpc.AuthServiceStub(auth_channel),
        billing_pb2_grpc.BillingServiceStub(billing_channel),
        (("authorization", f"Bearer {admin_key}"),),
        env,
    )
