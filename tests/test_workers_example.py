"""``examples/workers.py``: a server and four worker processes, run as a user would run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

EXAMPLE: Final = Path(__file__).resolve().parent.parent / "examples" / "workers.py"
TIMEOUT: Final = 60.0  # seconds; it takes about two


def test_workers_share_one_session_and_agree_on_the_last_value() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("server: sessionactor serve, listening on unix:")
    written = re.fullmatch(
        r"optimizer: held the lock on learning_rate \(lease 10 s\) and wrote 20 values, "
        r"0\.1 -> (?P<last>[0-9.e-]+)",
        lines[1],
    )
    assert written is not None, lines[1]
    last = written["last"]
    observers = lines[2:5]
    for index, line in enumerate(observers, start=1):
        assert line.startswith(
            f"observer-{index}: watched 20 updates (in order, versions 1..20), "
            f"mirror reads {last} at the end"
        ), line
    assert "its own write was refused (VariableLocked, held by optimizer)" in observers[0]
    assert re.fullmatch(
        rf"all workers agree on the final learning rate {re.escape(last)}; done in [0-9.]+ s",
        lines[5],
    ), lines[5]
    assert len(lines) == 6
