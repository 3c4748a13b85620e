"""`apirelay channels list|add|update|disable|enable|test`: the router's channel admin RPCs.

Upstream keys go to the router once (add, update --key) and are never printed back:
listings show key ids and their last four characters.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from apirelay.router.v1 import router_pb2
from cli.admin import CALL_TIMEOUT_S

# A test makes one upstream call per key, each with its own timeout.
TEST_TIMEOUT_S = 120.0
SOURCES = {router_pb2.CHANNEL_SOURCE_CONFIG: "config", router_pb2.CHANNEL_SOURCE_ADMIN: "admin",
           router_pb2.CHANNEL_SOURCE_ENVIRONMENT: "environment"}


def add_parsers(sub: Any, handler_of: Any) -> None:
    """Add `channels ...` to the `apirelay` parser; `handler_of` wraps each command."""
    channels = sub.add_parser("channels", help="manage upstream channels").add_subparsers(
        dest="action", required=True)
    channels.add_parser("list", help="list channels (keys shown as ids and hints)") \
        .set_defaults(handler=handler_of(channels_list))
    add = channels.add_parser("add", help="add a channel; it serves at once")
    add.add_argument("name")
    add.add_argument("--type", required=True, help="mock, openai, anthropic, gemini or azure")
    add.add_argument("--base-url", default="", help="the upstream's base URL")
    add.add_argument("--key", action="append", default=[], help="an upstream key (repeatable)")
    add.add_argument("--models", required=True, type=model_list, help="comma-separated ids")
    add.add_argument("--priority", type=int, default=0)
    add.add_argument("--weight", type=int, default=1)
    add.add_argument("--tag", action="append", default=[], help="a label (repeatable)")
    add.set_defaults(handler=handler_of(channels_add))
    update = channels.add_parser("update", help="change a channel; unset options stay")
    update.add_argument("name")
    update.add_argument("--base-url")
    update.add_argument("--models", type=model_list)
    update.add_argument("--priority", type=int)
    update.add_argument("--weight", type=int)
    update.add_argument("--key", action="append", default=[], help="a key to add (repeatable)")
    update.add_argument("--remove-key", action="append", default=[], metavar="KEY_ID",
                        help="a stored key's id to remove (repeatable)")
    update.set_defaults(handler=handler_of(channels_update))
    for action, handler in (("disable", channels_disable), ("enable", channels_enable)):
        parser = channels.add_parser(action, help=f"{action} a channel")
        parser.add_argument("name")
        parser.set_defaults(handler=handler_of(handler))
    test = channels.add_parser("test", help="one tiny call per key of a channel")
    test.add_argument("name")
    test.add_argument("--model", default="", help="default: the channel's first model")
    test.set_defaults(handler=handler_of(channels_test))


def model_list(text: str) -> list[str]:
    """`a,b` as a list of model ids."""
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise argparse.ArgumentTypeError("expected comma-separated model ids")
    return models


def add_request(args: argparse.Namespace) -> router_pb2.CreateChannelRequest:
    """The CreateChannel request of `channels add`."""
    spec = router_pb2.ChannelSpec(
        name=args.name, type=args.type, base_url=args.base_url, models=args.models,
        priority=args.priority, weight=args.weight, enabled=True, tags=args.tag)
    return router_pb2.CreateChannelRequest(channel=spec, keys=args.key)


def update_request(args: argparse.Namespace) -> router_pb2.UpdateChannelRequest:
    """The UpdateChannel request of `channels update`: only what was given changes."""
    request = router_pb2.UpdateChannelRequest(name=args.name, add_keys=args.key,
                                              remove_key_ids=args.remove_key)
    if args.base_url is not None:
        request.base_url = args.base_url
    if args.models is not None:
        request.models.values.extend(args.models)
    if args.priority is not None:
        request.priority = args.priority
    if args.weight is not None:
        request.weight = args.weight
    return request


def channel_lines(info: router_pb2.ChannelInfo) -> list[str]:
    """A channel as one line plus one indented line per key (id and hint only)."""
    spec = info.spec
    state = "enabled" if spec.enabled else "disabled"
    head = (f"{spec.name}\t{spec.type}\t{state}\tpriority={spec.priority} weight={spec.weight}"
            f"\t{SOURCES.get(info.source, '?')}\t{spec.base_url or '-'}\tmodels={','.join(spec.models)}")
    keys = [f"  {k.key_id}\t{k.hint}" + ("\tdisabled" if k.disabled else "") for k in info.keys]
    return [head, *keys]


async def channels_list(router: Any, metadata: Sequence[tuple[str, str]],
                        args: argparse.Namespace) -> list[str]:
    """`channels list`."""
    reply = await router.ListChannels(router_pb2.ListChannelsRequest(), metadata=metadata,
                                      timeout=CALL_TIMEOUT_S)
    return [line for info in reply.channels for line in channel_lines(info)]


async def channels_add(router: Any, metadata: Sequence[tuple[str, str]],
                       args: argparse.Namespace) -> list[str]:
    """`channels add NAME --type T --base-url URL --key K ... --models a,b`."""
    reply = await router.CreateChannel(add_request(args), metadata=metadata,
                                       timeout=CALL_TIMEOUT_S)
    return ["created channel " + args.name, *channel_lines(reply.channel)]


async def channels_update(router: Any, metadata: Sequence[tuple[str, str]],
                          args: argparse.Namespace) -> list[str]:
    """`channels update NAME [...]`."""
    reply = await router.UpdateChannel(update_request(args), metadata=metadata,
                                       timeout=CALL_TIMEOUT_S)
    return ["updated channel " + args.name, *channel_lines(reply.channel)]


async def channels_disable(router: Any, metadata: Sequence[tuple[str, str]],
                           args: argparse.Namespace) -> list[str]:
    """`channels disable NAME`."""
    await router.DisableChannel(router_pb2.DisableChannelRequest(name=args.name),
                                metadata=metadata, timeout=CALL_TIMEOUT_S)
    return [f"disabled channel {args.name}"]


async def channels_enable(router: Any, metadata: Sequence[tuple[str, str]],
                          args: argparse.Namespace) -> list[str]:
    """`channels enable NAME`."""
    await router.EnableChannel(router_pb2.EnableChannelRequest(name=args.name),
                               metadata=metadata, timeout=CALL_TIMEOUT_S)
    return [f"enabled channel {args.name}"]


async def channels_test(router: Any, metadata: Sequence[tuple[str, str]],
                        args: argparse.Namespace) -> list[str]:
    """`channels test NAME [--model M]`: one line per key."""
    reply = await router.TestChannel(
        router_pb2.TestChannelRequest(name=args.name, model=args.model),
        metadata=metadata, timeout=TEST_TIMEOUT_S)
    return [f"{r.key_id}\t{'ok' if r.ok else 'FAILED'}\tstatus={r.http_status}\t"
            f"{r.latency_ms} ms" + (f"\t{r.error}" if r.error else "") for r in reply.results]
