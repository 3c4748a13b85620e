"""The edge's settings, read once from the environment."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from services.common.gateway_config import CONFIG_ENV

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_AUTH_ADDR = "127.0.0.1:50051"
DEFAULT_RATELIMIT_ADDR = "127.0.0.1:50052"
DEFAULT_ROUTER_ADDR = "127.0.0.1:50053"
DEFAULT_BILLING_ADDR = "127.0.0.1:50054"
DEFAULT_AUTH_CACHE_TTL_S = 5.0
DEFAULT_AUTH_CACHE_SIZE = 10_000
DEFAULT_MODELS_TTL_S = 10.0
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 26 * 1024 * 1024  # OpenAI's audio upload limit, with form overhead
DEFAULT_KEEPALIVE_S = 15.0
DEFAULT_REQUEST_TIMEOUT_S = 600.0
DEFAULT_RPC_TIMEOUT_S = 5.0
DEFAULT_SHUTDOWN_GRACE_S = 120.0
DEFAULT_BATCH_MAX_IN_FLIGHT = 2
DEFAULT_BATCH_MAX_ITEMS = 128
DEFAULT_IDEMPOTENCY_TTL_S = 86_400.0
DEFAULT_IDEMPOTENCY_MAX_ENTRIES = 10_000
DEFAULT_RESPONSE_CACHE_TTL_S = 300.0
DEFAULT_RESPONSE_CACHE_MAX_ENTRIES = 1_000
DEFAULT_HOME = "./.apirelay"
SPOOL_FILE = "edge-spool.db"
DEFAULT_SPOOL_STREAM = "apirelay:edge:settlements"
DEFAULT_SPOOL_GROUP = "apirelay-edge"
DEFAULT_SPOOL_POLL_S = 5.0
DEFAULT_SPOOL_DRAIN_S = 10.0


class CacheMode(enum.Enum):
    """Which non-streaming answers the exact response cache keeps (EDGE_RESPONSE_CACHE)."""

    OFF = "off"
    KEY = "key"  # every cacheable answer of every key
    HEADER = "header"  # only when the request sends `x-apirelay-cache: on`


class CacheBilling(enum.Enum):
    """How a cache hit is billed (EDGE_RESPONSE_CACHE_BILLING)."""

    FULL = "full"  # held and settled like the original answer, at this request's tariff
    FREE = "free"  # no hold, no charge; still counted by RPM and concurrency


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the edge reads from the environment."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth_addr: str = DEFAULT_AUTH_ADDR
    ratelimit_addr: str = DEFAULT_RATELIMIT_ADDR
    router_addr: str = DEFAULT_ROUTER_ADDR
    billing_addr: str = DEFAULT_BILLING_ADDR
    auth_cache_ttl_s: float = DEFAULT_AUTH_CACHE_TTL_S
    auth_cache_size: int = DEFAULT_AUTH_CACHE_SIZE
    models_ttl_s: float = DEFAULT_MODELS_TTL_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    report_cost: bool = True
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S
    metrics_addr: str = ""
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    batch_max_in_flight: int = DEFAULT_BATCH_MAX_IN_FLIGHT
    batch_max_items: int = DEFAULT_BATCH_MAX_ITEMS
    log_level: str = "INFO"
    cors_origins: tuple[str, ...] = ()
    idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S
    idempotency_max_entries: int = DEFAULT_IDEMPOTENCY_MAX_ENTRIES
    redis_url: str = ""
    response_cache: CacheMode = CacheMode.OFF
    response_cache_ttl_s: float = DEFAULT_RESPONSE_CACHE_TTL_S
    response_cache_billing: CacheBilling = CacheBilling.FULL
    response_cache_max_entries: int = DEFAULT_RESPONSE_CACHE_MAX_ENTRIES
    # apirelay.yaml, for its `limits:` section; "" = the built-in default limits only.
    config_path: str = ""
    # The settlement spool without Redis: a SQLite file; "" keeps it in memory (tests).
    spool_path: str = ""
    spool_stream: str = DEFAULT_SPOOL_STREAM  # with Redis: the stream every replica shares
    spool_group: str = DEFAULT_SPOOL_GROUP  # its consumer group (one per edge deployment)
    spool_poll_s: float = DEFAULT_SPOOL_POLL_S  # how often the drain looks without a wake
    spool_drain_s: float = DEFAULT_SPOOL_DRAIN_S  # how long shutdown keeps draining it

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read the settings; a malformed number fails with the variable's name."""
        port = environ.get("EDGE_PORT") or environ.get("APIRELAY_PORT") or str(DEFAULT_PORT)
        return cls(
            host=environ.get("EDGE_HOST", DEFAULT_HOST),
            port=_int("EDGE_PORT/APIRELAY_PORT", port),
            auth_addr=environ.get("AUTH_SERVICE_ADDR", DEFAULT_AUTH_ADDR),
            ratelimit_addr=environ.get("RATELIMIT_SERVICE_ADDR", DEFAULT_RATELIMIT_ADDR),
            router_addr=environ.get("ROUTER_SERVICE_ADDR", DEFAULT_ROUTER_ADDR),
            billing_addr=environ.get("BILLING_SERVICE_ADDR", DEFAULT_BILLING_ADDR),
            auth_cache_ttl_s=_float(environ, "EDGE_AUTH_CACHE_TTL_S", DEFAULT_AUTH_CACHE_TTL_S),
            auth_cache_size=_int(
                "EDGE_AUTH_CACHE_SIZE",
                environ.get("EDGE_AUTH_CACHE_SIZE", str(DEFAULT_AUTH_CACHE_SIZE)),
            ),
            models_ttl_s=_float(environ, "EDGE_MODELS_TTL_S", DEFAULT_MODELS_TTL_S),
            max_body_bytes=_int(
                "EDGE_MAX_BODY_BYTES",
                environ.get("EDGE_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES)),
            ),
            max_upload_bytes=_int(
                "EDGE_MAX_UPLOAD_BYTES",
                environ.get("EDGE_MAX_UPLOAD_BYTES", str(DEFAULT_MAX_UPLOAD_BYTES)),
            ),
            report_cost=_bool(environ, "EDGE_REPORT_COST", default=True),
            keepalive_s=_float(environ, "EDGE_KEEPALIVE_S", DEFAULT_KEEPALIVE_S),
            request_timeout_s=_float(environ, "EDGE_REQUEST_TIMEOUT_S", DEFAULT_REQUEST_TIMEOUT_S),
            rpc_timeout_s=_float(environ, "EDGE_RPC_TIMEOUT_S", DEFAULT_RPC_TIMEOUT_S),
            metrics_addr=environ.get("EDGE_METRICS_ADDR", ""),
            shutdown_grace_s=_float(environ, "EDGE_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S),
            batch_max_in_flight=_count(
                environ, "EDGE_BATCH_MAX_IN_FLIGHT", DEFAULT_BATCH_MAX_IN_FLIGHT
            ),
            batch_max_items=_count(environ, "EDGE_BATCH_MAX_ITEMS", DEFAULT_BATCH_MAX_ITEMS),
            log_level=environ.get("EDGE_LOG_LEVEL", "INFO"),
            cors_origins=_origins(environ.get("EDGE_CORS_ORIGINS", "")),
            idempotency_ttl_s=_float(environ, "EDGE_IDEMPOTENCY_TTL_S", DEFAULT_IDEMPOTENCY_TTL_S),
            idempotency_max_entries=_count(
                environ, "EDGE_IDEMPOTENCY_MAX_ENTRIES", DEFAULT_IDEMPOTENCY_MAX_ENTRIES
            ),
            redis_url=environ.get("EDGE_REDIS_URL", ""),
            response_cache=_choice(environ, "EDGE_RESPONSE_CACHE", CacheMode.OFF),
            response_cache_ttl_s=_float(
                environ, "EDGE_RESPONSE_CACHE_TTL_S", DEFAULT_RESPONSE_CACHE_TTL_S
            ),
            response_cache_billing=_choice(
                environ, "EDGE_RESPONSE_CACHE_BILLING", CacheBilling.FULL
            ),
            response_cache_max_entries=_count(
                environ, "EDGE_RESPONSE_CACHE_MAX_ENTRIES", DEFAULT_RESPONSE_CACHE_MAX_ENTRIES
            ),
            config_path=environ.get(CONFIG_ENV, ""),
            spool_path=environ.get("EDGE_SPOOL_PATH") or str(
                Path(environ.get("APIRELAY_HOME") or DEFAULT_HOME) / SPOOL_FILE
            ),
            spool_stream=environ.get("EDGE_SPOOL_STREAM") or DEFAULT_SPOOL_STREAM,
            spool_group=environ.get("EDGE_SPOOL_GROUP") or DEFAULT_SPOOL_GROUP,
            spool_poll_s=_float(environ, "EDGE_SPOOL_POLL_S", DEFAULT_SPOOL_POLL_S),
            spool_drain_s=_float(environ, "EDGE_SPOOL_DRAIN_S", DEFAULT_SPOOL_DRAIN_S),
        )


def _origins(raw: str) -> tuple[str, ...]:
    # Browsers send `scheme://host[:port]` in lower case and without a trailing slash.
    cleaned = (part.strip().rstrip("/").lower() for part in raw.split(","))
    return tuple(origin for origin in cleaned if origin)


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


_E = TypeVar("_E", bound=enum.Enum)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _choice(environ: Mapping[str, str], name: str, default: _E) -> _E:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return type(default)(raw)
    except ValueError:
        allowed = "|".join(str(member.value) for member in type(default))
        raise ValueError(f"{name} must be one of {allowed}, got {raw!r}") from None


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    value = _int(name, environ.get(name) or str(default))
    if value == 0:
        raise ValueError(f"{name} must be at least 1, got 0")
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value
