"""Nothing acknowledged is lost to ``kill -9``: a child process writes to a store on a
database with 100 tasks, reporting every acknowledged result; the test kills it at
random moments, over and over, and after every kill checks the database against
what was acknowledged."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from sessionactor import SessionStore

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 30
START_WITHIN = 30.0  # seconds for a child to open the database and start writing


@attrs.define
class Acknowledged:
    """The latest acknowledged state, by worker, over every generation so far.

    A worker's calls run one after another (see ``crash_child.py``), so after its
    last acknowledged call only the next one of its program can have been in
    flight when the child died: that one may or may not have been applied.
    """

    update: dict[int, tuple[int, float]] = attrs.Factory(dict)  # version, value of a
    batch: dict[int, tuple[int, float]] = attrs.Factory(dict)  # version, value of c and d
    b: dict[int, bool] = attrs.Factory(dict)
    tmp: dict[int, bool] = attrs.Factory(dict)
    last: dict[int, tuple[str, int]] = attrs.Factory(dict)  # each worker's last ack: op, step
    revision: int = 0  # the highest revision any acknowledged write got
    count: int = 0

    def take(self, record: dict[str, Any]) -> None:
        op = record["op"]
        assert op != "broken", "a refused update was acknowledged"
        self.count += 1
        if op == "start":
            assert record["revision"] > self.revision, "a revision was given out twice"
            self.last.clear()  # a new child: nothing of the old one is in flight any more
        elif op == "update":
            self.update[record["w"]] = (record["version"], record["value"])
        elif op == "batch":
            self.batch[record["w"]] = (record["version"], record["value"])
        elif op in ("b", "tmp"):
            getattr(self, op)[record["w"]] = record["present"]
        if "w" in record:
            self.last[record["w"]] = (op, record["step"])
        self.revision = max(self.revision, record.get("revision", 0))

    def may_be_in_flight(self, w: int, op: str) -> bool:
        """Whether worker ``w``'s next call after its last acknowledged one is ``op``."""
        last = self.last.get(w)
        if last is None:
            return False
        done, step = last
        if op == "b":
            return done == "batch" and step % 7 == 0
        return op == "tmp" and done in ("batch", "b") and step % 11 == 0


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def run_until_killed(
    path: Path,
    generation: int,
    acknowledged: Acknowledged,
    rng: random.Random,
    children: list[subprocess.Popen[bytes]],
) -> None:
    """One generation: start the child, let it write for a random moment, kill -9 it,
    and take every acknowledgement it got out before dying."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(generation)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    children.append(child)
    assert child.stdout is not None
    descriptor = child.stdout.fileno()
    os.set_blocking(descriptor, False)
    deadline = time.monotonic() + START_WITHIN
    kill_at: float | None = None
    pending = b""
    while True:
        with contextlib.suppress(BlockingIOError):  # nothing written since the last look
            pending += os.read(descriptor, 1 << 16)
        *lines, pending = pending.split(b"\n")
        for line in lines:
            record = json.loads(line)
            acknowledged.take(record)
            if record["op"] == "start":
                kill_at = time.monotonic() + rng.uniform(0.05, 0.6)
        now = time.monotonic()
        if kill_at is not None and now >= kill_at:
            break
        assert child.poll() is None, f"the child of generation {generation} ended by itself"
        assert now < deadline, f"the child of generation {generation} did not start"
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    os.set_blocking(descriptor, True)
    pending += child.stdout.read()  # what it wrote before the kill still counts
    for line in pending.split(b"\n"):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by the kill was never acknowledged
                continue
            acknowledged.take(record)


async def check(path: Path, acknowledged: Acknowledged) -> None:
    """The database opens cleanly and holds every acknowledged write (or a later one)."""
    async with SessionStore(database=path, synchronous="normal") as store:
        for w, (version, value) in acknowledged.update.items():
            a = await store.get_variable(f"w{w}", "a")
            assert a.version >= version, (w, a, version)
            assert a.version > version or a.value == value, (w, a, value)
            assert a.value != -1.0  # a refused update left no trace
        for w, (version, value) in acknowledged.batch.items():
            c = await store.get_variable(f"w{w}", "c")
            d = await store.get_variable(f"w{w}", "d")
            assert c.value == d.value, (w, c, d)  # an atomic batch is whole or absent
            assert c.version >= version and d.version >= version, (w, c, version)
            assert c.version > version or c.value == value, (w, c, value)
        for w, present in list(acknowledged.b.items()):
            found = await store.has_variable(f"w{w}", "b")
            if acknowledged.may_be_in_flight(w, "b"):
                acknowledged.b[w] = found  # the call in flight was applied, or not: now known
            else:
                assert found == present, ("b", w, present)
        for w, present in list(acknowledged.tmp.items()):
            found = await store.session_exists(f"w{w}-tmp")
            if acknowledged.may_be_in_flight(w, "tmp"):
                acknowledged.tmp[w] = found
            else:
                assert found == present, ("tmp", w, present)


async def test_nothing_acknowledged_is_lost_to_kill_9(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "crash.sqlite"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261201")))
    acknowledged = Acknowledged()
    for generation in range(1, KILLS + 1):
        before = acknowledged.count
        run_until_killed(path, generation, acknowledged, rng, children)
        assert acknowledged.count > before, f"generation {generation} acknowledged nothing"
        await check(path, acknowledged)
    # The last child's first revision proved revisions go on upwards after each kill;
    # a final start proves it once more after the last one.
    assert acknowledged.update and acknowledged.batch
