"""The BL-1 client side: run request plans through the edges with the official SDK.

Each plan is sent once (no SDK retries) with its own `x-request-id`; what the client got
back becomes an Observation for the oracle. Chaos steps (replica kills) fire when the
run reaches their share of started requests, so they land at the same point of every
run whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import openai

from tests.chaos.oracle import Observation, Seen
from tests.chaos.plan import ClientFault, RequestPlan

NANOS_PER_USD = Decimal(10**9)
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ChaosStep:
    """Something done to the cluster once `at` (a share of the requests) have started."""

    at: float
    name: str
    action: Callable[[], Coroutine[Any, Any, None]]


@dataclass
class RunStats:
    """What the run did, for the result line."""

    started: int = 0
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)
    last_start: float = 0.0  # time.monotonic() of the last request's start


class Workload:
    """Runs plans with `concurrency` workers over one SDK client per edge."""

    def __init__(self, edge_urls: Sequence[str], secrets: Sequence[str],
                 concurrency: int) -> None:
        self._clients = [
            openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                               timeout=REQUEST_TIMEOUT_S)
            for url in edge_urls
        ]
        self._secrets = secrets
        self._concurrency = concurrency
        self.stats = RunStats()

    async def run(self, plans: Sequence[RequestPlan],
                  steps: Sequence[ChaosStep] = ()) -> dict[str, Observation]:
        """Send every plan; return what the client saw per request id."""
        seen: dict[str, Observation] = {}
        queue = list(reversed(plans))
        pending = sorted(steps, key=lambda s: s.at)
        chaos: list[asyncio.Task[None]] = []
        began = time.monotonic()

        async def worker() -> None:
            while queue:
                plan = queue.pop()
                self.stats.started += 1
                self.stats.last_start = time.monotonic()
                while pending and self.stats.started >= pending[0].at * len(plans):
                    step = pending.pop(0)
                    self.stats.steps.append(f"{step.name}@{self.stats.started}")
                    chaos.append(asyncio.create_task(step.action()))
                seen[plan.request_id] = await self.one(plan)

        await asyncio.gather(*(worker() for _ in range(self._concurrency)))
        await asyncio.gather(*chaos)
        self.stats.seconds = time.monotonic() - began
        return seen

    async def one(self, plan: RequestPlan) -> Observation:
        """Send one plan and observe its end."""
        client = self._clients[plan.edge].with_options(api_key=self._secrets[plan.account])
        body: dict[str, Any] = {
            "model": plan.model, "max_tokens": plan.max_tokens,
            "messages": [{"role": "user", "content": plan.prompt}],
            "extra_headers": {"x-request-id": plan.request_id},
        }
        rid = plan.request_id
        try:
            if not plan.stream:
                answer = await client.chat.completions.create(**body)
                text = answer.choices[0].message.content or ""
                return Observation(rid, Seen.OK, 200, text=text, shown_cost=_cost(answer.usage))
            stream = await client.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True})
        except openai.APIStatusError as exc:
            return Observation(rid, Seen.HTTP_ERROR, exc.status_code, _code(exc.body))
        except openai.APIError as exc:
            return Observation(rid, Seen.TRANSPORT_ERROR, 0, type(exc).__name__)
        return await _read(rid, plan, stream)


async def _read(rid: str, plan: RequestPlan, stream: Any) -> Observation:
    chunks, texts, cost, finished = 0, [], None, False
    disconnect = plan.client_fault is ClientFault.DISCONNECT
    try:
        if disconnect and plan.disconnect_after == 0:
            await stream.close()
            return Observation(rid, Seen.DISCONNECTED, 200, chunks=0)
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    chunks += 1
                    texts.append(choice.delta.content)
                finished = finished or bool(choice.finish_reason)
            if chunk.usage is not None:
                cost = _cost(chunk.usage)
            if disconnect and chunks >= plan.disconnect_after:
                await stream.close()
                return Observation(rid, Seen.DISCONNECTED, 200, chunks=chunks,
                                   text="".join(texts))
    except openai.APIConnectionError as exc:
        return Observation(rid, Seen.TRANSPORT_ERROR, 200, type(exc).__name__, chunks,
                           "".join(texts))
    except openai.APIError as exc:
        return Observation(rid, Seen.STREAM_ERROR, 200, _code(exc.body), chunks, "".join(texts))
    seen = Seen.OK if finished else Seen.TRANSPORT_ERROR
    return Observation(rid, seen, 200, "", chunks, "".join(texts), cost)


def _cost(usage: Any) -> int | None:
    """`usage.cost` (a JSON number of USD with 9 decimals) in nano-USD, exactly."""
    extra = getattr(usage, "model_extra", None) or {}
    if "cost" not in extra:
        return None
    return int(Decimal(str(extra["cost"])) * NANOS_PER_USD)


def _code(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("code") or error.get("type") or "")
    return ""
