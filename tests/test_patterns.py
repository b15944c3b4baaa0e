"""Glob patterns through every call that takes one: linear matching, a size cap.

``tests/test_glob.py`` proves the matcher on its own. Here the same hostile
patterns go through the store: ``list_variables`` (and its ``_nowait`` form)
over a session of long names, ``watch_variables(pattern=...)`` and ``mirror``
whose filter runs on every committed change, and the same calls through
``BlockingSessionStore``, a ``RemoteSessionStore`` and the functional core.
Each is bounded in time, and a pattern longer than ``MAX_PATTERN_LENGTH`` (or not
a ``str``) is refused with ``InvalidArgument`` by every one of them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sessionactor import (
    BlockingSessionStore,
    InvalidArgument,
    RemoteSessionStore,
    SessionServer,
    SessionStore,
    connect,
)
from sessionactor._glob import MAX_PATTERN_LENGTH, _compile
from sessionactor.messages import CreateSession, ListVariables, RegisterVariable, WatchSession
from sessionactor.state import StoreState

SID = "s1"
PROMPT = 10.0
# 120 names of 128 characters: all a's, or a's with one b somewhere.
NAMES = ["a" * 128] + ["a" * position + "b" + "a" * (127 - position) for position in range(119)]
# With a backtracking translation (``*`` as ``.*``) most of these take years on NAMES;
# the last two are as long as a pattern may be.
HOSTILE = [
    "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*ac",
    "*" + "a*" * 400 + "c",
    "*" + "?*" * 300 + "c",
    "a" * 60 + "*" + "a" * 60 + "*c",
    "*" + "a?" * 200 + "*c",
    "*" * MAX_PATTERN_LENGTH,
    "*a" * (MAX_PATTERN_LENGTH // 2),
]
# A backtracking matcher needs about a second for this one over NAMES (where the
# patterns above would take it years): each hostile test lists it first, so that
# such a matcher fails the test quickly instead of hanging it.
CANARY = "*a*a*a*c"
TOO_LONG = "a" * (MAX_PATTERN_LENGTH + 1)
NOT_PATTERNS: list[object] = [5, b"a*", ["a*"], TOO_LONG, "*" * (MAX_PATTERN_LENGTH + 1)]


def reference(pattern: str, name: str) -> bool:
    """The glob rule for bracket-free patterns: ``fnmatchcase`` (backtracking, but fine
    for the tame patterns it checks)."""
    return fnmatch.fnmatchcase(name, pattern)


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with SessionStore() as running:
        await running.create_session(SID)
        for name in NAMES:
            await running.register_variable(SID, name, "integer", 0)
        yield running


def assert_linear(list_names: Callable[[str], list[str]]) -> None:
    started = time.process_time()
    for _ in range(3):
        assert list_names(CANARY) == []
    assert time.process_time() - started < 0.5, "glob matching backtracks"


async def test_hostile_patterns_list_long_names_in_bounded_time(store: SessionStore) -> None:
    assert_linear(lambda pattern: [v.name for v in store.list_variables_nowait(SID, pattern)])
    started = time.process_time()
    with anyio.fail_after(PROMPT):
        for pattern in HOSTILE:
            listed = await store.list_variables(SID, pattern)
            assert [v.name for v in listed] == [n for n in NAMES if pattern == "*" * len(pattern)]
            assert [v.name for v in store.list_variables_nowait(SID, pattern)] == [
                v.name for v in listed
            ]
    # 7 patterns over 120 names of 128 characters, twice; a backtracking matcher needs
    # longer than this for a single name.
    assert time.process_time() - started < 3.0


async def test_a_hostile_watch_filter_costs_each_change_little(store: SessionStore) -> None:
    """The filter runs for every change of the session, on the loop: 7 hostile watches
    see 120 updates each (and nothing matches but for the all-stars pattern)."""
    assert_linear(lambda pattern: [v.name for v in store.list_variables_nowait(SID, pattern)])
    with anyio.fail_after(PROMPT):
        async with contextlib.AsyncExitStack() as stack:
            watches = [
                await stack.enter_async_context(
                    store.watch_variables(SID, pattern=pattern, include_initial=False)
                )
                for pattern in HOSTILE
            ]
            started = time.process_time()
            for name in NAMES:
                await store.update_variable(SID, name, 1)
            await store.update_variables(SID, dict.fromkeys(NAMES, 2))
            elapsed = time.process_time() - started
            assert elapsed < 3.0
            stars = HOSTILE.index("*" * MAX_PATTERN_LENGTH)
            seen = [change.name async for change in _take(watches[stars], 2 * len(NAMES))]
            assert seen == NAMES + NAMES


async def _take(changes: AsyncIterator[Any], count: int) -> AsyncIterator[Any]:
    for _ in range(count):
        yield await anext(changes)


async def test_a_hostile_pattern_in_a_mirror_is_bounded(store: SessionStore) -> None:
    assert_linear(lambda pattern: [v.name for v in store.list_variables_nowait(SID, pattern)])
    with anyio.fail_after(PROMPT):
        async with store.mirror(SID, pattern=HOSTILE[0]) as mirror:
            started = time.process_time()
            for name in NAMES[:40]:
                await store.update_variable(SID, name, 3)
            assert time.process_time() - started < 2.0
            assert dict(mirror) == {}


async def test_patterns_match_the_glob_rule_through_the_store(store: SessionStore) -> None:
    for pattern in ["a*b*", "*b", "a?*", "*ab?a*", "a" * 128, "*b" + "a" * 100, "?" * 128]:
        listed = [v.name for v in await store.list_variables(SID, pattern)]
        assert listed == [name for name in NAMES if reference(pattern, name)], pattern


# --------------------------------------------------------------------------
# The size cap (and the type) through every call that takes a pattern


AsyncPatternCall = Callable[[SessionStore | RemoteSessionStore, object], Awaitable[object]]


async def _list(store: SessionStore | RemoteSessionStore, pattern: object) -> object:
    return await store.list_variables(SID, pattern)  # type: ignore[arg-type]


async def _watch(store: SessionStore | RemoteSessionStore, pattern: object) -> object:
    async with store.watch_variables(SID, pattern=pattern) as changes:  # type: ignore[arg-type]
        return changes


async def _mirror(store: SessionStore | RemoteSessionStore, pattern: object) -> object:
    async with store.mirror(SID, pattern=pattern) as mirror:  # type: ignore[arg-type]
        return dict(mirror)


ASYNC_CALLS: dict[str, AsyncPatternCall] = {
    "list_variables": _list,
    "watch_variables": _watch,
    "mirror": _mirror,
}


@pytest.mark.parametrize("bad", NOT_PATTERNS, ids=lambda bad: type(bad).__name__)
@pytest.mark.parametrize("call", list(ASYNC_CALLS))
async def test_every_async_call_refuses_a_bad_pattern(
    store: SessionStore, call: str, bad: object
) -> None:
    with anyio.fail_after(PROMPT), pytest.raises(InvalidArgument, match="pattern"):
        await ASYNC_CALLS[call](store, bad)
    await ASYNC_CALLS[call](store, "*" * MAX_PATTERN_LENGTH)  # the longest one allowed
    assert store._watchers == {}


@pytest.mark.parametrize("bad", NOT_PATTERNS, ids=lambda bad: type(bad).__name__)
async def test_list_variables_nowait_refuses_a_bad_pattern(
    store: SessionStore, bad: object
) -> None:
    with pytest.raises(InvalidArgument, match="pattern"):
        store.list_variables_nowait(SID, bad)  # type: ignore[arg-type]


@pytest.fixture
def blocking() -> Iterator[BlockingSessionStore]:
    with BlockingSessionStore() as running:
        running.create_session(SID)
        for name in NAMES:
            running.register_variable(SID, name, "integer", 0)
        yield running


def test_blocking_calls_refuse_a_bad_pattern(blocking: BlockingSessionStore) -> None:
    for bad in NOT_PATTERNS:
        with pytest.raises(InvalidArgument, match="pattern"):
            blocking.list_variables(SID, bad)  # type: ignore[arg-type]
        with (
            pytest.raises(InvalidArgument, match="pattern"),
            blocking.watch_variables(SID, pattern=bad),  # type: ignore[arg-type]
        ):
            pass
    assert_linear(lambda pattern: [v.name for v in blocking.list_variables(SID, pattern)])
    started = time.process_time()
    for pattern in HOSTILE:
        listed = blocking.list_variables(SID, pattern)
        assert len(listed) == (len(NAMES) if pattern.strip("*") == "" else 0)
    assert time.process_time() - started < 2.0


async def test_a_remote_store_refuses_a_bad_pattern(store: SessionStore, tmp_path: Path) -> None:
    assert_linear(lambda pattern: [v.name for v in store.list_variables_nowait(SID, pattern)])
    address = f"unix:{tmp_path / 'store.sock'}"
    with anyio.fail_after(PROMPT):
        async with SessionServer(store, listen=address), connect(address) as remote:
            for bad in NOT_PATTERNS:
                for call in ASYNC_CALLS.values():
                    with pytest.raises(InvalidArgument, match="pattern"):
                        await call(remote, bad)
            for pattern in HOSTILE:
                listed = await remote.list_variables(SID, pattern)
                assert len(listed) == (len(NAMES) if pattern.strip("*") == "" else 0)


@pytest.mark.parametrize("bad", NOT_PATTERNS, ids=lambda bad: type(bad).__name__)
def test_the_core_refuses_a_bad_pattern(bad: object) -> None:
    state = StoreState()
    state.handle(CreateSession(SID))
    state.handle(RegisterVariable(SID, "a" * 128, "integer", 0))
    with pytest.raises(InvalidArgument, match="pattern"):
        state.handle(ListVariables(SID, bad))
    with pytest.raises(InvalidArgument, match="pattern"):
        state.handle(WatchSession(SID, 1, None, bad))
    assert state.watched == {}


def test_compiled_patterns_are_cached_within_a_bound() -> None:
    for index in range(2_000):
        _compile(f"*{index}*")
    assert _compile.cache_info().currsize <= 256
