"""The router's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.gateway_config import CONFIG_ENV

DEFAULT_LISTEN_ADDR = "127.0.0.1:50053"
DEFAULT_CONFIG_PATH = "./apirelay.yaml"
DEFAULT_SHUTDOWN_GRACE_S = 120.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_UPSTREAM_CONNECTIONS = 1000
DEFAULT_LOG_LEVEL = "INFO"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the router listens, where its config file is, how it talks to upstreams."""

    listen_addr: str = DEFAULT_LISTEN_ADDR
    metrics_addr: str = ""
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    config_path: str = DEFAULT_CONFIG_PATH
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    max_upstream_connections: int = DEFAULT_MAX_UPSTREAM_CONNECTIONS
    log_level: str = DEFAULT_LOG_LEVEL

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ROUTER_* variables and APIRELAY_CONFIG; unset ones take the defaults."""
        return cls(
            listen_addr=environ.get("ROUTER_LISTEN_ADDR", DEFAULT_LISTEN_ADDR),
            metrics_addr=environ.get("ROUTER_METRICS_ADDR", ""),
            shutdown_grace_s=float(
                environ.get("ROUTER_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S)),
            config_path=environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
            connect_timeout_s=float(
                environ.get("ROUTER_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S)),
            max_upstream_connections=int(
                environ.get("ROUTER_MAX_UPSTREAM_CONNECTIONS", DEFAULT_MAX_UPSTREAM_CONNECTIONS)),
            log_level=environ.get("ROUTER_LOG_LEVEL", DEFAULT_LOG_LEVEL),
        )
