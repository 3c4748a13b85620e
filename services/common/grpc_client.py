"""Channels to our services, from `<SERVICE>_SERVICE_ADDR` values."""

from __future__ import annotations

import grpc

_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 1),
    # A restarted replica is used again within about 2 s, not after gRPC's default
    # backoff (1 s doubling to 120 s), which kept a recovered billing replica idle while
    # the other was down and admissions failed closed.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def channel_target(addr: str) -> str:
    """A gRPC target: a `dns:///` target as is; a comma list becomes an ipv4/ipv6 list."""
    addr = addr.strip()
    if "://" in addr or addr.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        return addr
    parts = [p.strip() for p in addr.split(",") if p.strip()]
    if len(parts) == 1:
        return parts[0]
    scheme = "ipv6" if parts[0].startswith("[") else "ipv4"
    return f"{scheme}:{','.join(parts)}"


def open_channel(addr: str) -> grpc.aio.Channel:
    """An insecure channel balanced round-robin over every address the target names."""
    options = [*_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
    return grpc.aio.insecure_channel(channel_target(addr), options=options)
