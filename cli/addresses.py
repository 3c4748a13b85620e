"""Where each service listens and how the others reach it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

SERVICES = ("auth", "ratelimit", "router", "billing")
DEFAULT_PORTS = {"auth": 50051, "ratelimit": 50052, "router": 50053, "billing": 50054}
DEFAULT_EDGE_PORT = 8080


@dataclass(frozen=True, slots=True)
class Addresses:
    """Listen addresses of the four services and the edge port."""

    listen: Mapping[str, str]
    edge_host: str
    edge_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Addresses:
        """`<SERVICE>_LISTEN_ADDR` and `APIRELAY_PORT`, else the defaults on 127.0.0.1."""
        listen = {
            name: environ.get(f"{name.upper()}_LISTEN_ADDR") or f"127.0.0.1:{DEFAULT_PORTS[name]}"
            for name in SERVICES
        }
        port = int(environ.get("APIRELAY_PORT") or DEFAULT_EDGE_PORT)
        return cls(listen, environ.get("EDGE_HOST") or "127.0.0.1", port)

    def dial(self, service: str, environ: Mapping[str, str] = os.environ) -> str:
        """The address a client uses: `<SERVICE>_SERVICE_ADDR`, else where `up` listens."""
        explicit = environ.get(f"{service.upper()}_SERVICE_ADDR")
        if explicit:
            return explicit
        host, _, port = self.listen[service].rpartition(":")
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{port}"

    def child_env(self) -> dict[str, str]:
        """The address variables every child process gets."""
        env = {f"{name.upper()}_LISTEN_ADDR": addr for name, addr in self.listen.items()}
        env.update({f"{name.upper()}_SERVICE_ADDR": self.dial(name, {}) for name in SERVICES})
        env["APIRELAY_PORT"] = str(self.edge_port)
        env["EDGE_HOST"] = self.edge_host
        return env
