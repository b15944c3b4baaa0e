"""Shared test helpers. Stable names: ``store``, ``session_id``, ``FakeClock``, ``clock_store``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sessionactor import SessionStore
from sessionactor.testing import FakeClock

__all__ = ["FakeClock"]


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    """A running store with default options, stopped after the test."""
    async with SessionStore() as running:
        yield running


@pytest.fixture
async def session_id(store: SessionStore) -> str:
    """The id of a fresh session in ``store``."""
    await store.create_session("test_session")
    return "test_session"


@pytest.fixture
async def clock_store() -> AsyncIterator[tuple[SessionStore, FakeClock]]:
    """A running store whose monotonic clock is a :class:`FakeClock`."""
    clock = FakeClock()
    async with SessionStore(clock=clock) as running:
        yield running, clock
