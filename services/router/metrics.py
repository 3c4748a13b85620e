"""The router's Prometheus metrics (module-level by design: the registry is per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

UPSTREAM_REQUESTS = Counter(
    "apirelay_router_upstream_requests",
    "Upstream attempts by channel, operation (chat_completions, completions, embeddings, "
    "...) and outcome (ok, unavailable, rate_limited, timeout, rejected, cancelled).",
    ["channel", "operation", "outcome"],
)
UPSTREAM_LATENCY = Histogram(
    "apirelay_router_upstream_latency_seconds",
    "Seconds until the upstream answered: the whole answer (unary) or its first output "
    "chunk (stream).",
    ["channel", "operation", "mode"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
FAILOVERS = Counter(
    "apirelay_router_failovers",
    "Requests moved on to the next channel, by the channel that failed and operation.",
    ["channel", "operation"],
)

# Every value UPSTREAM_REQUESTS' `outcome` label takes.
OUTCOMES = ("ok", "cancelled", "unavailable", "rate_limited", "timeout", "rejected")


class ChannelMetrics:
    """One channel's series for one operation, bound once (`.labels()` takes a lock)."""

    __slots__ = ("_channel", "_operation", "_outcomes", "failovers", "stream_latency",
                 "unary_latency")

    def __init__(self, channel: str, operation: str) -> None:
        self._channel = channel
        self._operation = operation
        self._outcomes = {o: UPSTREAM_REQUESTS.labels(channel, operation, o) for o in OUTCOMES}
        self.unary_latency = UPSTREAM_LATENCY.labels(channel, operation, "unary")
        self.stream_latency = UPSTREAM_LATENCY.labels(channel, operation, "stream")
        self.failovers = FAILOVERS.labels(channel, operation)

    def count(self, outcome: str) -> None:
        """Count one attempt that ended with `outcome`."""
        counter = self._outcomes.get(outcome)
        if counter is None:
            counter = UPSTREAM_REQUESTS.labels(self._channel, self._operation, outcome)
        counter.inc()

EJECTIONS = Counter(
    "apirelay_router_ejections",
    "Targets (channel, key, model) ejected by the breaker, by channel and model.",
    ["channel", "model"],
)
KEYS_DISABLED = Counter(
    "apirelay_router_keys_disabled",
    "Upstream keys disabled because the upstream blamed them, by channel, key id (never "
    "the key) and reason (auth, quota).",
    ["channel", "key", "reason"],
)
COOLDOWNS = Counter(
    "apirelay_router_key_cooldowns",
    "Upstream keys put in cooldown by a 429, by channel and key id.",
    ["channel", "key"],
)
RETRIES_DENIED = Counter(
    "apirelay_router_retries_denied",
    "Retries not made because the retry budget was spent, by operation.",
    ["operation"],
)
MODEL_ATTEMPTS = Counter(
    "apirelay_router_model_attempts",
    "Upstream attempts by requested model, channel and outcome (as upstream_requests).",
    ["model", "channel", "outcome"],
)
MODEL_LATENCY = Histogram(
    "apirelay_router_model_latency_seconds",
    "Seconds until the first output (stream: time to first token) or the answer (unary), "
    "by requested model and mode.",
    ["model", "mode"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
FALLBACKS = Counter(
    "apirelay_router_model_fallbacks",
    "Requests moved on to a fallback model, by requested model and fallback model.",
    ["model", "fallback"],
)
AFFINITY_LOOKUPS = Counter(
    "apirelay_router_affinity_lookups",
    "Prompt-cache affinity lookups of a request's first try by outcome: hit (sent to the "
    "remembered target), miss (none remembered), unavailable (remembered but ejected, "
    "cooling, disabled or no longer a candidate). Hit rate: hit over all outcomes.",
    ["outcome"],
)
