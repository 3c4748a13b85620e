"""One server interceptor for every service: request id, admin guard, error mapping.

Domain exceptions are mapped to gRPC status codes by the table each service passes in
(its `service.ERRORS`); an exception not in the table becomes INTERNAL with a generic
message, and its traceback goes to the log with the request id. It is one wrapper so
that the hot path pays for one layer, not three.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any

import grpc

from services.common.context import REQUEST_ID_HEADER, set_request_id

logger = logging.getLogger(__name__)

ErrorTable = Mapping[type[BaseException], grpc.StatusCode]
ADMIN_METADATA = "authorization"


class _Abort(Exception):
    """A status to end the call with, raised inside the wrapper."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id, guards admin methods, maps domain errors to status codes."""

    def __init__(
        self,
        errors: ErrorTable,
        admin_methods: Collection[str] = (),
        admin_key: str = "",
    ) -> None:
        self._errors = errors
        self._admin_methods = frozenset(admin_methods)
        self._admin_key = admin_key.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the unary-unary or unary-stream behaviour of the method's handler."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        request_id = str(metadata.get(REQUEST_ID_HEADER, "-"))
        needs_admin = handler_call_details.method in self._admin_methods
        authorization = str(metadata.get(ADMIN_METADATA, ""))
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, request_id, needs_admin, authorization),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, request_id, needs_admin, authorization),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _check_admin(self, authorization: str) -> None:
        if not self._admin_key:
            raise _Abort(grpc.StatusCode.PERMISSION_DENIED, "admin API is disabled")
        presented = authorization.removeprefix("Bearer ").strip().encode()
        if not hmac.compare_digest(presented, self._admin_key):
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "invalid admin key")

    def _status_for(self, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        if isinstance(exc, _Abort):
            return exc.code, exc.details
        for kind in type(exc).__mro__:
            code = self._errors.get(kind)
            if code is not None:
                return code, str(exc)
        logger.exception("unhandled error")
        return grpc.StatusCode.INTERNAL, "internal error"

    def _wrap_unary(
        self, behaviour: Any, request_id: str, needs_admin: bool, authorization: str
    ) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            # grpc.aio runs each call in its own task (its own context copy), so the id
            # needs no reset; resetting from a generator closed elsewhere would even fail.
            set_request_id(request_id)
            try:
                if needs_admin:
                    self._check_admin(authorization)
                return await behaviour(request, context)
            except Exception as exc:  # noqa: BLE001 - mapped by table, generic otherwise
                code, details = self._status_for(exc)
                await context.abort(code, details)

        return wrapper

    def _wrap_stream(
        self, behaviour: Any, request_id: str, needs_admin: bool, authorization: str
    ) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            set_request_id(request_id)
            try:
                if needs_admin:
                    self._check_admin(authorization)
                # aclosing: a cancelled call closes the servicer's generator (and whatever
                # upstream it holds) at once, not at garbage collection.
                async with contextlib.aclosing(behaviour(request, context)) as items:
                    async for item in items:
                        yield item
            except Exception as exc:  # noqa: BLE001 - mapped by table, generic otherwise
                code, details = self._status_for(exc)
                await context.abort(code, details)

        return wrapper
