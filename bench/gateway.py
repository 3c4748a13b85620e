"""The gateway under test: the real `apirelay up`, started as a user would, with a bench key."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.procs import LOCALHOST, BenchError, free_port, spawn, stop, wait_ready
from services.common.gateway_config import load_gateway_config

MODEL = "bench"
ACCOUNT = "bench"
CREDIT_USD = "1000000"
UPSTREAM_KEY_ENV = "BENCH_UPSTREAM_KEY"
READY_TIMEOUT_S = 90.0
CLI_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0
# Inherited settings with these prefixes could point the stack at other stores or ports;
# the bench runs the embedded defaults only.
_OWN_PREFIXES = ("APIRELAY_", "AUTH_", "RATELIMIT_", "ROUTER_", "BILLING_", "EDGE_")

CONFIG_TEMPLATE = """\
# Written by the benchmark: one model served by the mock upstream.
models:
  - id: {model}
    owned_by: bench
    max_output_tokens: 1024
    price: {{prompt: 150, completion: 600}}
channels:
  - name: bench-upstream
    type: openai
    base_url: {upstream_base}
    api_key_env: {key_env}
    models: [{model}]
groups:
  default: 10000
"""


@dataclass(frozen=True, slots=True)
class GatewayEndpoint:
    """Where the running gateway answers and the API key to use."""

    base_url: str
    api_key: str
    log_path: Path
    pid: int


def find_launcher() -> tuple[str, ...]:
    """The `apirelay` script next to this Python, else `python -m cli.main` from the source tree."""
    local = Path(sys.executable).parent / "apirelay"
    if local.exists():
        return (str(local),)
    if importlib.util.find_spec("cli.main") is not None:
        return (sys.executable, "-m", "cli.main")
    found = shutil.which("apirelay")
    if found is None:
        raise BenchError("the `apirelay` launcher is not installed (pip install -e .)")
    return (found,)


def write_config(workdir: Path, upstream_base: str) -> Path:
    """Write and validate the apirelay.yaml the stack under test reads."""
    path = workdir / "apirelay.yaml"
    text = CONFIG_TEMPLATE.format(model=MODEL, upstream_base=upstream_base, key_env=UPSTREAM_KEY_ENV)
    path.write_text(text, encoding="utf-8")
    load_gateway_config(path)
    return path


def gateway_env(workdir: Path, config: Path, edge_port: int) -> dict[str, str]:
    """The environment of the stack: temp data dir, free ports, admin and upstream keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(
        APIRELAY_HOME=str(workdir / "home"),
        APIRELAY_CONFIG=str(config),
        APIRELAY_PORT=str(edge_port),
        APIRELAY_ADMIN_KEY=secrets.token_urlsafe(24),
        AUTH_LISTEN_ADDR=f"{LOCALHOST}:{free_port()}",
        RATELIMIT_LISTEN_ADDR=f"{LOCALHOST}:{free_port()}",
        ROUTER_LISTEN_ADDR=f"{LOCALHOST}:{free_port()}",
        BILLING_LISTEN_ADDR=f"{LOCALHOST}:{free_port()}",
    )
    env[UPSTREAM_KEY_ENV] = "sk-bench-upstream"
    return env


def _cli(launcher: tuple[str, ...], env: Mapping[str, str], *args: str) -> str:
    try:
        done = subprocess.run(
            [*launcher, *args], env=dict(env), capture_output=True, text=True,
            timeout=CLI_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"`apirelay {' '.join(args[:2])}` timed out") from exc
    if done.returncode != 0:
        raise BenchError(f"`apirelay {' '.join(args[:2])}` failed ({done.returncode}): "
                         f"{done.stderr.strip()[-500:]}")
    return done.stdout


BENCH_RPM, BENCH_TPM, BENCH_CONCURRENCY = "10000000", "10000000000", "100000"


def create_api_key(launcher: tuple[str, ...], env: Mapping[str, str]) -> str:
    """Create the bench account with ample credit and return a new key's secret."""
    _cli(launcher, env, "accounts", "create", ACCOUNT, "--credit", CREDIT_USD)
    # Limits far above what the bench sends, so the limiter is on the path but never denies.
    lines = _cli(launcher, env, "keys", "create", "--account", ACCOUNT, "--rpm", BENCH_RPM,
                 "--tpm", BENCH_TPM, "--concurrency", BENCH_CONCURRENCY).strip().splitlines()
    if not lines or not lines[-1].strip():
        raise BenchError("`apirelay keys create` printed no key")
    return lines[-1].strip()


@contextmanager
def running_gateway(upstream_base: str, workdir: Path, log_path: Path) -> Iterator[GatewayEndpoint]:
    """Start `apirelay up` against the mock upstream; stop it (and its children) on exit."""
    launcher = find_launcher()
    config = write_config(workdir, upstream_base)
    edge_port = free_port()
    env = gateway_env(workdir, config, edge_port)
    base_url = f"http://{LOCALHOST}:{edge_port}"
    proc = spawn([*launcher, "up"], env, log_path)
    try:
        wait_ready(f"{base_url}/readyz", proc, READY_TIMEOUT_S, log_path)
        yield GatewayEndpoint(base_url, create_api_key(launcher, env), log_path, proc.pid)
    finally:
        stop(proc, STOP_GRACE_S)
