"""The display currency converts nano-USD exactly, rounds half up once, never uses float."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.display import DisplayConfigError, DisplayCurrency, parse_rate


def test_usd_is_the_default_and_shows_nine_decimals() -> None:
    display = DisplayCurrency.from_env({})
    assert display.is_usd
    assert display.format(4_999_986_050) == "4.999986050 USD"
    assert display.with_usd(4_999_986_050) == "4.999986050 USD"
    assert display.format(-1) == "-0.000000001 USD"


def test_cny_at_a_configured_rate_is_exact() -> None:
    display = DisplayCurrency.from_env(
        {"APIRELAY_DISPLAY_CURRENCY": "cny", "APIRELAY_USD_RATE": "7.10"})
    assert (display.code, display.rate_numerator, display.rate_denominator) == ("CNY", 710, 100)
    assert display.format(4_999_986_050) == "35.499900955 CNY"
    assert display.with_usd(4_999_986_050) == "4.999986050 USD (35.499900955 CNY)"
    assert display.format(-4_999_986_050) == "-35.499900955 CNY"
    # Beyond float precision: 9007199254740993 * 7.1 = 63951114708661050.3 exactly.
    assert display.convert(2**53 + 1) == 63_951_114_708_661_050


@pytest.mark.parametrize(("rate", "nanos", "converted"), [
    ("0.5", 1, 1), ("0.5", 3, 2), ("0.5", -1, -1), ("0.5", -3, -2),  # halves go up (away from 0)
    ("0.25", 1, 0), ("0.25", 3, 1), ("0.25", -3, -1), ("0.25", 2, 1),
    ("1", 123, 123), ("0.000000001", 499_999_999, 0), ("0.000000001", 500_000_000, 1),
])
def test_conversion_rounds_half_up_once(rate: str, nanos: int, converted: int) -> None:
    assert DisplayCurrency.parse("EUR", rate).convert(nanos) == converted


@given(nanos=st.integers(-(2**63), 2**63 - 1),
       whole=st.integers(0, 10_000), frac=st.text("0123456789", min_size=0, max_size=12))
def test_conversion_matches_exact_rational_arithmetic(nanos: int, whole: int, frac: str) -> None:
    rate = f"{whole}.{frac}" if frac else str(whole)
    exact = Fraction(int(f"{whole}{frac}"), 10 ** len(frac))
    if exact == 0:
        return
    product = abs(nanos) * exact
    rounded = int(product) + (1 if product - int(product) >= Fraction(1, 2) else 0)
    expected = -rounded if nanos < 0 else rounded
    assert DisplayCurrency.parse("CNY", rate).convert(nanos) == expected


@pytest.mark.parametrize(("code", "rate"), [
    ("CNY", ""), ("CN", "7"), ("C1Y", "7"), ("CNY", "0"), ("CNY", "0.000"), ("CNY", "-7"),
    ("CNY", "7,1"), ("CNY", "1e3"), ("CNY", "abc"), ("CNY", ".5"), ("USD", "7.1"),
])
def test_bad_configurations_are_refused(code: str, rate: str) -> None:
    with pytest.raises(DisplayConfigError):
        DisplayCurrency.from_env({"APIRELAY_DISPLAY_CURRENCY": code, "APIRELAY_USD_RATE": rate})


def test_usd_may_state_its_rate_of_one() -> None:
    display = DisplayCurrency.parse("usd", "1.00")
    assert display.is_usd and display.format(5) == "0.000000005 USD"


def test_rates_parse_into_integer_fractions() -> None:
    assert parse_rate("7.10") == (710, 100)
    assert parse_rate("7") == (7, 1)
    assert parse_rate(" 0.000000001 ") == (1, 10**9)
