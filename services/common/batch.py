"""Batch RPCs: each item gets the status its single-item RPC would have failed with.

A batch call answers OK with one result per item; an item whose single call would have
failed carries that call's gRPC code and message instead of a response. The mapping is
the service's own `ERRORS` table, exactly as `ServiceInterceptor` applies it to single
calls: a mapped domain exception keeps its (safe) message, anything else becomes
INTERNAL with a generic message and its traceback goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from services.common.interceptor import ErrorTable

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one item of a batch was not processed: a gRPC code number and a safe message."""

    code: int
    message: str


def item_error(exc: BaseException, errors: ErrorTable) -> ItemError:
    """The status a single-item RPC would have failed with on `exc`."""
    for kind in type(exc).__mro__:
        code = errors.get(kind)
        if code is not None:
            return ItemError(code.value[0], str(exc))
    logger.error("unhandled error in a batch item", exc_info=exc)
    return ItemError(grpc.StatusCode.INTERNAL.value[0], "internal error")


async def process_items(
    items: Iterable[Item],
    handle: Callable[[Item], Awaitable[Result]],
    errors: ErrorTable,
    fatal: tuple[type[BaseException], ...] = (),
) -> list[Result | ItemError]:
    """Run `handle` on each item in order; an exception of `fatal` fails the whole batch."""
    results: list[Result | ItemError] = []
    for item in items:
        try:
            results.append(await handle(item))
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped by table, generic otherwise
            results.append(item_error(exc, errors))
    return results
