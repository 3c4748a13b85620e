"""The cost of a request as the client sees it: `usage.cost` and `x-apirelay-cost-usd`.

The cost is the shared charge formula (services.common.charges) applied to the usage
the edge settles, under the tariff its hold was placed at, so it equals what the wallet
is charged. It is written as a JSON number with 9 decimals (exact USD), patched into
the answer's `usage` object: the body of a JSON answer, or the usage-bearing event of
a stream (the router sends it in the stream's last item).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from edge.domain import Reservation, Usage
from edge.sse import event_data, with_data
from services.common.charges import ChargeError, Metered, cost_nanos
from services.common.money import nanos_to_usd

logger = logging.getLogger(__name__)

COST_HEADER = "x-apirelay-cost-usd"
_USAGE_KEY = b'"usage"'


def metered(usage: Usage) -> Metered:
    """A Usage as the charge formula reads it."""
    return Metered(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        units=usage.units,
        cache_write_prompt_tokens=usage.cache_write_prompt_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


class CostReporter:
    """Prices usages under one request's tariff; None when there is nothing to report."""

    def __init__(self, reservation: Reservation | None, enabled: bool) -> None:
        self._tariff = reservation.tariff if reservation is not None and enabled else None

    def nanos(self, usage: Usage | None) -> int | None:
        """The charge for `usage`, or None (cost reporting off, no tariff, unpriceable)."""
        if self._tariff is None or usage is None:
            return None
        try:
            return cost_nanos(self._tariff, metered(usage))
        except ChargeError as exc:
            # Billing refuses such a settlement too; the answer goes out without a cost.
            logger.warning("cannot price the usage for the client: %s", exc)
            return None


def usd(nanos: int) -> str:
    """nano-USD as the exact decimal USD text ("0.000123000")."""
    return nanos_to_usd(nanos)


def _with_cost(usage: Any, nanos: int) -> bool:
    if not isinstance(usage, dict):
        return False
    usage["cost"] = orjson.Fragment(usd(nanos).encode())
    return True


def add_cost_to_json(body: bytes, nanos: int) -> bytes | None:
    """A JSON answer with `cost` in its `usage` object (top level, or `response.usage`
    of a Responses event); None when it has no usage object."""
    if _USAGE_KEY not in body:  # most chunks and events: no parse at all
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    response = data.get("response")
    patched = _with_cost(data.get("usage"), nanos) or (
        isinstance(response, dict) and _with_cost(response.get("usage"), nanos)
    )
    return orjson.dumps(data) if patched else None


def add_cost_to_event(event: bytes, nanos: int) -> bytes | None:
    """An SSE event with `cost` in its data's usage object; None when it has none."""
    if _USAGE_KEY not in event:
        return None
    data = event_data(event)
    patched = None if data is None else add_cost_to_json(data, nanos)
    return None if patched is None else with_data(event, patched)
