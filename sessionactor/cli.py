"""The ``sessionactor`` command line: ``sessionactor serve`` runs a store as a service.

``serve`` starts a :class:`SessionStore` and a :class:`SessionServer` in front of
it, prints ``listening on ADDRESS`` once per bound address (flushed at once, so a
script that asked for port 0 can read where it is), and serves until SIGTERM or
SIGINT: then it stops accepting, answers every call it has taken, stops the store
and exits 0. A problem at start (a bad address, an address in use, no token for
an address off loopback, a token or certificate file it cannot read) is one line
on standard error and exit status 2.

Also reachable as ``python -m sessionactor``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Final, NoReturn

from ._address import DEFAULT_ADDRESS
from ._frozen import Limits
from ._protocol import MAX_FRAME_BYTES
from .client import TOKEN_ENVIRONMENT
from .errors import PersistenceError, SessionStoreError
from .server import SessionServer
from .store import SessionStore

__all__ = ["main"]

PROGRAM: Final = "sessionactor"
EXIT_START_FAILED: Final = 2  # argparse's status for a usage error, used for every failed start
EXIT_STORE_DIED: Final = 1
_STORE_CHECK_INTERVAL: Final = 1.0  # seconds between checks that the store still runs

_DESCRIPTION: Final = """\
Serve a session store to other processes and machines.

The store keeps sessions and their typed, versioned variables in memory; clients
reach it with sessionactor.connect(ADDRESS). Once it accepts connections, serve
prints one line "listening on ADDRESS" per address (with the real port when you
asked for port 0). SIGTERM or Ctrl-C stops it cleanly: it stops accepting,
answers every call it has taken, and exits 0. Without --database everything is
lost when it stops; with it, every acknowledged change is in an SQLite file and
the next start carries on from there.
"""

_EXAMPLES: Final = f"""\
examples:
  sessionactor serve
      listen on tcp://127.0.0.1:7420, this machine only
  sessionactor serve --listen unix:/run/app/store.sock --default-ttl 600
  sessionactor serve --listen tcp://0.0.0.0:7420 --token-file /etc/app/token \\
      --tls-cert server.pem --tls-key server.key
      every interface, for clients on other machines: a token, and TLS

  then, in Python:
      async with sessionactor.connect("tcp://127.0.0.1:7420") as store:
          await store.create_session("s1")

A token is required to listen anywhere but loopback or a unix socket; clients
pass the same one (connect(..., token=...) or the {TOKEN_ENVIRONMENT} variable).
Errors at start print one line to standard error and exit with status 2.
"""


class StartFailed(Exception):
    """The server cannot start; the message says why, in one line."""


class StoreDied(Exception):
    """The store stopped while serving, not asked to (its actor crashed)."""


# -- argument types: each names the rule it enforces in argparse's error ---------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _or_none(parse: Callable[[str], float | int]) -> Callable[[str], float | int | None]:
    def parse_or_none(text: str) -> float | int | None:
        return None if text.strip().lower() == "none" else parse(text)

    parse_or_none.__name__ = parse.__name__  # argparse names the type in its messages
    return parse_or_none


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``sessionactor``; ``serve`` is its one command."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="sessionactor: an asyncio actor that owns typed, versioned session state.",
        epilog=f"Run '{PROGRAM} serve --help' for how to serve a store.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve a session store over TCP or unix sockets",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = serve.add_argument_group("where to listen, and who may connect")
    where.add_argument(
        "--listen",
        metavar="ADDRESS",
        action="append",
        help=(
            "tcp://HOST:PORT (port 0: any free port; IPv6 as tcp://[::1]:7420) or "
            "unix:/path/to.sock (created with mode 0600). Repeat to listen on several. "
            f"Default: {DEFAULT_ADDRESS}"
        ),
    )
    where.add_argument(
        "--token-file",
        metavar="FILE",
        help=(
            "read the secret clients must present from FILE (its first line; surrounding "
            f"whitespace is ignored). Default: the {TOKEN_ENVIRONMENT} environment variable, "
            "else no token. Required to listen on a TCP address other than loopback"
        ),
    )
    where.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve TCP addresses over TLS with this PEM certificate (chain). Default: no TLS",
    )
    where.add_argument(
        "--tls-key",
        metavar="FILE",
        help="the PEM private key of --tls-cert. Default: the key inside the --tls-cert file",
    )
    store = serve.add_argument_group("the store")
    store.add_argument(
        "--default-ttl",
        metavar="SECONDS",
        type=_positive_seconds,
        default=3600.0,
        help="how long a session lives unused, unless it was created with its own ttl "
        "('inf': forever). Default: %(default)g",
    )
    store.add_argument(
        "--cleanup-interval",
        metavar="SECONDS",
        type=_or_none(_positive_seconds),
        default=60.0,
        help="seconds between sweeps that free expired sessions ('none': no sweep; an "
        "expired session is gone for every call either way). Default: %(default)g",
    )
    store.add_argument(
        "--call-timeout",
        metavar="SECONDS",
        type=_or_none(_positive_seconds),
        default=5.0,
        help="how long a call may wait for the store inside the server ('none': no limit). "
        "Default: %(default)g",
    )
    store.add_argument(
        "--mailbox-size",
        metavar="N",
        type=_or_none(_positive_int),
        default=None,
        help="calls that may queue for the store before callers wait for room. Default: no bound",
    )
    store.add_argument(
        "--max-sessions",
        metavar="N",
        type=_or_none(_positive_int),
        default=None,
        help="live sessions allowed at once. Default: no limit",
    )
    store.add_argument(
        "--global-program-ttl",
        metavar="SECONDS",
        type=_positive_seconds,
        default=3600.0,
        help="how long a global program lives after it is stored. Default: %(default)g",
    )
    store.add_argument(
        "--database",
        metavar="PATH",
        default=None,
        help="keep every change in this SQLite file (created if missing) and start from "
        "what it holds; a change is acknowledged once it is committed. Default: in memory",
    )
    store.add_argument(
        "--synchronous",
        choices=("full", "normal", "off"),
        default="full",
        help="with --database, what an acknowledged change survives: 'full' a power "
        "loss, 'normal' a crash of this process, 'off' whatever the OS keeps. "
        "Default: %(default)s",
    )
    limits = serve.add_argument_group("how much data one call may pass")
    defaults = Limits()
    limits.add_argument(
        "--max-items",
        metavar="N",
        type=_positive_int,
        default=defaults.max_items,
        help="elements of all lists, tuples and mappings in one argument. Default: %(default)d",
    )
    limits.add_argument(
        "--max-string-length",
        metavar="N",
        type=_positive_int,
        default=defaults.max_string_length,
        help="characters of one str (bytes of one bytes value). Default: %(default)d",
    )
    limits.add_argument(
        "--max-depth",
        metavar="N",
        type=_positive_int,
        default=defaults.max_depth,
        help="nesting of lists and mappings in one argument. Default: %(default)d",
    )
    server = serve.add_argument_group("connections")
    server.add_argument(
        "--max-connections",
        metavar="N",
        type=_positive_int,
        default=1024,
        help="connections served at once; more are told so and closed. Default: %(default)d. "
        "Each takes a file descriptor: keep it under 'ulimit -n'",
    )
    server.add_argument(
        "--max-frame-bytes",
        metavar="N",
        type=_positive_int,
        default=MAX_FRAME_BYTES,
        help="the largest message either way (a call with its arguments, a reply); a "
        "larger one closes the connection. Default: %(default)d (16 MiB)",
    )
    server.add_argument(
        "--handshake-timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=10.0,
        help="a new connection that has not sent its token within this time is closed. "
        "Default: %(default)g",
    )
    server.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the event loop: uvloop answers a call in about two thirds of the CPU time "
        "of asyncio's own loop (install it with pip install 'sessionactor[uvloop]'); "
        "auto takes uvloop when it is installed. Default: %(default)s",
    )
    return parser


# -- from arguments to a configured store and server ------------------------------------


def _read_token(path: str | None) -> str | None:
    if path is None:
        return os.environ.get(TOKEN_ENVIRONMENT) or None
    try:
        with open(path, encoding="utf-8") as file:
            first_line = file.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise StartFailed(f"cannot read the token file {path}: {_reason(error)}") from None
    token = first_line.strip()
    if not token:
        raise StartFailed(f"the token file {path} is empty")
    return token


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None:
        if key is not None:
            raise StartFailed("--tls-key needs --tls-cert")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        files = cert if key is None else f"{cert} and {key}"
        raise StartFailed(
            f"cannot load the TLS certificate from {files}: {_reason(error)}"
        ) from None
    return context


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def configure(args: argparse.Namespace) -> tuple[SessionStore, SessionServer]:
    """The store and the server ``args`` ask for, not started yet.

    Everything that can be checked before binding is checked here, so a bad
    option fails before any socket exists.
    """
    token = _read_token(args.token_file)
    context = _tls_context(args.tls_cert, args.tls_key)
    try:
        store = SessionStore(
            default_ttl=args.default_ttl,
            cleanup_interval=args.cleanup_interval,
            call_timeout=args.call_timeout,
            mailbox_size=args.mailbox_size,
            max_sessions=args.max_sessions,
            global_program_ttl=args.global_program_ttl,
            database=args.database,
            synchronous=args.synchronous,
            limits=Limits(
                max_items=args.max_items,
                max_string_length=args.max_string_length,
                max_depth=args.max_depth,
            ),
        )
        server = SessionServer(
            store,
            listen=args.listen or DEFAULT_ADDRESS,
            token=token,
            ssl=context,
            max_connections=args.max_connections,
            max_frame_bytes=args.max_frame_bytes,
            handshake_timeout=args.handshake_timeout,
        )
    except SessionStoreError as error:
        raise StartFailed(str(error)) from None
    return store, server


async def serve(store: SessionStore, server: SessionServer) -> None:
    """Run ``store`` and ``server`` until SIGTERM or SIGINT, then stop both cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        async with contextlib.AsyncExitStack() as running:
            try:
                await running.enter_async_context(store)
            except SessionStoreError as error:  # a database it cannot open
                raise StartFailed(str(error)) from None
            try:
                await server.start()  # closes what it bound if it fails
            except OSError as error:  # in use, not ours to bind, no such directory
                raise StartFailed(_reason(error)) from None
            except SessionStoreError as error:  # another server on that unix socket
                raise StartFailed(str(error)) from None
            try:
                for address in server.addresses:
                    print(f"listening on {address}", flush=True)
                while store.running:  # until a signal, or the store dies under us
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), _STORE_CHECK_INTERVAL)
                        break
            finally:
                await server.aclose()  # stop accepting, answer what was taken, close
        if not stop.is_set():
            raise StoreDied("the store stopped by itself (see the log above); exiting")
    except PersistenceError as error:  # the database failed: the store stopped writing
        raise StoreDied(f"the store stopped: {error}") from None
    finally:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signal_number)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ``--loop`` names: uvloop's if asked for (or ``auto`` and installed)."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise StartFailed(
                "--loop uvloop: uvloop is not installed (pip install 'sessionactor[uvloop]')"
            ) from None
        return asyncio.new_event_loop
    new_event_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_event_loop


def _fail(message: str) -> NoReturn:
    print(f"{PROGRAM} serve: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_START_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``sessionactor``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format=f"{PROGRAM}: %(levelname)s %(name)s: %(message)s"
    )
    try:
        new_loop = loop_factory(args.loop)
        store, server = configure(args)
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(serve(store, server))
    except StartFailed as error:
        _fail(str(error))
    except StoreDied as error:
        print(f"{PROGRAM} serve: {error}", file=sys.stderr, flush=True)
        return EXIT_STORE_DIED
    return 0
