"""Prompt-cache affinity: what identifies a prompt, and the book's TTL, LRU and outcomes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.common.affinity_config import AffinityConfig, parse_affinity
from services.common.gateway_config import ChannelEntry, parse_gateway_config
from services.common.gateway_models import ConfigError
from services.router.affinity import AffinityBook
from services.router.balancer import Target
from services.router.relay_request import Operation, parse_relay_request
from services.router.request import ChatRequest, parse_chat_request
from tests.unit.router.fakes import FakeProvider

SYSTEM = {"role": "system", "content": "You are a careful assistant. " * 20}


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _chat(*messages: dict[str, Any], **extra: Any) -> ChatRequest:
    body = orjson.dumps({"model": "demo", "messages": list(messages), **extra})
    return parse_chat_request(body, "demo", "req_t", stream=False)


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _target(channel: str, key_id: str = "none") -> Target:
    return Target(ChannelEntry(name=channel, type="fake", models=("demo",)), key_id,
                  FakeProvider())


def _relay(operation: Operation, **body: Any) -> Any:
    return parse_relay_request(operation, orjson.dumps({"model": "demo", **body}),
                               "application/json", "demo", "req_t", stream=False)


def test_later_turns_keep_the_key_and_other_prompts_do_not_share_it() -> None:
    book = AffinityBook()
    first = book.chat_key("acct_a", _chat(SYSTEM, _user("Summarise the report.")))
    later = book.chat_key("acct_a", _chat(SYSTEM, _user("Summarise the report."),
                                          {"role": "assistant", "content": "Done."},
                                          _user("Shorter, please.")))
    other_question = book.chat_key("acct_a", _chat(SYSTEM, _user("Translate it.")))
    other_system = book.chat_key("acct_a", _chat({"role": "system", "content": "Be brief."},
                                                 _user("Summarise the report.")))
    assert first is not None and first == later
    assert len({first, other_question, other_system}) == 3


def test_accounts_and_models_never_share_a_key() -> None:
    book = AffinityBook()
    chat = _chat(SYSTEM, _user("hi"))
    other_model = parse_chat_request(
        orjson.dumps({"model": "demo-2", "messages": [SYSTEM, _user("hi")]}), "demo-2", "r",
        stream=False)
    keys = {book.chat_key("acct_a", chat), book.chat_key("acct_b", chat),
            book.chat_key("acct_a", other_model)}
    assert len(keys) == 3 and None not in keys


def test_no_account_or_disabled_means_no_affinity() -> None:
    chat = _chat(SYSTEM, _user("hi"))
    assert AffinityBook().chat_key("", chat) is None
    assert AffinityBook(AffinityConfig(enabled=False)).chat_key("acct_a", chat) is None


def test_prompt_cache_key_then_user_name_the_prompt() -> None:
    book = AffinityBook()
    a = book.chat_key("acct_a", _chat(_user("one"), prompt_cache_key="proj-1"))
    b = book.chat_key("acct_a", _chat(_user("two"), prompt_cache_key="proj-1", user="u9"))
    c = book.chat_key("acct_a", _chat(_user("three"), user="u9"))
    d = book.chat_key("acct_a", _chat(_user("four"), user="u9"))
    assert a is not None and a == b and c == d and a != c
    assert book.chat_key("acct_b", _chat(_user("one"), prompt_cache_key="proj-1")) != a


def test_only_the_first_prefix_chars_count() -> None:
    book = AffinityBook(AffinityConfig(prefix_chars=64))
    base = "x" * 100
    assert book.chat_key("a", _chat(_user(base + "tail one"))) == \
        book.chat_key("a", _chat(_user(base + "tail two")))
    assert AffinityBook().chat_key("a", _chat(_user(base + "tail one"))) != \
        AffinityBook().chat_key("a", _chat(_user(base + "tail two")))


def test_relayed_prompts_have_keys_other_operations_none() -> None:
    book = AffinityBook()
    turn1 = _relay(Operation.RESPONSES, instructions="Be terse.", input=[_user("q1")])
    turn2 = _relay(Operation.RESPONSES, instructions="Be terse.",
                   input=[_user("q1"), {"role": "assistant", "content": "a1"}, _user("q2")])
    completions = _relay(Operation.COMPLETIONS, prompt="Once upon a time")
    tokens = _relay(Operation.COMPLETIONS, prompt=[1, 2, 3])
    tokens_other = _relay(Operation.COMPLETIONS, prompt=[1, 2, 4])
    assert book.relay_key("a", turn1) is not None
    assert book.relay_key("a", turn1) == book.relay_key("a", turn2)
    assert book.relay_key("a", completions) is not None
    assert book.relay_key("a", tokens) != book.relay_key("a", tokens_other)
    assert book.relay_key("a", _relay(Operation.EMBEDDINGS, input="hello")) is None


def test_a_remembered_target_expires_after_its_ttl_since_it_last_served() -> None:
    clock = Clock()
    book = AffinityBook(AffinityConfig(ttl_s=300), clock)
    targets = [_target("c0"), _target("c1")]
    book.remember("k", targets[1])
    clock.now += 299
    assert book.choose("k", targets, lambda t: True) is targets[1]
    book.remember("k", targets[1])  # it served again: the TTL starts over
    clock.now += 299
    assert book.choose("k", targets, lambda t: True) is targets[1]
    clock.now += 1
    assert book.choose("k", targets, lambda t: True) is None
    assert (book.stats.hit, book.stats.miss, book.stats.unavailable) == (2, 1, 0)
    assert len(book) == 0


def test_an_unavailable_or_removed_target_is_not_chosen() -> None:
    book = AffinityBook()
    c0, c1 = _target("c0", "k1"), _target("c0", "k2")
    book.remember("k", c0)
    assert book.choose("k", [c0, c1], lambda t: t is not c0) is None
    assert book.choose("k", [c1], lambda t: True) is None
    assert book.choose("k", [c0, c1], lambda t: True) is c0
    assert (book.stats.hit, book.stats.unavailable) == (1, 2)
    assert book.stats.hit_rate == pytest.approx(1 / 3)


def test_the_book_is_bounded_least_recently_used_first() -> None:
    book = AffinityBook(AffinityConfig(max_entries=2))
    c0 = _target("c0")
    book.remember("a", c0)
    book.remember("b", c0)
    assert book.choose("a", [c0], lambda t: True) is c0  # "a" is now the most recent
    book.remember("c", c0)
    assert len(book) == 2
    assert book.choose("b", [c0], lambda t: True) is None
    assert book.choose("a", [c0], lambda t: True) is c0


def test_config_section() -> None:
    config = parse_gateway_config(
        {"affinity": {"ttl_s": 60, "prefix_chars": 512, "enabled": False, "max_entries": 9}})
    assert config.affinity == AffinityConfig(False, 60.0, 512, 9)
    assert parse_gateway_config({}).affinity == AffinityConfig()
    for bad in ({"ttl_s": 0}, {"prefix_chars": 0}, {"enabled": "yes"}, {"ttl": 5}, [1]):
        with pytest.raises(ConfigError, match="affinity"):
            parse_affinity(bad, "apirelay.yaml: affinity")
