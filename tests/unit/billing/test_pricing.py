"""The cost formula: integers only, one round-half-up, multipliers, cached tokens."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from services.billing.domain import INT64_MAX, Tariff, TokenUsage
from services.billing.errors import AmountOutOfRange, InvalidBillingRequest
from services.billing.pricing import PriceBook, cost_nanos
from services.common.gateway_config import parse_gateway_config


def tariff(prompt: int = 150, completion: int = 600, cached: int = 75, bps: int = 10_000) -> Tariff:
    return Tariff(prompt, completion, cached, bps)


def test_cost_is_tokens_times_prices() -> None:
    assert cost_nanos(tariff(), TokenUsage(1000, 500)) == 1000 * 150 + 500 * 600


def test_cached_tokens_use_the_cached_price() -> None:
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=10, cached_prompt_tokens=400)
    assert cost_nanos(tariff(), usage) == 600 * 150 + 400 * 75 + 10 * 600


@pytest.mark.parametrize(
    ("base_tokens", "bps", "expected"),
    [
        (1, 5_000, 1),  # 0.5 rounds up
        (1, 4_999, 0),  # 0.4999 rounds down
        (3, 8_500, 3),  # 2.55 -> 3
        (1, 15_000, 2),  # 1.5 -> 2
        (5, 3_000, 2),  # 1.5 -> 2
        (7, 10_000, 7),  # exact stays exact
        (0, 25_000, 0),
    ],
)
def test_multiplier_rounds_half_up_once(base_tokens: int, bps: int, expected: int) -> None:
    t = Tariff(prompt_nanos=1, completion_nanos=0, cached_prompt_nanos=1, multiplier_bps=bps)
    assert cost_nanos(t, TokenUsage(base_tokens, 0)) == expected


def test_rounding_is_applied_to_the_sum_not_per_part() -> None:
    # Each part alone would be 0.5 -> 1 (total 2); the sum 1.0 must give 1.
    t = Tariff(prompt_nanos=1, completion_nanos=1, cached_prompt_nanos=1, multiplier_bps=5_000)
    assert cost_nanos(t, TokenUsage(1, 1)) == 1


def test_big_numbers_are_exact() -> None:
    usage = TokenUsage(
        prompt_tokens=10**12, completion_tokens=10**12 + 7, cached_prompt_tokens=3 * 10**11
    )
    t = tariff(prompt=15_000, completion=60_001, cached=7_501, bps=8_333)
    base = 7 * 10**11 * 15_000 + 3 * 10**11 * 7_501 + (10**12 + 7) * 60_001
    expected = (base * 8_333 + 5_000) // 10_000
    assert cost_nanos(t, usage) == expected
    assert isinstance(cost_nanos(t, usage), int)


def test_cost_beyond_int64_is_refused() -> None:
    with pytest.raises(AmountOutOfRange):
        cost_nanos(tariff(prompt=10**9), TokenUsage(10**10, 0))
    limit = Tariff(1, 0, 1, 10_000)
    assert cost_nanos(limit, TokenUsage(INT64_MAX, 0)) == INT64_MAX


@pytest.mark.parametrize(
    "counts",
    [(-1, 0, 0, 0), (0, -1, 0, 0), (10, 0, 11, 0), (0, 5, 0, 6), (0, 0, -1, 0)],
)
def test_invalid_usage_is_rejected(counts: tuple[int, int, int, int]) -> None:
    with pytest.raises(InvalidBillingRequest):
        TokenUsage(*counts)


def test_price_book_from_config() -> None:
    config = parse_gateway_config(
        {
            "models": [
                {"id": "a", "price": {"prompt": 150, "completion": 600}},
                {"id": "b", "price": {"prompt": 100, "completion": 200, "cached_prompt": 0}},
                {"id": "free", "price": {"prompt": 0, "completion": 0}},
                {"id": "unpriced"},
            ],
            "groups": {"default": 12_000, "vip": 8_500},
        }
    )
    book = PriceBook.from_config(config)
    assert book.tariff("a", "vip") == Tariff(150, 600, 150, 8_500)
    assert book.tariff("a", "no-such-group") == Tariff(150, 600, 150, 12_000)
    assert book.tariff("b", "default") == Tariff(100, 200, 0, 12_000)
    assert book.tariff("free", "default") == Tariff(0, 0, 0, 12_000)
    assert book.tariff("unpriced", "default") is None
    assert book.tariff("missing", "default") is None


def test_default_group_is_full_price_when_config_has_no_groups() -> None:
    book = PriceBook.from_config(parse_gateway_config({"models": []}))
    assert book.multiplier_bps("anything") == 10_000


def test_matches_an_exact_rational_oracle() -> None:
    rng = random.Random(20250101)
    total, oracle_total = 0, 0
    for _ in range(20_000):
        prompt = rng.randint(0, 200_000)
        usage = TokenUsage(prompt, rng.randint(0, 100_000), rng.randint(0, prompt))
        t = Tariff(
            rng.randint(0, 100_000),
            rng.randint(0, 100_000),
            rng.randint(0, 100_000),
            rng.randint(0, 30_000),
        )
        exact = Fraction(
            (usage.prompt_tokens - usage.cached_prompt_tokens) * t.prompt_nanos
            + usage.cached_prompt_tokens * t.cached_prompt_nanos
            + usage.completion_tokens * t.completion_nanos
        ) * Fraction(t.multiplier_bps, 10_000)
        oracle = math.floor(exact + Fraction(1, 2))
        assert cost_nanos(t, usage) == oracle
        total += cost_nanos(t, usage)
        oracle_total += oracle
    assert total == oracle_total
