"""The `apirelay` command: `up` runs the gateway; the rest administer it."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cli import admin, billing, channels, usage
from cli.up import main_up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apirelay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start every service and the edge (embedded mode)")

    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True)
    create = accounts.add_parser("create", help="create an account")
    create.add_argument("name")
    create.add_argument("--credit", metavar="USD", help="initial credit, e.g. 5 or 0.25")
    create.add_argument("--group", default="", help="pricing group (default: default)")
    create.set_defaults(handler=admin.accounts_create)
    accounts.add_parser("list", help="list accounts").set_defaults(handler=admin.accounts_list)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action",
                                                                          required=True)
    kcreate = keys.add_parser("create", help="issue a key; prints the secret on the last line")
    kcreate.add_argument("--account", required=True)
    kcreate.add_argument("--name", default="", help="a label for the key")
    # Omitted: the account group's or configured default (apirelay.yaml `limits:`).
    for flag, what in (("rpm", "requests per minute"), ("tpm", "tokens per minute"),
                       ("concurrency", "requests in flight"), ("rpd", "requests per day")):
        kcreate.add_argument(f"--{flag}", type=admin.key_limit, default=admin.DEFAULT_LIMIT,
                             metavar="N", help=f"{what} (0 or 'unlimited' = no limit; "
                             "omitted = the configured default)")
    kcreate.add_argument("--models", help="comma-separated models the key may use (default all)")
    kcreate.set_defaults(handler=admin.keys_create)
    klist = keys.add_parser("list", help="list an account's keys")
    klist.add_argument("--account", required=True)
    klist.set_defaults(handler=admin.keys_list)
    krevoke = keys.add_parser("revoke", help="revoke a key")
    krevoke.add_argument("key_id")
    krevoke.set_defaults(handler=admin.keys_revoke)
    billing.add_key_budget_parser(keys)

    top = sub.add_parser("topup", help="add credit to an account")
    top.add_argument("name")
    top.add_argument("usd", metavar="USD")
    top.set_defaults(handler=admin.topup)
    bal = sub.add_parser("balance", help="show an account's balance (USD and display currency)")
    bal.add_argument("name")
    bal.set_defaults(handler=admin.balance)
    channels.add_parsers(sub, admin.router_command)
    billing.add_parsers(sub)
    usage.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "up":
        return main_up()
    try:
        for line in asyncio.run(admin.run_admin(args)):
            print(line)
    except admin.CommandError as exc:
        for line in exc.output:
            print(line)
        print(f"apirelay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
