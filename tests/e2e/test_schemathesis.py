"""schemathesis against GET /openapi.json of a live stack: no 5xx, no schema violation.

The stack (mock channel models, a funded key) runs on its own event loop in a thread,
because schemathesis calls the API synchronously. Each operation gets a bounded,
seeded run with valid data and, where there is input, with invalid data. Three cases in
four ask for a model the mock serves (the rest keep the drawn model id, mostly unknown
ones), so the whole path is fuzzed, not just 404s.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from edge.openapi.document import openapi_json
from tests.e2e.stack import Stack, start_stack

pytestmark = [pytest.mark.e2e]

SEED = 20240603
MAX_EXAMPLES = 25
CREDIT = 10**15  # $1,000,000: fuzzed requests must never run out
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
CONFIG = """
models:
  - {id: demo, max_output_tokens: 64, price: {prompt: 150, completion: 600}}
  - {id: demo-embed, price: {prompt: 20, completion: 0}}
  - id: demo-image
    price:
      images:
        "1024x1024": {standard: 40000000, hd: 80000000}
        "512x512": {standard: 18000000}
  - {id: demo-whisper, price: {audio_second: 100000}}
  - {id: demo-tts, price: {character: 15000}}
channels:
  - {name: mock, type: mock, models: [demo, demo-embed, demo-image, demo-whisper, demo-tts]}
"""
# The model the mock serves for each operation's path.
MODELS = {
    "/v1/chat/completions": "demo", "/v1/completions": "demo", "/v1/responses": "demo",
    "/v1/embeddings": "demo-embed", "/v1/images/generations": "demo-image",
    "/v1/images/edits": "demo-image", "/v1/audio/transcriptions": "demo-whisper",
    "/v1/audio/translations": "demo-whisper", "/v1/audio/speech": "demo-tts",
    "/v1/models/{model}": "demo",
}
T = TypeVar("T")
SERVED_MOSTLY = st.sampled_from([True, True, True, False])


def _operations() -> list[str]:
    document = orjson.loads(openapi_json())
    return [f"{method.upper()} {path}" for path, item in document["paths"].items()
            for method in item]


def _runs() -> list[Any]:
    """(operation, mode): valid data for every operation, and invalid data (every 4xx must
    be documented, never a 5xx) for those that take any input."""
    document = orjson.loads(openapi_json())
    runs = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            runs.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label} valid"))
            if operation.get("parameters") or operation.get("requestBody"):
                runs.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label} invalid"))
    return runs


@dataclass
class Live:
    """A stack running in a thread, the schema it serves, and a funded key."""

    base_url: str
    secret: str
    schema: Any
    session: requests.Session
    routes: set[tuple[str, str]]  # (method, path) of every route the edge serves


class _LoopThread:
    """An event loop running in a daemon thread; `run` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _start(tmp: Path) -> tuple[Stack, str]:
    config = tmp / "apirelay.yaml"
    config.write_text(CONFIG)
    stack = await start_stack(tmp / "home", config, {})
    account = await stack.account(CREDIT)
    _, secret = await stack.key(account)
    return stack, secret


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    thread = _LoopThread()
    stack, secret = thread.run(_start(tmp_path_factory.mktemp("schemathesis")))
    base_url = f"http://127.0.0.1:{stack.edge.port}"
    routes = {(route.method, route.resource.canonical) for route in stack.edge.app.router.routes()
              if route.resource is not None}
    try:
        with requests.Session() as session:
            schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
            yield Live(base_url, secret, schema, session, routes)
    finally:
        thread.run(stack.close())
        thread.stop()


def test_the_document_is_public_valid_and_complete(live: Live) -> None:
    reply = live.session.get(f"{live.base_url}/openapi.json", timeout=10)  # no key
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["openapi"].startswith("3.1")
    live.schema.validate()  # against the OpenAPI 3.1 meta-schema
    documented = {(label.split(" ", 1)[0], label.split(" ", 1)[1]) for label in _operations()}
    served = {(method, path) for method, path in live.routes
              if method not in ("HEAD", "*")}  # "*": the unsupported OpenAI families
    assert served == documented


def _aimed(case: Any, use_served_model: bool) -> Any:
    """The case, asking for a served model when told to; request ids and keys made unique."""
    model = MODELS.get(case.path)
    if use_served_model and model is not None:
        if isinstance(case.body, dict):
            case.body["model"] = model
        elif case.path_parameters and "model" in case.path_parameters:
            case.path_parameters["model"] = model
    headers = case.headers or {}
    for name in list(headers):
        # A reused Idempotency-Key with another body is a (documented) 422, and a reused
        # x-request-id is refused by billing; unique values keep the fuzzing on the real
        # path while the drawn characters still go through the edge's checks.
        if name.lower() in ("idempotency-key", "x-request-id"):
            headers[name] = f"{headers[name][:64]}-{uuid.uuid4().hex}"
    return case


@pytest.mark.parametrize(("label", "mode"), _runs())
def test_operation_conforms(live: Live, label: str, mode: GenerationMode) -> None:
    operation = live.schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"
    auth = {"Authorization": f"Bearer {live.secret}"}

    @seed(SEED)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode), use_served_model=SERVED_MOSTLY)
    def fuzz(case: Any, use_served_model: bool) -> None:
        case = _aimed(case, use_served_model)
        response = case.call(base_url=live.base_url, session=live.session, headers=auth,
                             timeout=30)
        case.validate_response(response, checks=CHECKS)

    fuzz()
