"""Admin commands: talk to the running services with the admin key."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from apirelay.router.v1 import router_pb2_grpc
from cli.addresses import Addresses
from cli.home import Home
from services.common.display import DisplayConfigError, DisplayCurrency
from services.common.grpc_client import open_channel
from services.common.money import nanos_to_usd, usd_to_nanos

CALL_TIMEOUT_S = 10.0


class CommandError(Exception):
    """A failure to report to the operator as one line, after any `output` lines."""

    def __init__(self, message: str, output: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.output = list(output)


@dataclass(slots=True)
class AdminClient:
    """Stubs of auth, billing and router plus the admin credentials for every call."""

    # grpc.aio stubs: mypy-protobuf types them as sync stubs, hence Any.
    auth: Any
    billing: Any
    metadata: tuple[tuple[str, str], ...]
    router: Any = None
    display: DisplayCurrency = field(default_factory=DisplayCurrency)

    async def account(self, name: str) -> auth_pb2.Account:
        """The account called `name`."""
        reply = await self.auth.GetAccount(
            auth_pb2.GetAccountRequest(name=name), metadata=self.metadata, timeout=CALL_TIMEOUT_S
        )
        account: auth_pb2.Account = reply.account
        return account

    async def add_credit(self, account_id: str, usd: str, note: str) -> billing_pb2.Wallet:
        """Top up `account_id` by `usd` (a decimal string)."""
        amount = parse_usd(usd)
        if amount <= 0:
            raise CommandError("the amount must be positive")
        reply = await self.billing.AddCredit(
            billing_pb2.AddCreditRequest(account_id=account_id, amount_nanos=amount, note=note),
            metadata=self.metadata, timeout=CALL_TIMEOUT_S,
        )
        wallet: billing_pb2.Wallet = reply.wallet
        return wallet


def parse_usd(text: str) -> int:
    """An exact USD decimal string ("4.99", "-0.000000001") in nano-USD, or CommandError."""
    try:
        return usd_to_nanos(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


# How auth's KeyLimits spell "not set" and "no limit".
DEFAULT_LIMIT = 0
NO_LIMIT = -1


def key_limit(text: str) -> int:
    """A `--rpm`-style value: a positive limit, or 0 / 'unlimited' for no limit (-1)."""
    if text.strip().lower() in ("unlimited", "none"):
        return NO_LIMIT
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'unlimited', got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"a limit must not be negative, got {value}")
    # 0 meant "no limit" before keys had defaults; it still does on the command line.
    return value or NO_LIMIT


def _limits(args: argparse.Namespace) -> auth_pb2.KeyLimits:
    return auth_pb2.KeyLimits(rpm=args.rpm, tpm=args.tpm, concurrency=args.concurrency,
                              rpd=args.rpd)


def _limit_text(value: int) -> str:
    return "default" if value == DEFAULT_LIMIT else "unlimited" if value < 0 else str(value)


def wallet_line(name: str, wallet: billing_pb2.Wallet, display: DisplayCurrency) -> str:
    """A wallet as one line: the balance exactly (and in the display currency), held, available."""
    limit = wallet.credit_limit_nanos
    return (f"{name}: balance {display.with_usd(wallet.balance_nanos)} "
            f"(held {nanos_to_usd(wallet.held_nanos)}, "
            f"available {nanos_to_usd(wallet.available_nanos)}"
            + (f", credit limit {nanos_to_usd(limit)}" if limit else "") + ")")


async def accounts_create(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`accounts create NAME [--credit USD] [--group G]`."""
    reply = await client.auth.CreateAccount(
        auth_pb2.CreateAccountRequest(name=args.name, group=args.group),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S,
    )
    lines = [f"created account {reply.account.name} ({reply.account.account_id})"]
    if args.credit is not None:
        wallet = await client.add_credit(reply.account.account_id, args.credit, "initial credit")
        lines.append(wallet_line(reply.account.name, wallet, client.display))
    return lines


async def accounts_list(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`accounts list`."""
    reply = await client.auth.ListAccounts(
        auth_pb2.ListAccountsRequest(), metadata=client.metadata, timeout=CALL_TIMEOUT_S
    )
    return [f"{a.account_id}\t{a.name}\t{a.group}\t{auth_pb2.AccountStatus.Name(a.status)}"
            for a in reply.accounts]


async def keys_create(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`keys create --account NAME ...`; the secret is alone on the last line."""
    account = await client.account(args.account)
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    reply = await client.auth.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(account_id=account.account_id, name=args.name,
                                     allowed_models=models, limits=_limits(args)),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S,
    )
    notice = (f"created key {reply.key.key_id} for {account.name} "
              "(the secret below is shown once; store it now)")
    return [notice, reply.secret]


async def keys_list(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`keys list --account NAME`."""
    account = await client.account(args.account)
    reply = await client.auth.ListApiKeys(
        auth_pb2.ListApiKeysRequest(account_id=account.account_id),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S,
    )
    return [f"{k.key_id}\t{k.display_prefix}...\t{auth_pb2.KeyStatus.Name(k.status)}\t"
            f"rpm={_limit_text(k.limits.rpm)} tpm={_limit_text(k.limits.tpm)} "
            f"concurrency={_limit_text(k.limits.concurrency)} rpd={_limit_text(k.limits.rpd)}\t"
            f"models={','.join(k.allowed_models) or '*'}" for k in reply.keys]


async def keys_revoke(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`keys revoke KEY_ID`."""
    reply = await client.auth.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(key_id=args.key_id),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S,
    )
    return [f"revoked key {reply.key.key_id}"]


async def topup(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`topup NAME USD`."""
    account = await client.account(args.name)
    wallet = await client.add_credit(account.account_id, args.usd, "top-up")
    return [wallet_line(account.name, wallet, client.display)]


async def balance(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`balance NAME`: the exact balance in USD."""
    account = await client.account(args.name)
    reply = await client.billing.GetBalance(
        billing_pb2.GetBalanceRequest(account_id=account.account_id),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S,
    )
    return [wallet_line(account.name, reply.wallet, client.display)]


async def run_admin(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Open channels, run the chosen command, close channels."""
    admin_key = Home.from_env(environ).read_admin_key(environ)
    if not admin_key:
        raise CommandError("no admin key: set APIRELAY_ADMIN_KEY or run `apirelay up` first")
    try:
        display = DisplayCurrency.from_env(environ)
    except DisplayConfigError as exc:
        raise CommandError(str(exc)) from exc
    addresses = Addresses.from_env(environ)
    auth_channel = open_channel(addresses.dial("auth", environ))
    billing_channel = open_channel(addresses.dial("billing", environ))
    router_channel = open_channel(addresses.dial("router", environ))
    client = AdminClient(
        auth_pb2_grpc.AuthServiceStub(auth_channel),
        billing_pb2_grpc.BillingServiceStub(billing_channel),
        (("authorization", f"Bearer {admin_key}"),),
        router_pb2_grpc.RouterServiceStub(router_channel),
        display,
    )
    try:
        return list(await args.handler(client, args))
    except grpc.aio.AioRpcError as exc:
        raise CommandError(_explain(exc)) from exc
    finally:
        await auth_channel.close()
        await billing_channel.close()
        await router_channel.close()


RouterCommand = Callable[[Any, Sequence[tuple[str, str]], argparse.Namespace],
                         Awaitable[list[str]]]


def router_command(command: RouterCommand) -> Callable[[AdminClient, argparse.Namespace],
                                                       Awaitable[list[str]]]:
    """An admin handler running `command` against the router stub."""
    async def handler(client: AdminClient, args: argparse.Namespace) -> list[str]:
        return await command(client.router, client.metadata, args)

    return handler


def _explain(exc: grpc.aio.AioRpcError) -> str:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return "cannot reach the services: is `apirelay up` running?"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return "the admin key was refused (APIRELAY_ADMIN_KEY or $APIRELAY_HOME/admin_key)"
    return f"{code.name.lower()}: {exc.details()}"
