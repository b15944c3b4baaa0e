"""Work done in steps: a generator that yields between steps and returns its result.

Large replies and large imports are such generators, so that whoever drives one
decides what happens between steps: an asyncio caller gives the event loop a
turn (:func:`run_yielding`), so other callers are served meanwhile; a caller of
the functional core runs it to the end at once (:func:`run_now`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import TypeVar

__all__ = ["Steps", "run_now", "run_yielding"]

T = TypeVar("T")

Steps = Generator[None, None, T]
"""Work that yields between steps and returns its result."""


def run_now(steps: Steps[T]) -> T:
    """Run ``steps`` to the end without yielding; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def run_yielding(steps: Steps[T]) -> T:
    """Run ``steps`` to the end, giving the event loop a turn after each step; its
    result. Cancelled half way, the rest of the work is dropped."""
    try:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            await asyncio.sleep(0)
    finally:
        steps.close()
