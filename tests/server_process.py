"""Real ``sessionactor serve`` processes for tests: started, read, measured and always killed.

``ServerProcesses`` starts ``python -m sessionactor serve ...`` with this
interpreter, reads its ``listening on`` lines with a bounded wait, and kills
every process it started when its ``with`` block ends, whatever happened in it.
Standard error goes to a file (a pipe nobody reads could fill and block the
server), which failing assertions quote.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

START_TIMEOUT: Final = 20.0  # seconds to the last "listening on" line (start takes ~0.4 s)
STOP_TIMEOUT: Final = 20.0  # seconds a signalled server has to exit


class ServerProcess:
    """One server process and what it printed."""

    def __init__(self, process: subprocess.Popen[bytes], stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.addresses: list[str] = []
        self.remaining_stdout = ""  # what it printed after the lines read, once it is dead
        self._stdout = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        """The first address it listens on."""
        return self.addresses[0]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        """Resident memory now, from /proc/PID/status."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for process {self.pid}")

    def read_listening(self, count: int, timeout: float = START_TIMEOUT) -> list[str]:
        """Wait (bounded) for ``count`` lines ``listening on ADDRESS``; the addresses."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while self._stdout.count(b"\n") < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no {count} listening lines within {timeout:g} s: {self._stdout!r}; "
                        f"stderr:\n{self.stderr()}"
                    )
                if not selector.select(min(left, 0.1)):
                    continue
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:  # it closed its output: it has ended, or is ending
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(timeout=min(left, STOP_TIMEOUT))
                    raise AssertionError(
                        f"server printed {self._stdout!r} and exited ({self.process.poll()}) "
                        f"before {count} listening lines; stderr:\n{self.stderr()}"
                    )
                self._stdout += chunk
        lines = self._stdout.decode().splitlines()
        assert all(line.startswith("listening on ") for line in lines), lines
        self.addresses = [line.removeprefix("listening on ") for line in lines]
        return self.addresses

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait (bounded) for the exit status."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"server still ran {timeout:g} s after signal {sig}; stderr:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        """Kill it if it runs, reap it, and keep what it printed last."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)
        stdout = self.process.stdout
        if stdout is not None and not stdout.closed:
            self.remaining_stdout = stdout.read().decode(errors="replace")
            stdout.close()


class ServerProcesses:
    """Starts servers in ``directory``; every one of them is killed on leaving ``with``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ServerProcess] = []

    def launch(
        self, *args: str, env: Mapping[str, str] | None = None, clean_env: bool = True
    ) -> ServerProcess:
        """Start ``sessionactor serve *args`` without waiting for it."""
        environment = dict(os.environ)
        if clean_env:
            environment.pop("SESSIONACTOR_TOKEN", None)
        environment.update(env or {})
        stderr_path = self.directory / f"server-{len(self.started)}.stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "sessionactor", "serve", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=environment,
                cwd=self.directory,
            )
        server = ServerProcess(process, stderr_path)
        self.started.append(server)
        return server

    def start(
        self, *args: str, env: Mapping[str, str] | None = None, listening: int | None = None
    ) -> ServerProcess:
        """Start a server and wait until it listens (one line per ``--listen``)."""
        server = self.launch(*args, env=env)
        expected = listening if listening is not None else max(1, args.count("--listen"))
        server.read_listening(expected)
        return server

    def run_to_exit(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = START_TIMEOUT
    ) -> tuple[int, str, str]:
        """Run ``serve *args`` expecting it to exit by itself: (status, stdout, stderr)."""
        server = self.launch(*args, env=env)
        try:
            status = server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve {' '.join(args)} still ran after {timeout:g} s") from None
        finally:
            server.kill()
        return status, server.remaining_stdout, server.stderr()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for server in self.started:
            server.kill()


def serve_args(*listen: str, extra: Sequence[str] = ()) -> list[str]:
    """``--listen A --listen B ... extra``."""
    args: list[str] = []
    for address in listen:
        args += ["--listen", address]
    return [*args, *extra]
