"""Prometheus metrics of the billing service (module-level by Prometheus' design)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RESERVES = Counter(
    "apirelay_billing_reserves_total", "ReserveCredit outcomes by decision.", ["decision"]
)
# A float counter: exact up to 2**53 nano-USD (about 9 million USD), enough for rate().
SETTLED_NANOS = Counter(
    "apirelay_billing_settled_nanos_total", "Nano-USD charged by first settles."
)
SETTLE_DUPLICATES = Counter(
    "apirelay_billing_settle_duplicates_total", "Settles of an already settled request."
)
# The kinds come from priced units only (settle refuses others), so the labels are bounded
# by the configured prices.
CHARGES = Counter(
    "apirelay_billing_charges_total",
    'First settles by what they charged for: "tokens", or a unit family ("image", ...).',
    ["kind"],
)
CHARGES_OVER_HOLD = Counter(
    "apirelay_billing_charges_over_hold_total", "Settles whose real cost exceeded the hold."
)
BATCH_ITEMS = Histogram(
    "apirelay_billing_batch_items",
    "Items per batch call (ReserveCredits, SettleCredits) by operation.",
    ["operation"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
HOLDS_EXPIRED = Counter(
    "apirelay_billing_holds_expired_total", "Open holds voided by the expiry sweep."
)
LATE_SETTLEMENTS = Counter(
    "apirelay_billing_late_settlements_total",
    "Settlements of holds that had expired (charged anyway).",
)
EXPIRY_SWEEP_FAILURES = Counter(
    "apirelay_billing_expiry_sweep_failures_total", "Expiry sweeps that failed (retried later)."
)
