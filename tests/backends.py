"""Where the integration tests find Redis and PostgreSQL.

Order: an explicit URL from the environment (APIRELAY_TEST_REDIS_URL,
APIRELAY_TEST_POSTGRES_URL); else testcontainers when a Docker engine answers; else a
throwaway `redis-server` / `postgres` process on a free port in a temp dir. With CI set,
a backend that cannot be had is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REDIS_ENV = "APIRELAY_TEST_REDIS_URL"
POSTGRES_ENV = "APIRELAY_TEST_POSTGRES_URL"


class BackendUnavailable(RuntimeError):
    """No way to get the backend on this machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BackendUnavailable(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def docker_available() -> bool:
    """True when a Docker engine answers."""
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """Yield a Redis URL for the test session."""
    if url := os.environ.get(REDIS_ENV):
        yield url
        return
    if docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise BackendUnavailable(f"no {REDIS_ENV}, no Docker engine and no redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@contextlib.contextmanager
def postgres_server_url() -> Iterator[str]:
    """Yield a `postgresql+asyncpg://` URL of a server's maintenance database."""
    if url := os.environ.get(POSTGRES_ENV):
        yield url
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="asyncpg") as container:
            yield container.get_connection_url()
        return
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        raise BackendUnavailable(f"no {POSTGRES_ENV}, no Docker engine and no postgres binaries")
    yield from _throwaway_postgres(initdb, postgres)


def _throwaway_postgres(initdb: str, postgres: str) -> Iterator[str]:
    # PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
    as_user: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        if os.geteuid() == 0:
            as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(tmp, "postgres")
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        proc = subprocess.Popen(
            [*as_user, postgres, "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
             "-k", tmp, "-F"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port)
            time.sleep(0.3)
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        finally:
            proc.terminate()
            proc.wait(20)
