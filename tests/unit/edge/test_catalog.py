"""edge.catalog: TTL, refresh on a miss at most once per second, stale on failure."""

from __future__ import annotations

import grpc
import pytest

from edge.catalog import ModelCatalog, require_model
from edge.domain import ModelInfo, Principal
from edge.errors import ApiError, UpstreamError
from services.common.limits_config import LimitValues


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeRouter:
    def __init__(self) -> None:
        self.ids = ["a"]
        self.calls = 0
        self.fail = False

    async def fetch(self) -> list[ModelInfo]:
        self.calls += 1
        if self.fail:
            raise UpstreamError("router", grpc.StatusCode.UNAVAILABLE, "down")
        return [ModelInfo(i, "o", 0, 100) for i in self.ids]


def catalog() -> tuple[ModelCatalog, FakeRouter, FakeClock]:
    router, clock = FakeRouter(), FakeClock()
    return ModelCatalog(router.fetch, ttl_s=10, clock=clock), router, clock


async def test_hits_within_the_ttl_do_not_call_the_router() -> None:
    models, router, clock = catalog()
    assert (await models.get("a")) is not None
    clock.now = 9.9
    assert (await models.get("a")) is not None
    assert router.calls == 1
    clock.now = 10
    await models.get("a")
    assert router.calls == 2


async def test_a_miss_refreshes_at_most_once_per_second() -> None:
    models, router, clock = catalog()
    await models.get("a")
    router.ids.append("b")
    assert await models.get("b") is None  # just loaded: no refresh yet
    clock.now = 1.0
    assert (await models.get("b")) is not None  # the miss refreshed
    assert router.calls == 2
    clock.now = 1.5
    assert await models.get("zzz") is None
    assert await models.get("zzz") is None
    assert router.calls == 2
    clock.now = 2.0
    assert await models.get("zzz") is None
    assert router.calls == 3


async def test_router_down_serves_the_stale_catalog_or_503_without_one() -> None:
    models, router, clock = catalog()
    router.fail = True
    with pytest.raises(ApiError) as caught:
        await models.get("a")
    assert caught.value.status == 503
    router.fail = False
    await models.get("a")
    router.fail = True
    clock.now = 20
    assert (await models.get("a")) is not None
    assert [m.id for m in await models.list()] == ["a"]


async def test_require_model_404_then_403() -> None:
    models, _, _ = catalog()
    everyone = Principal("k", "a", "n", "g", frozenset(), LimitValues())
    only_b = Principal("k", "a", "n", "g", frozenset({"b"}), LimitValues())
    assert (await require_model(models, everyone, "a")).id == "a"
    with pytest.raises(ApiError) as caught:
        await require_model(models, everyone, "nope")
    assert (caught.value.status, caught.value.code, caught.value.param) == (
        404, "model_not_found", "model")
    with pytest.raises(ApiError) as caught:
        await require_model(models, only_b, "a")
    assert (caught.value.status, caught.value.type, caught.value.code) == (
        403, "permission_error", "model_not_allowed")
