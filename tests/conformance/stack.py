"""The one stack of the matrix: four fakes, channels of each provider type, a funded key."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import yaml
from aiohttp.test_utils import TestServer

from tests.conformance.cases import CASES, MODES, Case, Failure
from tests.conformance.vendors import (
    AnthropicVendor,
    AzureVendor,
    GeminiVendor,
    OpenAIVendor,
    ScriptedOpenAI,
    Vendor,
)
from tests.e2e.stack import Stack, start_stack
from tests.fakes import anthropic_fake, azure_fake, gemini_fake

CREDIT = 10**9  # $1
KEYS = {"CONFORMANCE_OPENAI_KEY": "sk-conformance-openai",
        "CONFORMANCE_AZURE_KEY": azure_fake.AZURE_KEY,
        "CONFORMANCE_ANTHROPIC_KEY": "sk-ant-conformance",
        "CONFORMANCE_GEMINI_KEY": gemini_fake.FAKE_KEY}
PRICE = {"prompt": 1, "completion": 1}
KEY_ENV = {"openai": "CONFORMANCE_OPENAI_KEY", "azure": "CONFORMANCE_AZURE_KEY",
           "anthropic": "CONFORMANCE_ANTHROPIC_KEY", "gemini": "CONFORMANCE_GEMINI_KEY"}
UPSTREAM_MODEL = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


def model_for(vendor: str, case: Case, mode: str) -> str:
    """The model a cell asks for: its vendor's, or an error cell's own.

    Each error cell has its own channel, so that the router's health state (a key
    disabled after a 401, cooled down after a 429, a breaker after 5xx) stays in it.
    """
    if isinstance(case.outcome, Failure):
        return f"conf-{vendor}-{case.outcome.status}-{mode}"
    return f"conf-{vendor}"


def _channel(vendor: str, model: str, base_url: str) -> dict[str, Any]:
    channel: dict[str, Any] = {"name": model, "type": vendor, "base_url": base_url,
                               "api_key_env": KEY_ENV[vendor], "models": [model]}
    if vendor == "azure":
        channel["deployments"] = {model: "conf-azure-deployment"}
    elif vendor in UPSTREAM_MODEL:
        channel["model_map"] = {model: UPSTREAM_MODEL[vendor]}
    return channel


def config(base_urls: dict[str, str]) -> str:
    """apirelay.yaml: a channel and a model for each vendor and for each error cell."""
    models: list[dict[str, Any]] = []
    channels: list[dict[str, Any]] = []
    for vendor, base_url in base_urls.items():
        names = {model_for(vendor, case, mode) for case in CASES for mode in MODES
                 if not case.skip_reason(vendor, mode)}
        for name in sorted(names):
            models.append({"id": name, "max_output_tokens": 256, "price": PRICE})
            channels.append(_channel(vendor, name, base_url))
    return yaml.safe_dump({"auto_channels": False, "models": models, "channels": channels})


@dataclass
class Matrix:
    """The running stack, its vendors by name, and one funded SDK client."""

    stack: Stack
    vendors: dict[str, Vendor]
    client: openai.AsyncOpenAI


@asynccontextmanager
async def open_matrix(tmp: Path) -> AsyncIterator[Matrix]:
    """Start the fakes and the stack (all services + edge on 127.0.0.1); close them after."""
    async with AsyncExitStack() as exits:
        # The router reads upstream keys from the process environment.
        saved = {name: os.environ.get(name) for name in KEYS}
        exits.callback(_restore, saved)
        os.environ.update(KEYS)
        openai_fake = ScriptedOpenAI()
        openai_server = TestServer(openai_fake.app(), host="127.0.0.1")
        await openai_server.start_server()
        exits.push_async_callback(openai_server.close)
        azure = await exits.enter_async_context(azure_fake.azure_fake())
        anthropic = await exits.enter_async_context(anthropic_fake.running(
            anthropic_fake.AnthropicFake(api_key=KEYS["CONFORMANCE_ANTHROPIC_KEY"])))
        gemini = await exits.enter_async_context(gemini_fake.gemini_fake())
        path = tmp / "apirelay.yaml"
        path.write_text(config({"openai": f"http://127.0.0.1:{openai_server.port}/v1",
                                "azure": azure.endpoint, "anthropic": anthropic.url,
                                "gemini": gemini.base_url}))
        stack = await start_stack(tmp / "home", path, {})
        exits.push_async_callback(stack.close)
        account = await stack.account(CREDIT)
        _, secret = await stack.key(account)
        client = openai.AsyncOpenAI(base_url=stack.base_url, api_key=secret, max_retries=0)
        exits.push_async_callback(client.close)
        vendors: list[Vendor] = [OpenAIVendor(openai_fake), AzureVendor(azure),
                                 AnthropicVendor(anthropic), GeminiVendor(gemini)]
        yield Matrix(stack, {v.name: v for v in vendors}, client)


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
