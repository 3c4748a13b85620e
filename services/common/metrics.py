"""Prometheus exposition on a process's own HTTP port."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

logger = logging.getLogger(__name__)


def start_metrics_server(addr: str) -> None:
    """Serve /metrics on `host:port` in a daemon thread; an empty `addr` disables it."""
    if not addr:
        return
    host, _, port = addr.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
    logger.info("metrics on http://%s/metrics", addr)
