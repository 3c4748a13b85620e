"""Channel admin messages to and from the admin rules' dataclasses (no secrets out)."""

from __future__ import annotations

from collections.abc import Iterable

from apirelay.router.v1 import router_pb2
from services.common.gateway_config import ChannelEntry
from services.router.admin_types import ChannelChanges, ChannelView, KeyTest
from services.router.store import ChannelSource

_SOURCES = {
    ChannelSource.CONFIG: router_pb2.CHANNEL_SOURCE_CONFIG,
    ChannelSource.ADMIN: router_pb2.CHANNEL_SOURCE_ADMIN,
    ChannelSource.ENVIRONMENT: router_pb2.CHANNEL_SOURCE_ENVIRONMENT,
}


def entry_of(spec: router_pb2.ChannelSpec) -> ChannelEntry:
    """The entry a CreateChannel spec asks for (weight 0 means 1, new channels enabled)."""
    return ChannelEntry(
        name=spec.name.strip(), type=spec.type.strip(), models=_list(spec.models),
        base_url=spec.base_url.strip().rstrip("/"), model_map=dict(spec.model_map),
        priority=spec.priority, weight=spec.weight or 1, enabled=True,
        preset=spec.preset, api_version=spec.api_version)


def changes_of(request: router_pb2.UpdateChannelRequest) -> ChannelChanges:
    """The changes an UpdateChannel request asks for; unset fields stay unchanged."""
    return ChannelChanges(
        base_url=request.base_url.strip() if request.HasField("base_url") else None,
        models=_list(request.models.values) if request.HasField("models") else None,
        priority=request.priority if request.HasField("priority") else None,
        weight=request.weight if request.HasField("weight") else None,
        tags=_list(request.tags.values) if request.HasField("tags") else None,
        add_keys=tuple(request.add_keys),
        remove_key_ids=tuple(request.remove_key_ids),
    )


def channel_info(view: ChannelView) -> router_pb2.ChannelInfo:
    """A listed channel: configuration, source, key ids and hints; never a secret."""
    entry = view.entry
    spec = router_pb2.ChannelSpec(
        name=entry.name, type=entry.type, base_url=entry.base_url, models=entry.models,
        model_map=dict(entry.model_map), priority=entry.priority, weight=entry.weight,
        enabled=entry.enabled, tags=view.tags, preset=entry.preset,
        api_version=entry.api_version)
    keys = [router_pb2.UpstreamKeyInfo(
        key_id=k.id, hint=k.hint, disabled=k.disabled,
        created_at=int(k.created_at.timestamp()) if k.created_at else 0) for k in view.keys]
    return router_pb2.ChannelInfo(spec=spec, source=_SOURCES[view.source], keys=keys)


def key_test(result: KeyTest) -> router_pb2.KeyTestResult:
    """One key's test outcome."""
    return router_pb2.KeyTestResult(key_id=result.key_id, ok=result.ok,
                                    http_status=result.http_status,
                                    latency_ms=result.latency_ms, error=result.error)


def _list(values: Iterable[str]) -> tuple[str, ...]:
    """Trimmed, non-empty, each once, in order."""
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
