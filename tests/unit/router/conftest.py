"""Fixtures of the router unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.router.scripted import ScriptedUpstream, scripted_upstream


@pytest.fixture
async def up() -> AsyncIterator[ScriptedUpstream]:
    """A local upstream the test scripts, and a provider for it."""
    async with scripted_upstream() as script:
        yield script
