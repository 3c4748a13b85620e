"""The token estimate is deterministic, monotone and errs high."""

from __future__ import annotations

from services.common.tokens import estimate_tokens


def test_empty_is_zero() -> None:
    assert estimate_tokens("") == 0


def test_short_words_count_at_least_one_each() -> None:
    assert estimate_tokens("a b c d e f") == 6


def test_long_text_is_about_a_quarter_of_bytes() -> None:
    text = "internationalization " * 10
    assert estimate_tokens(text) == (len(text) + 3) // 4


def test_multibyte_text_counts_bytes() -> None:
    assert estimate_tokens("你好世界") == 3


def test_monotone_when_text_grows() -> None:
    assert estimate_tokens("hello world, again") > estimate_tokens("hello world")
