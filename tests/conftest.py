"""Shared test helpers. Stable names: ``store``, ``session_id``, ``FakeClock``, ``clock_store``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from sessionactor import SessionStore
from sessionactor.testing import FakeClock

__all__ = ["FakeClock"]

# Locally every run explores new examples. CI replays a fixed set, so a submission
# never fails on an example nobody has seen; the machines are shared, hence no
# deadline and no too-slow check.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


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
