"""One replica of a chaos cluster: a child process that can be started, killed, restarted.

Children run in their own session (a signal to the test's terminal does not reach
them) and die with the test process even when it is SIGKILLed (Linux's
PR_SET_PDEATHSIG), so no replica outlives its test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 30.0


# Run first in the child: ask Linux to SIGKILL it when its parent dies (PR_SET_PDEATHSIG
# survives exec), give up if the parent is already gone, then become the real program.
# A preexec_fn could do the same, but it is unsafe in a process with threads (gRPC's).
_GUARD = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 9)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def guarded(argv: list[str]) -> list[str]:
    """`argv` run so that it dies with this process (as is off Linux)."""
    if sys.platform != "linux":
        return argv
    return [sys.executable, "-c", _GUARD, str(os.getpid()), *argv]


@dataclass
class Process:
    """One replica: how to start it, how to tell it is ready, and its current process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path = ROOT
    grpc_addr: str = ""  # ready when SERVING here
    http_ready: str = ""  # or when this URL answers 200
    popen: subprocess.Popen[bytes] | None = None
    _sink: IO[bytes] | None = None
    starts: int = 0

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen is not None and self.popen.poll() is None

    def spawn(self) -> None:
        """Start the process (appending to its log)."""
        self._sink = self.log.open("ab")
        self._sink.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
        self._sink.flush()
        self.popen = subprocess.Popen(guarded(self.argv), env=self.env, cwd=self.cwd,
                                      stdout=self._sink, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL, at once, and reap."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT_S)
        self._close_log()

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait for a graceful exit (SIGKILL after `timeout_s`); the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return self.popen.returncode

    def _close_log(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def tail(self, chars: int = 3000) -> str:
        """The end of the log, for failure messages."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def ready(self) -> bool:
        """True when the gRPC health check answers SERVING (or `http_ready` answers 200)."""
        if self.http_ready:
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=1.0) as client:
                    return (await client.get(self.http_ready)).status_code == 200
            return False
        async with grpc.aio.insecure_channel(self.grpc_addr) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        return False
