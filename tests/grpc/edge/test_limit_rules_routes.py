"""The `limits:` section at the edge: every rule of a request in one acquire, and its 429."""

from __future__ import annotations

from pathlib import Path

import pytest

from apirelay.ratelimit.v1 import ratelimit_pb2 as rl
from edge.app import create_app
from edge.config import Settings
from tests.grpc.edge.conftest import auth, open_edge
from tests.grpc.edge.messages import MODEL

CONFIG = f"""
limits:
  defaults: {{rpd: 1000, account: {{rpm: 500}}}}
  groups:
    default: {{account: {{rpd: 20000}}}}
  models:
    {MODEL}: {{rpm: 7, tpm: 5000}}
"""
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def entries(*pairs: tuple[str, str]) -> list[rl.DescriptorEntry]:
    return [rl.DescriptorEntry(key=k, value=v) for k, v in pairs]


async def test_key_account_and_model_rules_go_in_one_acquire(tmp_path: Path) -> None:
    path = tmp_path / "apirelay.yaml"
    path.write_text(CONFIG)
    async with open_edge(config_path=str(path)) as edge:
        response = await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())
        assert response.status == 200
        # The tightest of each family: the model's 7 RPM and 5000 TPM, not the key's.
        assert response.headers["x-ratelimit-limit-requests"] == "7"
        assert response.headers["x-ratelimit-remaining-requests"] == "6"
        assert response.headers["x-ratelimit-limit-tokens"] == "5000"
        (_, acquire), = edge.fakes.ratelimit.acquires
        key, account = ("key", "key_1"), ("account", "acct_1")
        assert [(list(r.descriptor.entries), r.kind, r.limit) for r in acquire.rules] == [
            (entries(key), rl.LIMIT_KIND_RPM, 60),
            (entries(key), rl.LIMIT_KIND_TPM, 100_000),
            (entries(key), rl.LIMIT_KIND_CONCURRENCY, 4),
            (entries(key), rl.LIMIT_KIND_RPD, 1000),
            (entries(account), rl.LIMIT_KIND_RPM, 500),
            (entries(account), rl.LIMIT_KIND_RPD, 20000),
            (entries(key, ("model", MODEL)), rl.LIMIT_KIND_RPM, 7),
            (entries(key, ("model", MODEL)), rl.LIMIT_KIND_TPM, 5000),
        ]
        assert not acquire.HasField("limits") or acquire.limits == rl.Limits()

        edge.fakes.ratelimit.deny_by = rl.LIMIT_KIND_RPD
        edge.fakes.ratelimit.reset_after_s = 4000.5
        denied = await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())
        assert denied.status == 429
        assert denied.headers["retry-after"] == "4001"
        error = (await denied.json())["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert "this API key on requests per day (RPD): Limit 1000" in error["message"]


def test_a_bad_limits_section_fails_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "apirelay.yaml"
    path.write_text("limits: {defaults: {rpm: -5}}\n")
    with pytest.raises(ValueError, match=r"limits.defaults.rpm"):
        create_app(Settings(config_path=str(path)))
