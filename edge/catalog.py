"""The router's model catalog, cached for a few seconds.

A hit within the TTL costs a dict lookup. An unknown model triggers a refresh at most
once per `min_refresh_s`, so a newly added model appears at once while a client asking
for garbage cannot hammer the router. When the router is down, a stale catalog keeps
serving; with no catalog at all the request fails with 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from edge.domain import ModelInfo, Principal
from edge.errors import ApiError, UpstreamError, from_upstream
from edge.openai.errors import ErrorCode, ErrorType

logger = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[Sequence[ModelInfo]]]


class ModelCatalog:
    """A TTL cache over RouterService.ListModels."""

    def __init__(
        self,
        fetch: Fetch,
        ttl_s: float,
        *,
        min_refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_s
        self._min_refresh = min_refresh_s
        self._clock = clock
        self._models: dict[str, ModelInfo] | None = None
        self._expires = 0.0
        self._attempted = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, model_id: str) -> ModelInfo | None:
        """The model's entry, or None if the router does not serve it."""
        models = await self._current()
        found = models.get(model_id)
        if found is None and self._clock() - self._attempted >= self._min_refresh:
            models = await self._refresh(force=True)
            found = models.get(model_id)
        return found

    async def list(self) -> list[ModelInfo]:
        """Every model, sorted by id."""
        return sorted((await self._current()).values(), key=lambda m: m.id)

    async def _current(self) -> dict[str, ModelInfo]:
        if self._models is not None and self._clock() < self._expires:
            return self._models
        return await self._refresh(force=False)

    async def _refresh(self, *, force: bool) -> dict[str, ModelInfo]:
        started = self._clock()
        async with self._lock:
            fresh = self._models is not None and (
                self._attempted >= started or (not force and self._clock() < self._expires)
            )
            if fresh and self._models is not None:
                return self._models
            self._attempted = self._clock()
            try:
                models = await self._fetch()
            except UpstreamError as exc:
                if self._models is None:
                    raise from_upstream(exc) from None
                logger.warning("model catalog refresh failed (%s); serving the stale one",
                               exc.code.name)
                self._expires = self._clock() + self._min_refresh
                return self._models
            self._models = {m.id: m for m in models}
            self._expires = self._clock() + self._ttl
            return self._models


async def require_model(catalog: ModelCatalog, principal: Principal, model_id: str) -> ModelInfo:
    """The model, or 404 model_not_found / 403 model_not_allowed."""
    model = await catalog.get(model_id)
    if model is None:
        raise ApiError(
            404, ErrorType.INVALID_REQUEST,
            f"The model '{model_id}' does not exist or you do not have access to it.",
            code=ErrorCode.MODEL_NOT_FOUND, param="model",
        )
    if not principal.may_use(model_id):
        raise ApiError(
            403, ErrorType.PERMISSION,
            f"This API key is not allowed to use the model '{model_id}'.",
            code=ErrorCode.MODEL_NOT_ALLOWED, param="model",
        )
    return model
