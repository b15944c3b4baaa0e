"""Defects found while hardening whose fix belongs in files being changed elsewhere.

Each test states the behaviour the issue asks for and fails until the change
described in its docstring is made (file, function, what). None is skipped:
they are meant to fail loudly until then.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest

from sessionactor import (
    InvalidArgument,
    InvalidImport,
    Limits,
    SessionStore,
)
from sessionactor._actor import Actor

SID = "s1"
PROMPT = 10.0


def queued(store: SessionStore) -> list[str]:
    actor = store._actor
    assert isinstance(actor, Actor)
    return [type(envelope[0]).__name__ for envelope in actor.mailbox._items]


# --------------------------------------------------------------------------
# Item 2: calls from another event loop


def test_a_call_from_another_loop_in_the_same_thread_is_refused_and_not_applied() -> None:
    """Needs store.py ``SessionStore._call`` (and ``_read_now``): compare the running
    loop, not the thread. Today the check is ``_thread_id() != self._loop_thread``,
    so a second loop in the store's own thread (a pytest-asyncio fixture of another
    loop scope, ``asyncio.run`` after ``loop.run_until_complete``) passes it: the
    command is queued and later applied, and the caller gets asyncio's "attached to a
    different loop". Record the loop at start (``self._running_loop = self._loop``,
    None once stopped) and refuse when ``asyncio._get_running_loop() is not
    self._running_loop`` (a C call, as cheap as ``get_ident``)."""
    store = SessionStore()
    home = asyncio.new_event_loop()

    async def start() -> None:
        await store.__aenter__()
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)

    async def call_from_another_loop() -> BaseException | None:
        try:
            await store.update_variable(SID, "x", 5)
        except BaseException as error:
            return error
        return None

    try:
        home.run_until_complete(asyncio.wait_for(start(), PROMPT))
        error = asyncio.run(asyncio.wait_for(call_from_another_loop(), PROMPT))
        assert queued(store) == [], "the call from another loop was queued"
        assert isinstance(error, RuntimeError)
        assert "BlockingSessionStore" in str(error), error
        value = home.run_until_complete(
            asyncio.wait_for(store.get_variable_value(SID, "x"), PROMPT)
        )
        assert value == 0, "the call from another loop was applied"
    finally:
        home.run_until_complete(store.aclose())
        home.close()


@pytest.mark.parametrize("form", ["watch_variables", "mirror"])
async def test_a_watch_from_another_thread_is_refused_without_touching_the_store(
    form: str,
) -> None:
    """Needs store.py ``SessionStore._subscribe``: check the caller's thread (loop)
    first, before the watcher is added to ``self._watchers``. Today it registers the
    watcher, then ``self._call`` refuses, and the ``except`` calls
    ``_forget_watcher`` from the foreign thread: it changes ``_watchers`` (a dict the
    actor iterates in ``_publish_changes``) and ``put_nowait``s an ``UnwatchSession``
    into the mailbox from that thread (not thread-safe; the loop is not woken)."""
    async with SessionStore() as store:
        await store.create_session(SID)
        outcome: list[BaseException] = []

        async def watch() -> None:
            try:
                if form == "mirror":
                    async with store.mirror(SID):
                        pass
                else:
                    async with store.watch_variables(SID):
                        pass
            except BaseException as error:
                outcome.append(error)

        thread = threading.Thread(target=asyncio.run, args=(watch(),))
        thread.start()
        thread.join(PROMPT)  # holds the store's loop: nothing queued can be handled
        assert not thread.is_alive()
        assert isinstance(outcome[0], RuntimeError)
        assert "BlockingSessionStore" in str(outcome[0])
        assert queued(store) == [], "the refused watch queued an unwatch from the foreign thread"
        assert store._watchers == {}
        with anyio.fail_after(PROMPT):
            await store.get_stats()


# --------------------------------------------------------------------------
# Item 5: what is deleted is freed, tables bounded by what is live


async def test_a_deleted_sessions_metadata_is_freed_with_it() -> None:
    """Needs state.py ``StoreState._remove_session``: also drop the record's
    ``metadata`` (``record.metadata = EMPTY_MAPPING``; and ``last_worker_id = None``).
    The record stays in ``_deadlines`` as a husk until its entry comes up or the heap
    is compacted (up to the session's ttl, an hour by default), and today it keeps the
    session's metadata (up to ``max_items`` entries) alive all that time."""
    async with SessionStore(cleanup_interval=None) as store:
        session = await store.create_session(SID, metadata={"big": list(range(10_000))})
        ref = weakref.ref(session.metadata)
        del session
        await store.delete_session(SID)
        await store.get_stats()
        gc.collect()
        assert ref() is None, "a deleted session's metadata is still held (by its heap husk)"


async def test_the_expiry_heap_stays_bounded_without_a_sweep() -> None:
    """Needs state.py: compact ``_deadlines`` where stale entries are made, not only in
    ``sweep()``. With ``cleanup_interval=None`` (or between sweeps, 60 s by default),
    sessions created and deleted leave one stale entry (and its husk record) each,
    without bound. In ``_schedule`` (after a push) and in ``_delete_session`` (after
    ``_remove_session``): ``if self._stale_entries > len(self._sessions) + 1024:
    self._compact_deadlines()`` (not inside ``_remove_session`` itself: ``sweep`` pops
    the heap through a local reference while it calls it)."""
    async with SessionStore(cleanup_interval=None) as store:
        state = store._state
        for index in range(3_000):
            await store.create_session(f"s{index}")
            await store.delete_session(f"s{index}")
        assert len(state._sessions) == 0
        assert len(state._deadlines) <= len(state._sessions) + 1024, len(state._deadlines)


# --------------------------------------------------------------------------
# Item 4: one call cannot occupy the actor (or the loop) for long


SMALL = Limits(max_items=6, max_string_length=5, max_depth=3)


async def longest_pause_during(store: SessionStore, call: Callable[[], Awaitable[object]]) -> float:
    """The longest time other callers waited for an answer while ``call`` ran."""
    longest = 0.0
    done = False

    async def probe() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await store.session_exists(SID)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    prober = asyncio.create_task(probe())
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        with anyio.fail_after(PROMPT):
            await call()
            for _ in range(5):
                await asyncio.sleep(0)
    finally:
        done = True
        await prober
    return longest


async def test_sharing_compiled_constraints_costs_what_they_hold_not_their_text() -> None:
    """Needs state.py ``StoreState._intern``: key the table by a structural, exact key
    instead of ``repr(compiled)``. ``repr`` costs the total length of every string in
    the spec: 200 copies of one 1,000,000-character string (a few kilobytes to pass,
    within every limit) build a 200 MB key in the actor (0.5 s here; 100,000 copies
    would need 100 GB). A key that tells ``1`` from ``1.0`` and ``0.0`` from ``-0.0``
    without repr: ``(type_name, _exact(compiled))`` where ``_exact`` maps a float to
    ``(float, value, math.copysign(1.0, value))``, any other scalar to
    ``(type(value), value)``, a tuple to a tuple of ``_exact`` items and a mapping to a
    tuple of ``(key, _exact(item))`` pairs; hashing it hashes each string once (str
    caches its hash), and equal keys compare strings with ``memcmp``."""
    async with SessionStore() as store:
        await store.create_session(SID)
        text = "x" * 1_000_000
        allowed = [text] * 200

        async def register() -> object:
            return await store.register_variable(
                SID, "c", "choice", text, constraints={"choices": allowed}
            )

        pause = await longest_pause_during(store, register)
        assert pause < 0.15, f"other callers waited {pause:.3f} s"


def test_a_string_pattern_cannot_hold_the_actor() -> None:
    """Needs a decision in types.py (``StringType``): a ``pattern`` constraint is a
    caller's regex that ``re`` runs in the actor on every write, with backtracking:
    ``^(a+)+$`` against 40 a's and a b takes hours, ``a*b`` against 1,000,000 a's
    (a value within the limits) is quadratic (minutes). Nothing bounds it today.
    Options: a linear-time engine (google-re2, a new dependency); refusing at
    registration the constructs that backtrack (nested or adjacent unbounded
    quantifiers, backreferences) via ``re._parser``; or bounding the length of values
    checked against a pattern and the pattern itself. The test accepts any of them:
    each hostile pattern is either refused when registered (``InvalidConstraint``) or
    a write against it is answered within a second. Run in a subprocess killed after
    5 s, since a backtracking regex cannot be interrupted."""
    script = """
import asyncio, time
from sessionactor import ConstraintViolation, InvalidConstraint, SessionStore

CASES = [
    ("^(a+)+$", "a", "a" * 40 + "b"),
    ("(x+x+)+y", "xxy", "x" * 40),
    ("a*b", "b", "a" * 1_000_000),
    ("^.*a.*a.*a.*b", "aaab", "a" * 20_000),
]

async def main():
    worst = 0.0
    async with SessionStore(call_timeout=None) as store:
        await store.create_session("s")
        for index, (pattern, good, hostile) in enumerate(CASES):
            name = f"v{index}"
            try:
                await store.register_variable(
                    "s", name, "string", good, constraints={"pattern": pattern}
                )
            except InvalidConstraint:
                continue
            started = time.perf_counter()
            try:
                await store.update_variable("s", name, hostile)
            except ConstraintViolation:
                pass
            worst = max(worst, time.perf_counter() - started)
    print(worst)

asyncio.run(main())
"""
    try:
        finished = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=5.0
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a write against a hostile pattern held the actor for more than 5 s")
    assert finished.returncode == 0, finished.stderr
    assert float(finished.stdout) < 1.0, f"a write took {float(finished.stdout):.2f} s"


async def test_get_variables_measures_its_identifiers() -> None:
    """Needs _api.py ``_tuple_of`` (used by ``get_variables``) and store.py
    ``SessionStore._subscribe`` (``watch_variables``' identifiers): materialize any
    iterable of identifiers into a tuple in the caller's task, and refuse more than
    ``limits.max_items`` of them with ``Refused(InvalidArgument(...))`` (the handler
    raises it as it does for other arguments). Today a list is copied but not
    measured (20,000,000 identifiers are looked up one by one in the actor), and any
    other iterable (a generator, a dict view) is passed as it is and iterated by the
    actor: the caller's code runs inside the actor's turn."""
    async with SessionStore(limits=SMALL) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        with pytest.raises(InvalidArgument, match="more than 6"):
            await store.get_variables(SID, ["x"] * 7)
        with pytest.raises(InvalidArgument, match="more than 6"):
            async with store.watch_variables(SID, ["x"] * 7):
                pass
        assert len((await store.get_variables(SID, ["x"] * 6)).found) == 1


async def test_identifiers_are_read_in_the_callers_task_not_the_actors() -> None:
    """See ``test_get_variables_measures_its_identifiers``: the same change."""
    async with SessionStore() as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        readers: list[object] = []

        def identifiers() -> Iterator[str]:
            readers.append(asyncio.current_task())
            yield "x"

        await store.get_variables(SID, identifiers())  # typed Iterable[str]: a generator is fine
        async with store.watch_variables(SID, identifiers()):  # type: ignore[arg-type]
            pass
        assert len(readers) == 2
        assert store._task not in readers, "the actor ran the caller's generator"


async def test_an_import_counts_every_item_of_the_whole_argument() -> None:
    """Needs _imports.py ``prepare_import``/``check_entries``: measure the import as
    one argument, as ``Limits`` documents (``max_items`` counts every element of
    every list, tuple and mapping of one argument): the entries, the keys of each,
    and every item of their values, constraints and metadata together, refusing with
    ``InvalidImport`` past ``max_items``. Today each value is measured on its own and
    only the number of entries is bounded, so an import within the limits may hold
    ``max_items`` entries of ``max_items`` items each; checking 100,000 small entries
    already holds the loop (the caller's task runs on it) for about 2.5 s."""
    async with SessionStore(limits=Limits(max_items=20)) as store:
        await store.create_session(SID)
        entries = [
            {"id": f"var_v{i}_{i}", "name": f"v{i}", "type": "embedding", "value": [0.0] * 10}
            for i in range(5)
        ]  # 5 entries + 5 * 4 keys + 50 numbers: 75 items
        with pytest.raises(InvalidImport):
            await store.import_variables(SID, entries)
        assert (await store.get_session(SID)).variable_count == 0


async def test_a_description_is_measured_like_every_string() -> None:
    """Needs _api.py ``register_variable``: measure ``description`` against
    ``limits.max_string_length`` at the call (``Refused(InvalidArgument(...))``); today
    a description of any length is stored in the variable's metadata."""
    async with SessionStore(limits=SMALL) as store:
        await store.create_session(SID)
        with pytest.raises(InvalidArgument, match="more than 5 characters"):
            await store.register_variable(SID, "x", "integer", 0, description="x" * 6)
        assert not await store.has_variable(SID, "x")


@pytest.mark.parametrize("target", ["session", "variable"])
async def test_merged_metadata_stays_within_the_limits(target: str) -> None:
    """Needs state.py ``_update_session`` and ``_updated``: the merge of the stored
    metadata with a caller's is bounded too. Each call's metadata is measured, but
    merging adds up: calls of ``max_items`` new keys each grow one session's (or
    variable's) metadata without end, and every later merge copies all of it in the
    actor (after 100 such calls, each update copies 10,000,000 entries). Give
    ``StoreState`` the store's ``Limits`` and refuse (``InvalidArgument``, nothing
    changed) a merge whose result holds more than ``max_items`` entries."""
    async with SessionStore(limits=Limits(max_items=10)) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        for round_ in range(2):
            metadata = {f"k{round_}_{i}": i for i in range(5)}
            if target == "session":
                await store.update_session(SID, metadata=metadata)
            else:
                await store.update_variable(SID, "x", round_, metadata)
        with pytest.raises(InvalidArgument):
            if target == "session":
                await store.update_session(SID, metadata={f"k9_{i}": i for i in range(5)})
            else:
                await store.update_variable(SID, "x", 9, {f"k9_{i}": i for i in range(5)})
