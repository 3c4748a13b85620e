"""USD strings and nano-USD convert exactly, both ways."""

from __future__ import annotations

import pytest

from services.common.money import nanos_to_usd, usd_to_nanos


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("5", 5_000_000_000), ("0.25", 250_000_000), ("0.000000001", 1),
     ("4.999873250", 4_999_873_250), ("$12.5", 12_500_000_000), ("-1.5", -1_500_000_000)],
)
def test_usd_to_nanos(text: str, nanos: int) -> None:
    assert usd_to_nanos(text) == nanos


@pytest.mark.parametrize("text", ["", "abc", "1.0000000001", "1e3", "1,5", "0.1.2"])
def test_usd_to_nanos_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        usd_to_nanos(text)


@pytest.mark.parametrize("nanos", [0, 1, 999_999_999, 4_999_873_250, -1_500_000_000, 10**15 + 7])
def test_round_trip(nanos: int) -> None:
    assert usd_to_nanos(nanos_to_usd(nanos)) == nanos


def test_nanos_to_usd_is_exact() -> None:
    assert nanos_to_usd(4_999_873_250) == "4.999873250"
    assert nanos_to_usd(-1) == "-0.000000001"
