"""Typed keys of what the application and each request carry."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from edge.auth import Authenticator
from edge.catalog import ModelCatalog
from edge.clients import Clients
from edge.config import Settings
from edge.domain import Principal
from edge.idempotency import IdempotencyStore
from edge.limits import LimitPolicy
from edge.response_cache_store import ResponseCacheStore
from edge.settlement import Settler


@dataclass(slots=True)
class Lifecycle:
    """Process state the readiness probe reports."""

    draining: bool = False


SETTINGS = web.AppKey("settings", Settings)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
CLIENTS = web.AppKey("clients", Clients)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
CATALOG = web.AppKey("catalog", ModelCatalog)
SETTLER = web.AppKey("settler", Settler)
LIMIT_POLICY = web.AppKey("limit_policy", LimitPolicy)
IDEMPOTENCY: web.AppKey[IdempotencyStore] = web.AppKey("idempotency")
RESPONSE_CACHE: web.AppKey[ResponseCacheStore] = web.AppKey("response_cache")

# The request's id inside the system (holds, leases, logs): unique per request.
REQUEST_ID = web.RequestKey("request_id", str)
# The id the response shows in x-request-id: the client's own when it sent one.
SHOWN_REQUEST_ID = web.RequestKey("shown_request_id", str)
PRINCIPAL = web.RequestKey("principal", Principal)
STARTED_AT = web.RequestKey("started_at", float)
