"""The charge: integers only, one round-half-up, multipliers, cached tokens, cache writes,
reasoning tokens, per-request prices, units."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from fractions import Fraction

import pytest

from services.billing.domain import Usage, unit_quantities
from services.billing.errors import AmountOutOfRange, InvalidBillingRequest, UnpricedUsage
from services.billing.pricing import PriceBook, charge_nanos, covers
from services.common.charges import INT64_MAX, Tariff
from services.common.gateway_config import ModelPrice, parse_gateway_config


def make_tariff(
    prompt: int, completion: int, cached: int, bps: int, units: Mapping[str, int] | None = None,
    *, cache_write: int | None = None, reasoning: int | None = None, request: int = 0,
) -> Tariff:
    """A tariff; cache writes and reasoning at the prompt and completion prices unless given."""
    return Tariff(prompt, completion, cached, bps, units or {},
                  cache_write_nanos=prompt if cache_write is None else cache_write,
                  reasoning_nanos=completion if reasoning is None else reasoning,
                  request_nanos=request)


def tariff(prompt: int = 150, completion: int = 600, cached: int = 75, bps: int = 10_000) -> Tariff:
    return make_tariff(prompt, completion, cached, bps)


def test_cost_is_tokens_times_prices() -> None:
    assert charge_nanos(tariff(), Usage(1000, 500)) == 1000 * 150 + 500 * 600


def test_cached_tokens_use_the_cached_price() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=10, cached_prompt_tokens=400)
    assert charge_nanos(tariff(), usage) == 600 * 150 + 400 * 75 + 10 * 600


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
    t = make_tariff(1, 0, 1, bps)
    assert charge_nanos(t, Usage(base_tokens, 0)) == expected


def test_rounding_is_applied_to_the_sum_not_per_part() -> None:
    # Each part alone would be 0.5 -> 1 (total 2); the sum 1.0 must give 1.
    t = make_tariff(1, 1, 1, 5_000)
    assert charge_nanos(t, Usage(1, 1)) == 1


def test_big_numbers_are_exact() -> None:
    usage = Usage(
        prompt_tokens=10**12, completion_tokens=10**12 + 7, cached_prompt_tokens=3 * 10**11
    )
    t = tariff(prompt=15_000, completion=60_001, cached=7_501, bps=8_333)
    base = 7 * 10**11 * 15_000 + 3 * 10**11 * 7_501 + (10**12 + 7) * 60_001
    expected = (base * 8_333 + 5_000) // 10_000
    assert charge_nanos(t, usage) == expected
    assert isinstance(charge_nanos(t, usage), int)


def test_cost_beyond_int64_is_refused() -> None:
    with pytest.raises(AmountOutOfRange):
        charge_nanos(tariff(prompt=10**9), Usage(10**10, 0))
    limit = make_tariff(1, 0, 1, 10_000)
    assert charge_nanos(limit, Usage(INT64_MAX, 0)) == INT64_MAX


@pytest.mark.parametrize(
    "counts",
    [(-1, 0, 0, 0), (0, -1, 0, 0), (10, 0, 11, 0), (0, 5, 0, 6), (0, 0, -1, 0)],
)
def test_invalid_usage_is_rejected(counts: tuple[int, int, int, int]) -> None:
    with pytest.raises(InvalidBillingRequest):
        Usage(*counts)


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
    assert book.tariff("a", "vip") == make_tariff(150, 600, 150, 8_500)
    assert book.tariff("a", "no-such-group") == make_tariff(150, 600, 150, 12_000)
    assert book.tariff("b", "default") == make_tariff(100, 200, 0, 12_000)
    assert book.tariff("free", "default") == make_tariff(0, 0, 0, 12_000)
    assert book.tariff("unpriced", "default") is None
    assert book.tariff("missing", "default") is None


def test_price_book_tariff_carries_unit_prices() -> None:
    config = parse_gateway_config(
        {
            "models": [
                {"id": "img", "price": {"images": {"1024x1024": {"standard": 40, "hd": 80}}}},
                {"id": "mixed", "price": {"prompt": 3, "completion": 5, "character": 7}},
            ],
            "groups": {"vip": 8_500},
        }
    )
    book = PriceBook.from_config(config)
    img = book.tariff("img", "vip")
    assert img == make_tariff(
        0, 0, 0, 8_500, {"image/1024x1024/hd": 80, "image/1024x1024/standard": 40})
    assert book.tariff("mixed", "default") == make_tariff(3, 5, 3, 10_000, {"character": 7})


UNITS = {"image/1024x1024/hd": 80_000_000, "audio_second": 100_000, "character": 15_000}


def unit_usage(images: int = -1, seconds: int = -1, chars: int = -1) -> Usage:
    """A usage of only the given units (-1 = not listed)."""
    listed = [("image/1024x1024/hd", images), ("audio_second", seconds), ("character", chars)]
    return Usage(0, 0, units=unit_quantities((u, q) for u, q in listed if q >= 0))


def test_units_cost_quantity_times_price() -> None:
    t = make_tariff(150, 600, 75, 10_000, UNITS)
    assert charge_nanos(t, unit_usage(images=3)) == 3 * 80_000_000
    assert charge_nanos(t, unit_usage(seconds=61)) == 61 * 100_000
    assert charge_nanos(t, unit_usage(chars=1_234)) == 1_234 * 15_000
    both = Usage(10, 2, units=unit_quantities([("character", 5)]))
    assert charge_nanos(t, both) == 10 * 150 + 2 * 600 + 5 * 15_000


def test_multiplier_applies_to_units_with_one_rounding() -> None:
    # 1 character at 3 and 1 second at 3: each alone at 0.5 would round to 2 (sum 4);
    # the sum 6 * 0.5 = 3 is rounded once.
    t = make_tariff(0, 0, 0, 5_000, {"character": 3, "audio_second": 3})
    usage = Usage(0, 0, units=unit_quantities([("character", 1), ("audio_second", 1)]))
    assert charge_nanos(t, usage) == 3
    # 1 prompt token at 1 plus 1 character at 2, times 0.5: 1.5 -> 2 (half up, once).
    t = make_tariff(1, 0, 1, 5_000, {"character": 2})
    assert charge_nanos(t, Usage(1, 0, units=unit_quantities([("character", 1)]))) == 2
    t = make_tariff(0, 0, 0, 8_500, UNITS)
    assert charge_nanos(t, unit_usage(chars=1)) == 12_750
    assert charge_nanos(make_tariff(0, 0, 0, 8_333, {"character": 7}), unit_usage(chars=1)) == 6


def test_an_unpriced_unit_is_refused_and_zero_quantities_are_ignored() -> None:
    t = make_tariff(150, 600, 75, 10_000, {"character": 15_000})
    with pytest.raises(UnpricedUsage, match="audio_second"):
        charge_nanos(t, unit_usage(seconds=1))
    assert charge_nanos(t, unit_usage(seconds=0, chars=2)) == 30_000
    with pytest.raises(AmountOutOfRange):
        charge_nanos(make_tariff(0, 0, 0, 10_000, {"character": 10**18}), unit_usage(chars=10))


@pytest.mark.parametrize(
    "pairs",
    [[("", 1)], [("character", -1)], [("character", 1), ("character", 2)]],
)
def test_malformed_units_are_rejected(pairs: list[tuple[str, int]]) -> None:
    with pytest.raises(InvalidBillingRequest):
        unit_quantities(pairs)


def test_covers_requires_token_prices_for_tokens_and_a_price_for_each_unit() -> None:
    units_only = ModelPrice(units={"character": 1})
    assert covers(units_only, unit_usage(chars=5))
    assert not covers(units_only, Usage(1, 0))
    assert not covers(units_only, Usage(0, 1, units=unit_quantities([("character", 5)])))
    assert not covers(units_only, unit_usage(seconds=1))
    assert covers(units_only, unit_usage(seconds=0, chars=1))
    tokens_only = ModelPrice(prompt=0, completion=0)
    assert covers(tokens_only, Usage(100, 100))
    assert not covers(tokens_only, unit_usage(images=1))


def test_default_group_is_full_price_when_config_has_no_groups() -> None:
    book = PriceBook.from_config(parse_gateway_config({"models": []}))
    assert book.multiplier_bps("anything") == 10_000


def test_matches_an_exact_rational_oracle() -> None:
    rng = random.Random(20250101)
    total, oracle_total = 0, 0
    for _ in range(20_000):
        prompt, completion = rng.randint(0, 200_000), rng.randint(0, 100_000)
        cached = rng.randint(0, prompt)
        usage = Usage(prompt, completion, cached, rng.randint(0, completion),
                      cache_write_prompt_tokens=rng.randint(0, prompt - cached))
        t = make_tariff(rng.randint(0, 100_000), rng.randint(0, 100_000),
                        rng.randint(0, 100_000), rng.randint(0, 30_000),
                        cache_write=rng.randint(0, 100_000), reasoning=rng.randint(0, 100_000),
                        request=rng.choice([0, rng.randint(0, 10**9)]))
        plain = usage.prompt_tokens - usage.cached_prompt_tokens - usage.cache_write_prompt_tokens
        exact = Fraction(
            plain * t.prompt_nanos
            + usage.cached_prompt_tokens * t.cached_prompt_nanos
            + usage.cache_write_prompt_tokens * t.cache_write_nanos
            + (usage.completion_tokens - usage.reasoning_tokens) * t.completion_nanos
            + usage.reasoning_tokens * t.reasoning_nanos
            + t.request_nanos
        ) * Fraction(t.multiplier_bps, 10_000)
        oracle = math.floor(exact + Fraction(1, 2))
        assert charge_nanos(t, usage) == oracle
        total += charge_nanos(t, usage)
        oracle_total += oracle
    assert total == oracle_total


def test_cache_writes_and_reasoning_use_their_own_prices() -> None:
    t = make_tariff(3_000, 15_000, 300, 10_000, cache_write=3_750, reasoning=20_000)
    usage = Usage(prompt_tokens=10_000, completion_tokens=500, cached_prompt_tokens=6_000,
                  reasoning_tokens=200, cache_write_prompt_tokens=3_000)
    expected = 1_000 * 3_000 + 6_000 * 300 + 3_000 * 3_750 + 300 * 15_000 + 200 * 20_000
    assert charge_nanos(t, usage) == expected == 24_550_000


def test_the_request_price_is_charged_once_and_multiplied_with_the_rest() -> None:
    t = make_tariff(1, 1, 1, 8_500, request=1_001)
    # (2 + 1001) * 0.85 = 852.55 -> 853: one rounding over tokens and the request price.
    assert charge_nanos(t, Usage(1, 1)) == 853
    assert charge_nanos(t, Usage(0, 0)) == (1_001 * 8_500 + 5_000) // 10_000 == 851


def test_a_0_85_group_is_8500_basis_points_rounded_half_up_once() -> None:
    config = parse_gateway_config({
        "models": [{"id": "m", "price": {"prompt": 3, "completion": 7, "request": 5}}],
        "groups": {"reseller": 8_500},
    })
    book = PriceBook.from_config(config)
    reseller, full = book.tariff("m", "reseller"), book.tariff("m", "default")
    assert reseller is not None and full is not None
    assert reseller.multiplier_bps == 8_500 and full.multiplier_bps == 10_000
    # 3 + 7 + 5 = 15 at 0.85 = 12.75 -> 13; at 1.0 exactly 15.
    assert charge_nanos(reseller, Usage(1, 1)) == 13
    assert charge_nanos(full, Usage(1, 1)) == 15
