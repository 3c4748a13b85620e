"""`apirelay up`: run the four services and the edge as supervised child processes.

Services start first (each must report SERVING on gRPC health), then the edge. If any
child exits, `up` names it, stops the others and exits non-zero. SIGINT/SIGTERM stop the
edge first (it drains its streams), then the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.addresses import SERVICES, Addresses
from cli.home import Home

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 150.0


class StartupFailed(RuntimeError):
    """A child did not become ready."""


@dataclass(slots=True)
class Child:
    """One supervised process."""

    name: str
    process: asyncio.subprocess.Process


@dataclass(slots=True)
class Supervisor:
    """Starts, watches and stops the children."""

    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    async def spawn(self, name: str, module: str) -> Child:
        """Start `python -m module` with the shared environment."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=self.env, start_new_session=True
        )
        child = Child(name, process)
        self.children.append(child)
        return child

    async def first_exit(self) -> Child:
        """Wait until any child exits and return it."""
        waits = {asyncio.ensure_future(c.process.wait()): c for c in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def stop_all(self) -> None:
        """SIGTERM the edge first, then the services, waiting for each group."""
        edge = [c for c in self.children if c.name == "edge"]
        others = [c for c in self.children if c.name != "edge"]
        for group in (edge, others):
            for child in group:
                if child.process.returncode is None:
                    child.process.send_signal(signal.SIGTERM)
            for child in group:
                try:
                    await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    child.process.kill()
                    await child.process.wait()


async def _wait_grpc_serving(name: str, addr: str, child: Child) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    async with grpc.aio.insecure_channel(addr) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if child.process.returncode is not None:
                raise StartupFailed(f"{name} exited with code {child.process.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise StartupFailed(f"{name} did not become healthy on {addr} in {STARTUP_TIMEOUT_S:.0f}s")


async def _wait_http_ready(url: str, child: Child) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if child.process.returncode is not None:
                raise StartupFailed(f"edge exited with code {child.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise StartupFailed(f"edge did not answer {url} in {STARTUP_TIMEOUT_S:.0f}s")


def _banner(base_url: str, home: Home, created: bool) -> str:
    where = f"created {home.admin_key_file}" if created else "from APIRELAY_ADMIN_KEY or " + str(
        home.admin_key_file
    )
    return (
        f"\napirelay is up: {base_url}\n"
        f"  data:      {home.path}\n"
        f"  admin key: {where}\n\n"
        "Next steps (in another shell):\n"
        "  apirelay accounts create demo --credit 5\n"
        "  KEY=$(apirelay keys create --account demo | tail -n 1)\n"
        f"  curl {base_url}/chat/completions -H \"Authorization: Bearer $KEY\" \\\n"
        "    -H 'content-type: application/json' \\\n"
        "    -d '{\"model\": \"demo\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'\n"
        "  apirelay balance demo\n"
        "Ctrl-C stops everything.\n"
    )


async def run_up(environ: dict[str, str]) -> int:
    """Start everything, supervise until a signal or a child's exit; return the exit code."""
    home = Home.from_env(environ)
    home.ensure()
    admin_key, created = home.ensure_admin_key(environ)
    config = home.resolve_config(environ)
    addresses = Addresses.from_env(environ)
    env = {**environ, **addresses.child_env(), "APIRELAY_HOME": str(home.path),
           "APIRELAY_CONFIG": str(config), "APIRELAY_ADMIN_KEY": admin_key}
    supervisor = Supervisor(env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        services = [await supervisor.spawn(name, f"services.{name}") for name in SERVICES]
        await asyncio.gather(*(
            _wait_grpc_serving(c.name, addresses.dial(c.name, {}), c) for c in services
        ))
        edge = await supervisor.spawn("edge", "edge")
        base = f"http://{addresses.edge_host}:{addresses.edge_port}"
        await _wait_http_ready(base + "/readyz", edge)
    except StartupFailed as exc:
        print(f"apirelay up: {exc}", file=sys.stderr)
        await supervisor.stop_all()
        return 1
    print(_banner(base + "/v1", home, created), flush=True)
    return await _supervise(supervisor, stop)


async def _supervise(supervisor: Supervisor, stop: asyncio.Event) -> int:
    stop_wait = asyncio.ensure_future(stop.wait())
    exit_wait = asyncio.ensure_future(supervisor.first_exit())
    done, _ = await asyncio.wait({stop_wait, exit_wait}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if exit_wait in done:
        dead = exit_wait.result()
        print(f"apirelay up: {dead.name} exited with code {dead.process.returncode}; "
              "stopping the others", file=sys.stderr, flush=True)
        code = 1
    else:
        exit_wait.cancel()
        print("apirelay up: stopping", file=sys.stderr, flush=True)
    await supervisor.stop_all()
    return code


def main_up() -> int:
    """Entry point of `apirelay up`."""
    return asyncio.run(run_up(dict(os.environ)))
