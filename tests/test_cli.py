"""``sessionactor serve``, run as a real process: what it prints, how it stops, who it lets in.

Every server here is a child process started with this interpreter
(``python -m sessionactor serve``) on port 0 or a unix socket in the test's
temporary directory; the fixture kills whatever is still running at the end.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from server_process import ServerProcesses, serve_args

from sessionactor import (
    AuthenticationFailed,
    ConnectionLost,
    SessionLimitExceeded,
    ValidationError,
    Variable,
    connect,
)

LOOPBACK = "tcp://127.0.0.1:0"
LOOPS = ["asyncio", "uvloop"]  # --loop: the server's event loop (uvloop is a dev dependency)
CALL_BOUND = 10.0  # seconds any one client-side step may take before the test fails


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcesses]:
    monkeypatch.delenv("SESSIONACTOR_TOKEN", raising=False)  # the clients read it too
    with ServerProcesses(tmp_path) as started:
        yield started


def _serve(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionactor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- what it prints -------------------------------------------------------------------


async def test_prints_one_listening_line_per_address_and_serves_each(
    servers: ServerProcesses, tmp_path: Path
) -> None:
    socket_path = tmp_path / "store.sock"
    server = servers.start(*serve_args(LOOPBACK, f"unix:{socket_path}"))
    tcp, unix = server.addresses
    assert tcp.startswith("tcp://127.0.0.1:") and not tcp.endswith(":0")
    assert unix == f"unix:{socket_path}"
    async with asyncio.timeout(CALL_BOUND):
        async with connect(tcp) as over_tcp, connect(unix) as over_unix:
            await over_tcp.create_session("s1")
            await over_tcp.register_variable("s1", "temperature", "float", 0.7)
            assert await over_unix.get_variable_value("s1", "temperature") == 0.7


def test_unix_socket_is_created_with_mode_0600(servers: ServerProcesses, tmp_path: Path) -> None:
    socket_path = tmp_path / "private.sock"
    servers.start(*serve_args(f"unix:{socket_path}"))
    mode = os.stat(socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_serve_help_explains_flags_defaults_and_an_example() -> None:
    result = _serve("serve", "--help")
    assert result.returncode == 0
    text = result.stdout
    for flag in (
        "--listen",
        "--token-file",
        "--tls-cert",
        "--tls-key",
        "--default-ttl",
        "--cleanup-interval",
        "--call-timeout",
        "--mailbox-size",
        "--max-sessions",
        "--global-program-ttl",
        "--max-items",
        "--max-string-length",
        "--max-depth",
        "--max-connections",
        "--max-frame-bytes",
        "--handshake-timeout",
        "--loop",
    ):
        assert flag in text
    assert "tcp://127.0.0.1:7420" in text  # the default address
    assert "listening on" in text and "SIGTERM" in text
    assert "SESSIONACTOR_TOKEN" in text
    assert "examples:" in text and "sessionactor serve --listen" in text
    assert text.count("Default") >= 16  # every option says what it is when left out


def test_top_level_help_names_serve_and_the_console_script_is_declared() -> None:
    result = _serve("--help")
    assert result.returncode == 0 and "serve" in result.stdout
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="sessionactor")
    assert script.value == "sessionactor.cli:main"


async def test_store_and_server_options_reach_the_store(servers: ServerProcesses) -> None:
    server = servers.start(
        *serve_args(
            LOOPBACK,
            extra=["--max-sessions", "2", "--default-ttl", "600", "--max-items", "10"],
        )
    )
    async with asyncio.timeout(CALL_BOUND), connect(server.address) as store:
        first = await store.create_session("a")
        assert first.ttl == 600.0
        await store.create_session("b")
        with pytest.raises(SessionLimitExceeded):
            await store.create_session("c")
        with pytest.raises(ValidationError):
            await store.register_variable("a", "too_long", "embedding", [0.0] * 11)


# -- how it stops ----------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_signal_under_load_exits_0_and_every_call_ends(
    servers: ServerProcesses, stop_signal: int, loop: str
) -> None:
    """Four connections of 50 callers each update in a loop while the signal arrives.

    Every call ends with its reply or ConnectionLost (a call the server had not
    read yet); none hangs, and none gets StoreClosed or any other error, which a
    server that stopped its store before answering what it had taken would cause.
    """
    server = servers.start(*serve_args(LOOPBACK, extra=["--loop", loop]))
    clients = [connect(server.address, call_timeout=CALL_BOUND) for _ in range(4)]
    replies_after_signal = 0
    signalled_at: float | None = None

    async def caller(store_index: int, caller_index: int) -> list[str]:
        nonlocal replies_after_signal
        store = clients[store_index]
        name = f"v{caller_index}"
        outcomes: list[str] = []
        for step in range(100_000):
            try:
                reply = await store.update_variable("load", name, step)
            except ConnectionLost:
                outcomes.append("lost")
                return outcomes
            assert isinstance(reply, Variable) and reply.value == step
            outcomes.append("reply")
            if signalled_at is not None:
                replies_after_signal += 1
        raise AssertionError("the server never stopped")

    async with asyncio.timeout(30.0):
        for client in clients:
            await client.__aenter__()
        try:
            await clients[0].create_session("load")
            for index in range(50):
                await clients[0].register_variable("load", f"v{index}", "integer", -1)
            tasks = [
                asyncio.create_task(caller(c, i)) for c in range(len(clients)) for i in range(50)
            ]
            await asyncio.sleep(0.5)  # under load
            signalled_at = time.monotonic()
            server.process.send_signal(stop_signal)
            outcomes = await asyncio.gather(*tasks)
        finally:
            for client in clients:
                await client.aclose()
    assert server.process.wait(timeout=20.0) == 0, server.stderr()
    assert all(calls[-1] == "lost" and "lost" not in calls[:-1] for calls in outcomes)
    assert sum(calls.count("reply") for calls in outcomes) > 200  # it was under load
    assert "Traceback" not in server.stderr()


def test_sigterm_when_idle_exits_0_and_removes_the_unix_socket(
    servers: ServerProcesses, tmp_path: Path
) -> None:
    socket_path = tmp_path / "store.sock"
    server = servers.start(*serve_args(f"unix:{socket_path}"))
    assert server.stop(signal.SIGTERM) == 0
    assert not socket_path.exists()
    assert server.stderr() == ""


# -- who it lets in ----------------------------------------------------------------------


def test_refuses_to_listen_off_loopback_without_a_token(servers: ServerProcesses) -> None:
    status, stdout, stderr = servers.run_to_exit(*serve_args("tcp://0.0.0.0:0"))
    assert status == 2
    assert stdout == ""
    assert len(stderr.splitlines()) == 1
    assert "token" in stderr and "0.0.0.0" in stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--listen", "tcp://127.0.0.1"], "neither tcp://HOST:PORT nor unix:"),
        (["--listen", "unix:/nonexistent-dir/x.sock"], "cannot listen on unix:/nonexistent-dir"),
        (["--token-file", "/nonexistent-dir/token"], "cannot read the token file"),
        (["--tls-cert", "/nonexistent-dir/cert.pem"], "cannot load the TLS certificate"),
    ],
    ids=["bad-address", "unix-dir-missing", "token-file-unreadable", "tls-cert-unreadable"],
)
def test_a_failed_start_is_one_line_on_stderr_and_exit_2(
    servers: ServerProcesses, args: list[str], expected: str
) -> None:
    status, stdout, stderr = servers.run_to_exit(*args)
    assert (status, stdout) == (2, "")
    assert len(stderr.splitlines()) == 1, stderr
    assert expected in stderr


def test_an_address_in_use_is_one_line_on_stderr_and_exit_2(servers: ServerProcesses) -> None:
    first = servers.start(*serve_args(LOOPBACK))
    status, _, stderr = servers.run_to_exit(*serve_args(first.address))
    assert status == 2
    assert stderr.strip() == (
        f"sessionactor serve: error: cannot listen on {first.address}: Address already in use"
    )
    assert first.alive()


async def test_token_from_a_file_is_required_of_clients(
    servers: ServerProcesses, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-from-file\n")
    server = servers.start(*serve_args(LOOPBACK, extra=["--token-file", str(token_file)]))
    async with asyncio.timeout(CALL_BOUND):
        with pytest.raises(AuthenticationFailed):
            async with connect(server.address):
                pass
        with pytest.raises(AuthenticationFailed):
            async with connect(server.address, token="wrong"):
                pass
        async with connect(server.address, token="s3cret-from-file") as store:
            await store.create_session("s1")


async def test_token_from_the_environment_is_required_of_clients(
    servers: ServerProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers.start(*serve_args(LOOPBACK), env={"SESSIONACTOR_TOKEN": "s3cret-env"})
    async with asyncio.timeout(CALL_BOUND):
        with pytest.raises(AuthenticationFailed):
            async with connect(server.address):
                pass
        monkeypatch.setenv("SESSIONACTOR_TOKEN", "s3cret-env")  # the client reads it too
        async with connect(server.address) as store:
            assert await store.list_sessions() == []


@pytest.mark.parametrize("loop", LOOPS)
async def test_tls_serves_clients_that_trust_its_certificate(
    servers: ServerProcesses, tmp_path: Path, loop: str
) -> None:
    # trustme (a test dependency) makes the CA and the certificate in memory: the openssl
    # command line tool is only a recommended package of Debian's python3, not a given.
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    server = servers.start(
        *serve_args(
            LOOPBACK, extra=["--tls-cert", str(cert), "--tls-key", str(key), "--loop", loop]
        )
    )
    trusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    authority.configure_trust(trusting)
    async with asyncio.timeout(CALL_BOUND):
        async with connect(server.address, ssl=trusting) as store:
            await store.create_session("s1")
            assert await store.session_exists("s1")
        with pytest.raises(ConnectionLost):  # the default context does not trust the test CA
            async with connect(server.address, ssl=ssl.create_default_context()):
                pass
        with pytest.raises(ConnectionLost):  # plain bytes to a TLS port: no handshake answer
            async with connect(server.address, call_timeout=2.0):
                pass
    assert server.alive()


# -- with a database ----------------------------------------------------------------------


async def test_with_a_database_what_was_acknowledged_survives_kill_9(
    servers: ServerProcesses, tmp_path: Path
) -> None:
    database = tmp_path / "store.sqlite"
    args = serve_args(LOOPBACK, extra=["--database", str(database), "--synchronous", "normal"])
    first = servers.start(*args)
    async with asyncio.timeout(CALL_BOUND), connect(first.address) as store:
        await store.create_session("kept", ttl=float("inf"))
        await store.register_variable("kept", "steps", "integer", 0)
        for step in range(1, 21):
            await store.update_variable("kept", "steps", step)
    first.kill()  # SIGKILL: no clean stop, no final write
    second = servers.start(*args)
    async with asyncio.timeout(CALL_BOUND), connect(second.address) as store:
        steps = await store.get_variable("kept", "steps")
        assert (steps.value, steps.version) == (20, 20)
    assert second.stop(signal.SIGTERM) == 0


def test_a_file_that_is_not_a_store_database_is_one_line_and_exit_2(
    servers: ServerProcesses, tmp_path: Path
) -> None:
    database = tmp_path / "notes.txt"
    database.write_text("not a database\n" * 100)
    before = database.read_bytes()
    status, stdout, stderr = servers.run_to_exit(
        *serve_args(LOOPBACK, extra=["--database", str(database)])
    )
    assert (status, stdout) == (2, "")
    assert len(stderr.splitlines()) == 1, stderr
    assert str(database) in stderr
    assert database.read_bytes() == before
