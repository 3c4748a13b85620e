"""The display currency: nano-USD amounts shown in USD, or converted at a configured rate.

Billing keeps every amount in nano-USD; only what people read may be converted. The
rate is "display units per USD" (for example 7.10 CNY per USD), parsed into an integer
fraction so a conversion is one exact multiplication and one rounding: the result is
rounded half up (half away from zero for negative amounts, so -x shows as minus the
display of x) to 9 decimals of the display currency.

    APIRELAY_DISPLAY_CURRENCY   a 3-letter code, USD by default (CNY, EUR, ...)
    APIRELAY_USD_RATE           display units per USD, a decimal string; required unless
                                the currency is USD
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.money import nanos_to_usd

CURRENCY_ENV = "APIRELAY_DISPLAY_CURRENCY"
RATE_ENV = "APIRELAY_USD_RATE"
USD = "USD"
_CODE = re.compile(r"^[A-Z]{3}$")
_RATE = re.compile(r"^(\d+)(?:\.(\d+))?$")


class DisplayConfigError(ValueError):
    """The display currency or its rate is not usable."""


@dataclass(frozen=True, slots=True)
class DisplayCurrency:
    """How amounts are shown: a currency code and its rate per USD as an integer fraction."""

    code: str = USD
    # Display units per USD = rate_numerator / rate_denominator (both positive).
    rate_numerator: int = 1
    rate_denominator: int = 1

    def __post_init__(self) -> None:
        if not _CODE.match(self.code):
            raise DisplayConfigError(f"a currency is a 3-letter code, got {self.code!r}")
        if self.rate_numerator <= 0 or self.rate_denominator <= 0:
            raise DisplayConfigError("the USD rate must be positive")
        if self.code == USD and self.rate_numerator != self.rate_denominator:
            raise DisplayConfigError("USD is shown at rate 1; unset APIRELAY_USD_RATE")

    @classmethod
    def parse(cls, code: str, rate: str = "") -> DisplayCurrency:
        """`code` (any case) at `rate` display units per USD; the rate may be empty for USD."""
        code = code.strip().upper() or USD
        rate = rate.strip()
        if not rate:
            if code != USD:
                raise DisplayConfigError(f"{RATE_ENV} is required to display {code}")
            return cls(code)
        numerator, denominator = parse_rate(rate)
        return cls(code, numerator, denominator)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DisplayCurrency:
        """Read `APIRELAY_DISPLAY_CURRENCY` and `APIRELAY_USD_RATE`."""
        return cls.parse(environ.get(CURRENCY_ENV, ""), environ.get(RATE_ENV, ""))

    @property
    def is_usd(self) -> bool:
        """Whether amounts are shown in USD as they are stored."""
        return self.code == USD

    def convert(self, nanos: int) -> int:
        """`nanos` nano-USD in 1e-9 units of the display currency, rounded half up."""
        scaled = abs(nanos) * self.rate_numerator
        # round(a / b) half up for a >= 0 is (2a + b) // 2b: exact, integers only.
        rounded = (2 * scaled + self.rate_denominator) // (2 * self.rate_denominator)
        return -rounded if nanos < 0 else rounded

    def format(self, nanos: int) -> str:
        """The amount in the display currency with 9 decimals, e.g. "35.499900955 CNY"."""
        return f"{nanos_to_usd(self.convert(nanos))} {self.code}"

    def with_usd(self, nanos: int) -> str:
        """USD always, plus the display currency when it differs: "4.9 USD (35.5 CNY)"."""
        usd = f"{nanos_to_usd(nanos)} {USD}"
        return usd if self.is_usd else f"{usd} ({self.format(nanos)})"


def parse_rate(text: str) -> tuple[int, int]:
    """A positive decimal string ("7.10") as (numerator, denominator), never through float."""
    match = _RATE.match(text.strip())
    if match is None:
        raise DisplayConfigError(f"{RATE_ENV} must be a positive decimal number, got {text!r}")
    whole, frac = match.group(1), match.group(2) or ""
    numerator, denominator = int(whole + frac), 10 ** len(frac)
    if numerator == 0:
        raise DisplayConfigError(f"{RATE_ENV} must be positive, got {text!r}")
    return numerator, denominator
