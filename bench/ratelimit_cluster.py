"""Rate-limit replicas as child processes on loopback, and a Redis the caller may break.

Used by `python -m bench.ratelimit` and by the accuracy and outage tests (RL-1 to RL-4):
each replica is `python -m services.ratelimit` with its own `RATELIMIT_LISTEN_ADDR`, all
sharing one Redis under one key prefix. Everything listens on 127.0.0.1 and is stopped
on exit, and (through the parent-death signal) even when the caller is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.procs import LOCALHOST, BenchError, free_port, spawn, stop, tail

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
SERVICE = "apirelay.ratelimit.v1.RateLimitService"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """How to run the replicas: how many, against which Redis, with which settings."""

    redis_url: str
    prefix: str
    replicas: int = 4
    # Extra RATELIMIT_* settings (window, timeouts, fail mode ...).
    settings: Mapping[str, str] = field(default_factory=dict)


class Cluster:
    """N replicas of the rate-limit service sharing one Redis; a context manager."""

    def __init__(self, spec: ClusterSpec, workdir: Path) -> None:
        self.spec = spec
        self._workdir = workdir
        self.addresses = [f"{LOCALHOST}:{free_port()}" for _ in range(spec.replicas)]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * spec.replicas

    def __enter__(self) -> Self:
        try:
            for index in range(self.spec.replicas):
                self._spawn(index)
            for index in range(self.spec.replicas):
                self.wait_ready(index)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_path(self, index: int) -> Path:
        """Where replica `index` writes its output."""
        return self._workdir / f"ratelimit-{index}.log"

    def pid(self, index: int) -> int:
        """The process id of replica `index`."""
        proc = self._procs[index]
        if proc is None:
            raise BenchError(f"replica {index} is not running")
        return proc.pid

    def kill(self, index: int) -> None:
        """SIGKILL replica `index` (a crash: no drain, no cleanup)."""
        proc = self._procs[index]
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def wait_ready(self, index: int, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until replica `index` reports SERVING."""
        proc, address = self._procs[index], self.addresses[index]
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(address) as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if proc is None or proc.poll() is not None:
                    raise BenchError(f"replica {index} exited; see {self.log_path(index)}\n"
                                     f"{tail(self.log_path(index))}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE),
                                         timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise BenchError(f"replica {index} not ready after {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop every replica (SIGTERM, then SIGKILL after the grace period)."""
        for proc in self._procs:
            if proc is not None:
                stop(proc, STOP_GRACE_S)

    def _spawn(self, index: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMIT_")}
        env.update({
            "RATELIMIT_LISTEN_ADDR": self.addresses[index],
            "RATELIMIT_REDIS_URL": self.spec.redis_url,
            "RATELIMIT_REDIS_PREFIX": self.spec.prefix,
            "RATELIMIT_REPLICAS": str(self.spec.replicas),
            "RATELIMIT_LOG_LEVEL": "WARNING",
            **self.spec.settings,
        })
        argv = [sys.executable, "-m", "services.ratelimit"]
        self._procs[index] = spawn(argv, env, self.log_path(index))


class RedisServer:
    """A throwaway `redis-server` on a free loopback port: pause, resume, kill, restart."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server is not on PATH")
        self._binary = binary
        self._workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (database 0)."""
        return f"redis://{LOCALHOST}:{self.port}/0"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            self.resume()
            stop(self._proc, STOP_GRACE_S)

    def start(self) -> None:
        """Start (or start again, empty, on the same port) and wait until it answers."""
        argv = [self._binary, "--port", str(self.port), "--bind", LOCALHOST, "--save", "",
                "--appendonly", "no", "--dir", str(self._workdir)]
        self._proc = spawn(argv, {}, self._workdir / "redis.log")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"redis-server not ready on port {self.port}")

    def pause(self) -> None:
        """SIGSTOP: the server holds connections but answers nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after a pause."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the data (kept in memory only) is gone."""
        if self._proc is not None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
            self._proc = None

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, sig)

