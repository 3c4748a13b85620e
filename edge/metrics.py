"""Prometheus metrics of the edge (module-level metric objects are the accepted exception)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "apirelay_edge_requests_total", "HTTP requests answered, by route and status.",
    ["route", "status"],
)
LATENCY = Histogram(
    "apirelay_edge_request_duration_seconds", "Time to answer a request (whole stream).",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
STREAM_TTFB = Histogram(
    "apirelay_edge_stream_first_byte_seconds",
    "Time from request to the first streamed chunk, by endpoint.",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
ACTIVE_STREAMS = Gauge(
    "apirelay_edge_active_streams", "Streams being relayed now, by endpoint.", ["endpoint"]
)
SETTLEMENT_FAILURES = Counter(
    "apirelay_edge_settlement_failures_total",
    "Calls given up: settle or release billing refused for good (also dead letters), "
    "or lease releases after their retries.",
    ["operation"],
)
BATCH_ITEMS = Histogram(
    "apirelay_edge_batch_items", "Items per batch call to a service, by kind of call.",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
RESPONSE_CACHE_LOOKUPS = Counter(
    "apirelay_edge_response_cache_lookups_total",
    "Lookups in the exact response cache, by result (hit or miss).",
    ["result"],
)
SPOOL_DEPTH = Gauge(
    "apirelay_edge_settlement_spool_depth",
    "Settle and release calls waiting in the durable spool for billing (as last seen).",
)
SPOOLED = Counter(
    "apirelay_edge_settlement_spooled_total",
    "Settle or release calls written to the durable spool because billing was unreachable.",
    ["operation"],
)
DRAINED = Counter(
    "apirelay_edge_settlement_drained_total",
    "Spooled settle or release calls billing confirmed (then removed from the spool).",
    ["operation"],
)
DEAD_LETTERS = Counter(
    "apirelay_edge_settlement_dead_letters_total",
    "Settle or release calls billing refused for good, kept as dead letters.",
    ["operation"],
)
USAGE_REJECTED = Counter(
    "apirelay_edge_usage_rejected_total",
    "Reported usages not trusted (billed from counted tokens instead), by reason.",
    ["reason"],
)
