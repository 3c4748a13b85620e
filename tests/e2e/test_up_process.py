"""`apirelay up` and the admin CLI as a new user runs them, driven by the openai client."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from services.common.money import usd_to_nanos
from tests.backends import free_port

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
PROMPT_PRICE, COMPLETION_PRICE = 150, 600  # the demo model in apirelay.yaml


@dataclass
class Gateway:
    """A running `apirelay up` and what a user needs to talk to it."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    base_url: str
    home: Path
    log: Path

    def cli(self, *args: str) -> str:
        """Run `apirelay ARGS`, fail the test on a non-zero exit, return stdout."""
        done = subprocess.run([str(BIN / "apirelay"), *args], env=self.env, capture_output=True,
                              text=True, timeout=30, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout


def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found[int(entry.name)] = cmd
    return found


def _start(tmp: Path) -> Gateway:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_SERVICE_ADDR", "_LISTEN_ADDR"))}
    env.pop("APIRELAY_ADMIN_KEY", None)
    env.update({"APIRELAY_HOME": str(tmp / "home"), "APIRELAY_PORT": str(port),
                "APIRELAY_CONFIG": str(ROOT / "apirelay.yaml")})
    for name in ("AUTH", "RATELIMIT", "ROUTER", "BILLING"):
        env[f"{name}_LISTEN_ADDR"] = f"127.0.0.1:{free_port()}"
    log = tmp / "up.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(BIN / "apirelay"), "up"], env=env, cwd=ROOT,
                                   stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "apirelay is up" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("apirelay up did not start:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.1)
    return Gateway(process, env, f"http://127.0.0.1:{port}/v1", tmp / "home", log)


def _stop(gateway: Gateway) -> int:
    if gateway.process.poll() is None:
        gateway.process.send_signal(signal.SIGTERM)
    try:
        return gateway.process.wait(60)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        raise


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    started = _start(tmp_path_factory.mktemp("up"))
    try:
        yield started
    finally:
        _stop(started)


def _balance_nanos(gateway: Gateway, name: str) -> int:
    line = gateway.cli("balance", name).strip()
    return usd_to_nanos(line.split("balance ", 1)[1].split(" USD", 1)[0])


async def _wait_balance(gateway: Gateway, name: str, expected: int) -> int:
    """Settlement runs after the response; wait briefly for it."""
    seen = -1
    for _ in range(50):
        seen = _balance_nanos(gateway, name)
        if seen == expected:
            break
        await asyncio.sleep(0.1)
    return seen


def test_admin_key_file_is_private(gateway: Gateway) -> None:
    mode = stat.S_IMODE((gateway.home / "admin_key").stat().st_mode)
    assert mode == 0o600


async def test_user_journey_bills_exactly_price_times_usage(gateway: Gateway) -> None:
    name = f"acme{os.getpid()}"
    gateway.cli("accounts", "create", name, "--credit", "5")
    secret = gateway.cli("keys", "create", "--account", name).strip().splitlines()[-1]
    assert secret.startswith("sk-")
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=secret, max_retries=0)

    models = [m.id async for m in client.models.list()]
    assert "demo" in models

    reply = await client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Say hello"}])
    assert reply.choices[0].message.content and reply.usage is not None
    cost = reply.usage.prompt_tokens * PROMPT_PRICE + reply.usage.completion_tokens * COMPLETION_PRICE

    text, usage = "", None
    stream = await client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Stream please"}], stream=True,
        stream_options={"include_usage": True})
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert text and usage is not None
    cost += usage.prompt_tokens * PROMPT_PRICE + usage.completion_tokens * COMPLETION_PRICE

    assert await _wait_balance(gateway, name, 5_000_000_000 - cost) == 5_000_000_000 - cost
    await client.close()


async def test_wrong_key_is_401(gateway: Gateway) -> None:
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    await client.close()


def test_topup_adds_exactly(gateway: Gateway) -> None:
    name = f"topup{os.getpid()}"
    gateway.cli("accounts", "create", name)
    gateway.cli("topup", name, "1.000000001")
    assert _balance_nanos(gateway, name) == 1_000_000_001


def test_sigterm_stops_every_child(tmp_path: Path) -> None:
    started = _start(tmp_path)
    children = _children(started.process.pid)
    assert len(children) == 5, children
    assert _stop(started) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_dead_child_is_named_and_up_exits_non_zero(tmp_path: Path) -> None:
    started = _start(tmp_path)
    billing = next(pid for pid, cmd in _children(started.process.pid).items()
                   if "services.billing" in cmd)
    os.kill(billing, signal.SIGKILL)
    assert started.process.wait(60) != 0
    assert "billing exited" in started.log.read_text()
