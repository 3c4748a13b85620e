"""Prometheus metrics of the rate-limit service (module-level by Prometheus' design)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISIONS = Counter(
    "apirelay_ratelimit_decisions_total",
    "AcquireLease and CheckLimits decisions by result and by the kind of limit that denied "
    "(none when allowed).",
    ["result", "limit"],
)
RELEASES = Counter(
    "apirelay_ratelimit_releases_total",
    "ReleaseLease calls by whether a held lease was released.",
    ["released"],
)
STORE_ERRORS = Counter(
    "apirelay_ratelimit_store_errors_total",
    "Calls to the shared store that failed because it was unreachable.",
)
FALLBACK_ACTIVE = Gauge(
    "apirelay_ratelimit_fallback_active",
    "1 while the shared store is unreachable and decisions are local (or refused).",
)
FALLBACK_DECISIONS = Counter(
    "apirelay_ratelimit_fallback_decisions_total",
    "AcquireLease decisions taken by the local fallback store during an outage.",
)
STORE_RESETS = Counter(
    "apirelay_ratelimit_store_resets_total",
    "Times the shared store came back from an outage without its counters (restarted empty).",
)
CANCELLED_GRANTS = Counter(
    "apirelay_ratelimit_cancelled_grants_total",
    "Leases granted to calls whose caller had cancelled, released by the service at once.",
)
BATCH_ITEMS = Histogram(
    "apirelay_ratelimit_batch_items",
    "Items per batch call (AcquireLeases, ReleaseLeases) by operation.",
    ["operation"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
MISSED_RELEASES_APPLIED = Counter(
    "apirelay_ratelimit_missed_releases_applied_total",
    "Releases the shared store missed while unreachable, applied once it answered again.",
)
