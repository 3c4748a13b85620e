"""A multi-process gateway on 127.0.0.1 for chaos tests: replicas that can be killed.

Every service runs as `python -m services.<name>` (the edge as `python -m edge`) on a
free port, with its own `$APIRELAY_HOME` and log file, and reaches its dependencies
through comma-separated address lists (DESIGN.md: `<SERVICE>_SERVICE_ADDR`), so a
client balances over the replicas and skips a dead one. A process is ready when its
gRPC health check answers SERVING (the edge: `GET /readyz` answers 200), as
`apirelay up` waits (cli/up.py).

No process outlives the test: `close()` runs in the fixture's `finally`, an atexit hook
kills whatever is left if the interpreter exits first, and each child dies with the
test process in any case (tests/chaos/process.py).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.backends import free_port
from tests.chaos.process import ROOT, Process

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
_INHERITED_SUFFIXES = ("_SERVICE_ADDR", "_LISTEN_ADDR", "_DATABASE_URL", "_REDIS_URL")


@dataclass(frozen=True)
class Topology:
    """How many replicas of each kind."""

    auth: int = 1
    ratelimit: int = 1
    router: int = 2
    billing: int = 2
    edge: int = 2


@dataclass
class ClusterConfig:
    """What the processes share: config file, backends, secrets, extra environment."""

    root: Path
    config_path: Path
    redis_url: str
    billing_database_url: str
    extra_env: Mapping[str, str] = field(default_factory=dict)
    topology: Topology = field(default_factory=Topology)
    admin_key: str = field(default_factory=lambda: "ak-" + secrets.token_hex(16))
    # Names this run's keys in the shared Redis.
    run_id: str = field(default_factory=lambda: "chaos-" + secrets.token_hex(6))
    # Where the processes' code is (a snapshot of the tree can stand in for the work tree).
    code_root: Path = ROOT


class Cluster:
    """The replicas of one run, by name ("billing-0", "edge-1", ...)."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.processes: dict[str, Process] = {}
        self.addresses: dict[str, list[str]] = {}
        self.edge_urls: list[str] = []
        self.edge_metrics_urls: list[str] = []
        self._helpers: list[str] = []
        self._router_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self._build()
        atexit.register(self.kill_all)

    @property
    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying the admin key."""
        return (("authorization", f"Bearer {self.config.admin_key}"),)

    def addr(self, service: str) -> str:
        """The comma-separated address list of a service's replicas."""
        return ",".join(self.addresses[service])

    def _build(self) -> None:
        topo = self.config.topology
        counts = {"auth": topo.auth, "ratelimit": topo.ratelimit, "router": topo.router,
                  "billing": topo.billing}
        for service, count in counts.items():
            self.addresses[service] = [f"127.0.0.1:{free_port()}" for _ in range(count)]
        edge_ports = [free_port() for _ in range(topo.edge)]
        self.edge_urls = [f"http://127.0.0.1:{port}" for port in edge_ports]
        metrics_ports = [free_port() for _ in range(topo.edge)]
        self.edge_metrics_urls = [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports]
        base = self._base_env()
        for service in counts:
            for index, address in enumerate(self.addresses[service]):
                name = f"{service}-{index}"
                env = {**base, **self._own_env(service, name, address)}
                self.processes[name] = Process(
                    name, [sys.executable, "-m", f"services.{service}"], env,
                    self.config.root / f"{name}.log", self.config.code_root, grpc_addr=address)
        for index, port in enumerate(edge_ports):
            name = f"edge-{index}"
            env = {**base, **self._own_env("edge", name, ""), "EDGE_PORT": str(port),
                   "EDGE_METRICS_ADDR": f"127.0.0.1:{metrics_ports[index]}"}
            self.processes[name] = Process(
                name, [sys.executable, "-m", "edge"], env, self.config.root / f"{name}.log",
                self.config.code_root, http_ready=f"http://127.0.0.1:{port}/readyz")

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.endswith(_INHERITED_SUFFIXES)}
        env.update({
            "APIRELAY_ADMIN_KEY": self.config.admin_key,
            "APIRELAY_CONFIG": str(self.config.config_path),
            **{f"{s.upper()}_SERVICE_ADDR": self.addr(s) for s in self.addresses},
            "ROUTER_ENCRYPTION_KEY": self._router_key,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(self.config.code_root),
        })
        env.update(self.config.extra_env)
        return env

    def _own_env(self, service: str, name: str, address: str) -> dict[str, str]:
        home = self.config.root / name
        home.mkdir(parents=True, exist_ok=True)
        env = {"APIRELAY_HOME": str(home)}
        if service == "edge":
            env.update({"EDGE_HOST": "127.0.0.1", "EDGE_REDIS_URL": self.config.redis_url})
            return env
        env[f"{service.upper()}_LISTEN_ADDR"] = address
        if service == "billing":
            env["BILLING_DATABASE_URL"] = self.config.billing_database_url
        if service == "ratelimit":
            env["RATELIMIT_REDIS_URL"] = self.config.redis_url
            env["RATELIMIT_REDIS_PREFIX"] = f"{self.config.run_id}:rl:"
        return env

    def add_helper(self, name: str, argv: list[str], http_ready: str) -> None:
        """Run one more process with the cluster (a fake upstream), started first."""
        env = {**self._base_env(), "PYTHONPATH": str(ROOT)}
        self.processes[name] = Process(name, argv, env,
                                       self.config.root / f"{name}.log", ROOT,
                                       http_ready=http_ready)
        self._helpers.append(name)

    async def start(self) -> None:
        """Start every process and wait until each is ready: helpers, services, then edges.

        Billing replicas start one after the other: each creates the schema at start,
        and two concurrent CREATE TABLEs on one PostgreSQL database can collide.
        """
        for name in [*self._helpers, *self._names("billing")]:
            await self.restart(name)
        others = [n for n in self.processes
                  if not n.startswith(("billing", "edge")) and n not in self._helpers]
        for name in others:
            self.processes[name].spawn()
        await asyncio.gather(*(self.wait_ready(n) for n in others))
        for name in self._names("edge"):
            self.processes[name].spawn()
        await asyncio.gather(*(self.wait_ready(n) for n in self._names("edge")))

    def _names(self, service: str) -> list[str]:
        return [n for n in self.processes if n.rsplit("-", 1)[0] == service]

    def kill(self, name: str) -> None:
        """SIGKILL one replica."""
        self.processes[name].kill()

    async def restart(self, name: str) -> None:
        """Start a (dead) replica again and wait until it is ready."""
        process = self.processes[name]
        process.kill()
        process.spawn()
        await self.wait_ready(name)

    async def wait_ready(self, name: str) -> None:
        """Wait until the process reports ready; fail with its log if it dies or stalls."""
        process = self.processes[name]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not process.alive:
                raise RuntimeError(f"{name} exited while starting:\n{process.tail()}")
            if await process.ready():
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} not ready in {READY_TIMEOUT_S:.0f}s:\n{process.tail()}")

    async def stop_edges(self) -> dict[str, int | None]:
        """SIGTERM every edge and wait: they finish their streams and pending settlements."""
        names = self._names("edge")
        codes = await asyncio.gather(*(
            asyncio.to_thread(self.processes[n].terminate) for n in names))
        return dict(zip(names, codes, strict=True))

    def kill_all(self) -> None:
        """SIGKILL everything still running (the atexit and failure path)."""
        for process in self.processes.values():
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                process.kill()

    def close(self) -> None:
        """SIGTERM everything, give it a moment, SIGKILL the rest; forget the atexit hook."""
        try:
            live = [p.popen for p in self.processes.values() if p.alive and p.popen]
            for popen in live:
                popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for popen in live:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(max(0.1, deadline - time.monotonic()))
        finally:
            self.kill_all()
            atexit.unregister(self.kill_all)

    def logs(self) -> dict[str, str]:
        """Each process's log tail."""
        return {name: process.tail() for name, process in self.processes.items()}
