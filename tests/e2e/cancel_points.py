"""Cancel an edge request's handler task at its k-th await on a service client.

`CancelPoints.instrument` wraps the request-path calls of the edge's clients (limiter
acquire, billing reserve, the router's calls and each read of its streams) with a
counting proxy; `CancelPoints.middleware` (innermost, so it runs in the handler's task)
finds the request's Plan by the PLAN_HEADER header and makes it visible to those
proxies through a context variable (which the tasks the handler starts inherit, like
admission's parallel acquire and reserve). When the count reaches `cancel_at`, the
proxy cancels the handler task:
- BEFORE: as the await begins (the call may or may not reach the service);
- AFTER: once the call has answered, before the handler sees the answer (in the
  handler's own task the cancellation is delivered right there; a call made by a child
  task answers the child, and the handler is cancelled where it waits for it).
A plan with `cancel_at=None` only records the await points a request goes through.
Calls made by the Settler after the request (settle, release) are not counted.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from edge.clients import Clients

PLAN_HEADER = "x-test-cancel-plan"


class Phase(enum.Enum):
    """When, around the k-th await, the handler is cancelled."""

    BEFORE = "before"
    AFTER = "after"


@dataclass
class Plan:
    """One request's cancellation point, and what happened to it."""

    cancel_at: int | None
    phase: Phase = Phase.BEFORE
    points: list[str] = field(default_factory=list)  # the await points reached, in order
    task: asyncio.Task[Any] | None = None
    cancelled: bool = False  # the proxy cancelled the handler
    ended_cancelled: bool = False  # the handler ended with CancelledError
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def reach(self, name: str) -> bool:
        """Record an await point; True when the handler is to be cancelled at it."""
        self.points.append(name)
        return self.cancel_at is not None and len(self.points) == self.cancel_at

    def cancel_handler(self) -> None:
        """Cancel the request's handler task."""
        if self.task is not None:
            self.cancelled = True
            self.task.cancel()


_PLAN: ContextVar[Plan | None] = ContextVar("cancel_plan", default=None)


def _counted(name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def proxy(*args: Any, **kwargs: Any) -> Any:
        plan = _PLAN.get()
        if plan is None:
            return await call(*args, **kwargs)
        hit = plan.reach(name)
        if hit and plan.phase is Phase.BEFORE:
            plan.cancel_handler()
        answer = await call(*args, **kwargs)
        if hit and plan.phase is Phase.AFTER:
            plan.cancel_handler()
            if asyncio.current_task() is plan.task:
                # The cancellation lands on this very await, before the answer is returned.
                await asyncio.sleep(0)
        return answer

    return proxy


class _CountedStream:
    """A RouterStream whose reads are await points."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.read = _counted("router.read", stream.read)

    @property
    def finished(self) -> bool:
        return bool(self._stream.finished)

    def cancel(self) -> None:
        self._stream.cancel()


def _counted_start(name: str, start: Callable[..., Any]) -> Callable[..., Any]:
    """`start_acquire`, whose returned acquire (awaited later, by admission) is counted."""
    def proxy(*args: Any, **kwargs: Any) -> Any:
        lease_id, acquire = start(*args, **kwargs)

        async def awaited() -> Any:
            return await acquire

        return lease_id, _counted(name, awaited)()

    return proxy


def _counted_stream(open_stream: Callable[..., Any]) -> Callable[..., Any]:
    def proxy(*args: Any, **kwargs: Any) -> Any:
        return _CountedStream(open_stream(*args, **kwargs))

    return proxy


class CancelPoints:
    """The plans of the requests in flight, the middleware and the client proxies."""

    def __init__(self) -> None:
        self._plans: dict[str, Plan] = {}

    def plan(self, cancel_at: int | None, phase: Phase = Phase.BEFORE) -> tuple[str, Plan]:
        """A new plan and the PLAN_HEADER value that selects it."""
        plan_id = secrets.token_hex(8)
        plan = self._plans[plan_id] = Plan(cancel_at, phase)
        return plan_id, plan

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Bind the request's plan (if any) to its handler task."""
        plan = self._plans.pop(request.headers.get(PLAN_HEADER, ""), None)
        if plan is None:
            return await handler(request)
        plan.task = asyncio.current_task()
        token = _PLAN.set(plan)
        try:
            return await handler(request)
        except asyncio.CancelledError:
            plan.ended_cancelled = True
            raise
        finally:
            _PLAN.reset(token)
            plan.done.set()

    def instrument(self, clients: Clients) -> None:
        """Wrap the request-path calls of `clients` (the objects are patched in place)."""
        # Admission takes the limiter's acquire from start_acquire (the lease id with it).
        clients.ratelimit.start_acquire = _counted_start(  # type: ignore[method-assign]
            "RateLimitClient.acquire", clients.ratelimit.start_acquire)
        wraps = (
            (clients.billing, "reserve"),
            (clients.router, "create"), (clients.router, "relay"),
            (clients.router, "list_models"),
        )
        for client, method in wraps:
            name = f"{type(client).__name__}.{method}"
            setattr(client, method, _counted(name, getattr(client, method)))
        for method in ("stream", "stream_relay"):
            setattr(clients.router, method, _counted_stream(getattr(clients.router, method)))
