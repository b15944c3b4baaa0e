"""A throw-away ``redis-server`` on 127.0.0.1 for the Redis baseline.

``RedisServer`` installs Debian's ``redis-server`` when it is missing (the bench
machines run as root), starts it on a free loopback port as a child process,
and stops it on exit. By default it keeps nothing on disk; with ``appendfsync``
("always" or "everysec") it keeps an append-only file with that fsync policy.
Either way its files (the AOF, the unix socket, the log) live in a fresh
temporary directory that ``stop`` removes. When the server cannot be had, ``start``
raises :class:`RedisUnavailable` with the reason, and the harness reports the
Redis rows as unavailable instead of crashing.

Run it alone to try it: ``python -m benchmarks.redis_server`` starts a server,
pings it, and stops it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "RedisUnavailable", "ensure_installed"]

_APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
_STATE_DIR = Path(__file__).resolve().parent / ".redis"


class RedisUnavailable(RuntimeError):
    """redis-server could not be installed or started; the reason is the message."""


def _run_quietly(argv: list[str], timeout: float) -> None:
    result = subprocess.run(
        argv,
        env=_APT_ENV,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RedisUnavailable(f"{' '.join(argv)} failed: {' / '.join(tail)}")


def ensure_installed() -> str:
    """Return the path of redis-server, installing Debian's package if needed."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RedisUnavailable("redis-server is not installed and apt-get is not available")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise RedisUnavailable("redis-server is not installed and we are not root")
    try:
        _run_quietly(["apt-get", "update", "-qq"], timeout=300)
        _run_quietly(["apt-get", "install", "-y", "-qq", "redis-server"], timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisUnavailable(f"installing redis-server failed: {exc}") from exc
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(found, os.X_OK):
        raise RedisUnavailable("apt-get reported success but redis-server is not on PATH")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server child process on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        *,
        install: bool = True,
        appendfsync: str | None = None,
        parent: str | os.PathLike[str] | None = None,
    ) -> None:
        if appendfsync not in (None, "always", "everysec"):
            raise ValueError(f"appendfsync must be None, 'always' or 'everysec': {appendfsync!r}")
        self._install = install
        self.appendfsync = appendfsync
        self._parent = parent  # where its temporary directory goes (default: benchmarks/.redis)
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self.port = 0
        self.version = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server through its unix socket (in its private run directory)."""
        return f"unix://{self.unix_path}?db=0"

    @property
    def unix_path(self) -> str:
        assert self._dir is not None, "the server is not running"
        return os.path.join(self._dir, "redis.sock")

    def start(self) -> None:
        binary = ensure_installed() if self._install else shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable("redis-server is not installed")
        if self._parent is None:
            _STATE_DIR.mkdir(exist_ok=True)
        self._dir = tempfile.mkdtemp(prefix="run-", dir=self._parent or _STATE_DIR)
        persistence = (
            ["--appendonly", "no"]
            if self.appendfsync is None
            else ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        )
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        self.version = version.stdout.strip()
        last_error = ""
        for _attempt in range(3):
            port = _free_port()
            log_path = os.path.join(self._dir, "redis.log")
            argv = [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--save", "",
                *persistence,
                "--daemonize", "no",
                "--protected-mode", "yes",
                "--dir", self._dir,
                "--unixsocket", os.path.join(self._dir, "redis.sock"),
                "--unixsocketperm", "700",
                "--logfile", log_path,
                "--loglevel", "warning",
            ]  # fmt: skip
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and proc.poll() is None:
                if _ping(port):
                    self._proc, self.port = proc, port
                    return
                time.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
            try:
                lines = Path(log_path).read_text(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            last_error = lines[-1] if lines else f"exit code {proc.returncode}"
        self._cleanup_dir()
        raise RedisUnavailable(f"redis-server did not start: {last_error or 'no output'}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    with RedisServer() as server:
        print(f"{server.version} up at {server.url}: ping={_ping(server.port)}")
    print("stopped")
