"""A store that keeps its state in SQLite: killed with SIGKILL, it comes back.

A child process counts up a variable as fast as it can and reports every
acknowledged step; the parent kills it mid-stride with ``kill -9``, opens the
same database in a new store, and finds every acknowledged step there. Then it
takes an online backup and a JSON export of the whole store.

Run: ``python examples/durable.py``
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sessionactor import SessionStore


async def count_forever(path: str) -> None:
    """The child: every acknowledged update is durable before its reply comes."""
    async with SessionStore(database=path, synchronous="full") as store:
        await store.create_session("optimizer", metadata={"run": "demo"})
        await store.register_variable("optimizer", "step", "integer", 0, exist_ok=True)
        step = int(await store.get_variable_value("optimizer", "step", 0))
        while True:
            step += 1
            await store.update_variable("optimizer", "step", step)
            print(step, flush=True)  # acknowledged: the parent may count on it


async def come_back(path: str, acknowledged: int, workdir: Path) -> None:
    async with SessionStore(database=path) as store:
        step = int(await store.get_variable_value("optimizer", "step", 0))
        print(f"after kill -9: step {step} (the child had acknowledged {acknowledged})")
        assert step >= acknowledged, "an acknowledged write was lost"
        session = await store.get_session("optimizer")
        print(f"session metadata came back too: {dict(session.metadata)}")
        await store.backup(workdir / "backup.sqlite")  # consistent, while serving
        exported = await store.export_store()
        text = json.dumps(exported, allow_nan=False)
        print(f"backup written; the JSON export holds {len(exported['sessions'])} session(s)")
    async with SessionStore() as elsewhere:  # the export loads into any store
        await elsewhere.import_store(json.loads(text))
        print(f"imported elsewhere: step {await elsewhere.get_variable_value('optimizer', 'step')}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        asyncio.run(count_forever(sys.argv[2]))
        return
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        path = str(workdir / "store.sqlite")
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", path], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        acknowledged = 0
        started = time.monotonic()
        for line in child.stdout:  # read acknowledgements for half a second
            acknowledged = int(line)
            if time.monotonic() - started > 0.5 and acknowledged > 100:
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        for line in child.stdout:  # what it acknowledged before it died still counts
            acknowledged = int(line) if line.strip().isdigit() else acknowledged
        child.stdout.close()
        print(f"killed the child with SIGKILL after {acknowledged} acknowledged updates")
        asyncio.run(come_back(path, acknowledged, workdir))


if __name__ == "__main__":
    main()
