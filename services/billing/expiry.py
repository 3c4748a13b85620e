"""The hold expiry sweep: the backstop that frees holds nobody settled or released.

Every replica runs it; that is safe because each hold is voided by a conditional UPDATE
that matches only an open hold, so a hold is resolved once whoever gets there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from services.billing.core import Ledger
from services.billing.errors import BillingError
from services.billing.metrics import EXPIRY_SWEEP_FAILURES, HOLDS_EXPIRED

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = timedelta(seconds=30)


async def expire_now(ledger: Ledger, limit: int = 0) -> int:
    """Void the open holds past their deadline now (at most `limit`); how many."""
    expired = await ledger.expire_holds(limit)
    if expired:
        HOLDS_EXPIRED.inc(expired)
        logger.info("expired %s holds", expired)
    return expired


class ExpirySweeper:
    """Runs `expire_now` every interval on a background task until stopped."""

    def __init__(self, ledger: Ledger, interval: timedelta = DEFAULT_INTERVAL) -> None:
        if interval <= timedelta(0):
            raise ValueError("the expiry interval must be positive")
        self._ledger = ledger
        self._interval = interval
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="billing-expiry")

    async def stop(self) -> None:
        """Stop after the sweep in progress, if any."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        seconds = self._interval.total_seconds()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
                return
            await self._sweep()

    async def _sweep(self) -> None:
        # Keep going on database trouble: the next round retries, and a hold that waits
        # one more interval only costs its account some available balance for a while.
        try:
            await expire_now(self._ledger)
        except BillingError as exc:
            EXPIRY_SWEEP_FAILURES.inc()
            logger.warning("hold expiry sweep failed: %s", type(exc).__name__)
        except Exception:
            # A background loop must outlive a bug in one round, or holds stop expiring.
            EXPIRY_SWEEP_FAILURES.inc()
            logger.exception("hold expiry sweep failed")
