"""The one place the router serving new requests is swapped when channels change."""

from __future__ import annotations

from services.router.core import ModelRouter


class LiveRouter:
    """The ModelRouter new requests use; replaced whole when the channels change."""

    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    @property
    def current(self) -> ModelRouter:
        """The router to serve the next request with (keep it for the whole request)."""
        return self._router

    def swap(self, router: ModelRouter) -> None:
        """Serve new requests with `router`; the old one lives on while requests use it."""
        self._router = router
