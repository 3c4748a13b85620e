"""`apirelay channels ...` parsing and the requests it sends."""

from __future__ import annotations

import pytest

from apirelay.router.v1 import router_pb2
from cli.channels import add_request, channel_lines, update_request
from cli.main import _parser


def test_add_takes_the_form_scripts_use() -> None:
    args = _parser().parse_args([
        "channels", "add", "deep", "--type", "openai", "--base-url", "https://api.x.com/v1",
        "--key", "sk-1", "--key", "sk-2", "--models", "a, b", "--priority", "2", "--weight", "5"])
    request = add_request(args)
    assert request.keys == ["sk-1", "sk-2"]
    spec = request.channel
    assert (spec.name, spec.type, spec.base_url) == ("deep", "openai", "https://api.x.com/v1")
    assert (list(spec.models), spec.priority, spec.weight, spec.enabled) == (["a", "b"], 2, 5, True)


def test_update_sends_only_what_was_given() -> None:
    args = _parser().parse_args(["channels", "update", "deep", "--weight", "4",
                                 "--key", "sk-3", "--remove-key", "key_abc"])
    request = update_request(args)
    assert request.HasField("weight") and request.weight == 4
    assert not request.HasField("base_url") and not request.HasField("models")
    assert not request.HasField("priority")
    assert (list(request.add_keys), list(request.remove_key_ids)) == (["sk-3"], ["key_abc"])


@pytest.mark.parametrize("argv", [
    ["channels", "add", "x", "--type", "openai", "--models", ","],
    ["channels", "add", "x", "--models", "a"],
    ["channels", "remove", "x"],
])
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)


@pytest.mark.parametrize("action", ["list", "disable x", "enable x", "test x"])
def test_every_action_has_a_handler(action: str) -> None:
    args = _parser().parse_args(["channels", *action.split()])
    assert callable(args.handler)


def test_listing_shows_hints_never_more() -> None:
    info = router_pb2.ChannelInfo(
        spec=router_pb2.ChannelSpec(name="deep", type="openai", models=["a"], enabled=False),
        source=router_pb2.CHANNEL_SOURCE_ADMIN,
        keys=[router_pb2.UpstreamKeyInfo(key_id="key_1", hint="...abcd", disabled=True)])
    head, key = channel_lines(info)
    assert head.startswith("deep\topenai\tdisabled") and "\tadmin\t" in head
    assert key == "  key_1\t...abcd\tdisabled"
