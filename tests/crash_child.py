"""The child of the crash test: a store on a database, written by 100 tasks until it is
killed. Every acknowledged result goes to standard output at once, one JSON line each.

Run: ``python tests/crash_child.py DATABASE GENERATION``. Each worker ``w`` owns
session ``w<w>`` and repeats, step after step: update ``a``; update ``c`` and
``d`` together in an atomic batch (so they must always be equal); try an update
of ``a`` to -1, which its constraint refuses (so -1 must never appear); every
7th step register or delete ``b`` (in turns); every 11th step create or delete
the session ``w<w>-tmp`` (in turns). Values are ``generation * 1_000_000 +
step``, so every run writes new ones. One worker's steps run one after another,
so of its calls only the last can be in flight when the process dies.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from sessionactor import ConstraintViolation, SessionStore

WORKERS = 100


def ack(**record: Any) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def worker(store: SessionStore, w: int, generation: int) -> None:
    session = f"w{w}"
    await store.create_session(session)
    for name in ("a", "c", "d"):
        await store.register_variable(
            session, name, "float", 0.0, constraints={"min": 0.0}, exist_ok=True
        )
    step = 0
    while True:
        step += 1
        value = float(generation * 1_000_000 + step)
        updated = await store.update_variable(session, "a", value)
        ack(
            op="update",
            w=w,
            version=updated.version,
            value=value,
            revision=updated.revision,
            step=step,
        )
        batch = await store.update_variables(session, {"c": value, "d": value}, atomic=True)
        c = batch["c"]
        ack(op="batch", w=w, version=c.version, value=value, revision=c.revision, step=step)  # type: ignore[union-attr]
        try:
            await store.update_variable(session, "a", -1.0)
        except ConstraintViolation:
            pass
        else:  # pragma: no cover - the constraint refuses it
            ack(op="broken", w=w)
        if step % 7 == 0:
            if await store.has_variable(session, "b"):
                await store.delete_variable(session, "b")
                ack(op="b", w=w, present=False, step=step)
            else:
                await store.register_variable(session, "b", "integer", step)
                ack(op="b", w=w, present=True, step=step)
        if step % 11 == 0:
            tmp = f"{session}-tmp"
            if await store.session_exists(tmp):
                await store.delete_session(tmp)
                ack(op="tmp", w=w, present=False, step=step)
            else:
                await store.create_session(tmp)
                ack(op="tmp", w=w, present=True, step=step)


async def main(path: str, generation: int) -> None:
    async with SessionStore(database=path, synchronous="full", call_timeout=60) as store:
        await store.create_session("probe")
        probe = await store.register_variable("probe", "p", "integer", 0, exist_ok=True)
        first = await store.update_variable("probe", probe, generation)
        ack(op="start", revision=first.revision)
        await asyncio.gather(*(worker(store, w, generation) for w in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
