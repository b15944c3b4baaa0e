"""``SessionServer``: a running :class:`SessionStore`, served to other processes and machines.

Each connection speaks the protocol of :mod:`._protocol` (its pure state
machine) through a thin ``asyncio.Protocol``. A call arrives as an operation
name and its arguments; the server builds the command with the very function a
local call uses (the same copy-in, the same limits), puts it in the store's
mailbox, and writes the reply when the future is answered: no task per call,
and all the replies of one actor turn leave in one write. A read that arrives
while the actor is idle (nothing in its mailbox) is answered at once from its
state, as ``SessionStore``'s ``*_nowait`` reads are: it sees what the actor's
next turn would see.

Watches are pushed: the server subscribes a watcher that is drained in the
actor's own turn, and the changes of a turn are sent before that turn's
replies, so a client's mirror holds every write whose reply it has read.

A connection is closed gently: our last frames, then end of our side, and the
socket closed once the peer closes it (or after a second), so that unread input
never turns the close into a reset that destroys those frames.

Hostile peers are bounded: a frame over ``max_frame_bytes`` or bytes that are
not a frame fail the connection with a last message saying why; a client that
never completes the handshake is dropped after ``handshake_timeout``; a client
that does not read its replies stops being read (at most ``max_calls_in_flight``
of its calls are ever in progress, and its pushed watches overflow); past
``max_connections`` a new connection is told so and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import socket
import ssl as ssl_module
import stat
from collections.abc import Sequence
from functools import partial
from types import TracebackType
from typing import Any, Final, Self

import anyio
from anyio.abc import TaskStatus

from . import messages as m
from ._address import DEFAULT_ADDRESS, TcpAddress, UnixAddress, parse_address
from ._api import CALLS
from ._codec import Codec, EncodeError
from ._frozen import FrozenMap
from ._protocol import (
    MAX_FRAME_BYTES,
    CallReceived,
    ClientHello,
    ConnectionClosed,
    HandshakeRejected,
    ProtocolViolation,
    ServerConnection,
    UnwatchReceived,
)
from ._watch import ENDED, Watcher
from .errors import (
    InternalError,
    InvalidArgument,
    ProtocolError,
    SessionStoreError,
    StoreClosed,
    describe,
)
from .store import SessionStore

__all__ = ["SessionServer"]

_log = logging.getLogger("sessionactor.server")

_SERVER_VERSION: Final = "sessionactor 0.2.0"
_WRITE_HIGH_WATER: Final = 1 << 20  # bytes a connection may have unsent before it stops reading
_WATCH_BUFFER_CAP: Final = 65_536  # events a pushed watch holds for a client that does not read
_LISTEN_BACKLOG: Final = 1024  # connections queued for accept(): a burst waits for no SYN retry
# Reads answered from the actor's state when it is idle (see _read_directly).
_DIRECT_READS: Final = frozenset(
    {
        m.GetVariable,
        m.GetVariableValue,
        m.GetVariables,
        m.HasVariable,
        m.SessionExists,
        m.GetSession,
    }
)
_LINGER: Final = 1.0  # seconds a closing connection waits for its peer to read our last frames


def _frozen_mapping(items: dict[Any, object]) -> FrozenMap:
    return FrozenMap._owning(items)


class SessionServer:
    """Serves a running :class:`SessionStore` on TCP and unix sockets.

    >>> async with SessionStore() as store:  # doctest: +SKIP
    ...     async with SessionServer(store, listen="tcp://127.0.0.1:0") as server:
    ...         print(server.addresses)
    ['tcp://127.0.0.1:40517']

    Start it in the store's event loop, with ``async with`` (it stops at the end
    of the block) or ``await task_group.start(server.serve)`` (cancelling the
    group stops it). Stopping closes the listeners, answers every call already
    taken, then closes the connections; the store keeps running.

    Args:
        store: the running store to serve.
        listen: an address or a list of them: ``tcp://HOST:PORT`` (port 0: any
            free port) or ``unix:/path/to.sock`` (created with mode 0600).
        token: the secret every client must present (compared in constant
            time). Required when listening on a TCP address other than loopback.
        ssl: an ``ssl.SSLContext`` for TLS on TCP addresses.
        max_connections: connections served at once; beyond, a new one is
            refused with a message saying so.
        max_frame_bytes: the largest frame either way (a call with its
            arguments, a reply); larger ones fail the connection.
        handshake_timeout: seconds a new connection has to complete its
            handshake before it is closed.
        max_calls_in_flight: calls of one connection in progress at once; the
            server stops reading that connection until replies go out.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        listen: str | Sequence[str] = DEFAULT_ADDRESS,
        token: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        max_connections: int = 1024,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        handshake_timeout: float = 10.0,
        max_calls_in_flight: int = 4096,
    ) -> None:
        if not isinstance(store, SessionStore):
            raise InvalidArgument(f"store must be a SessionStore, got {describe(store)}")
        texts = [listen] if isinstance(listen, str) else list(listen)
        if not texts:
            raise InvalidArgument("listen needs at least one address")
        self._listen = [parse_address(text) for text in texts]
        if token is not None and (type(token) is not str or not token):
            raise InvalidArgument(f"token must be a non-empty str or None, got {describe(token)}")
        exposed = [str(a) for a in self._listen if not a.is_loopback]
        if exposed and token is None:
            raise InvalidArgument(
                f"listening on {', '.join(exposed)} (not loopback) requires a token: pass "
                "token=..., or --token-file / SESSIONACTOR_TOKEN on the command line"
            )
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise InvalidArgument(f"ssl must be an ssl.SSLContext, got {describe(ssl)}")
        for name, value in (
            ("max_connections", max_connections),
            ("max_frame_bytes", max_frame_bytes),
            ("max_calls_in_flight", max_calls_in_flight),
        ):
            if type(value) is not int or value < 1:
                raise InvalidArgument(f"{name} must be a positive int, got {describe(value)}")
        if (
            isinstance(handshake_timeout, bool)
            or not isinstance(handshake_timeout, int | float)
            or not handshake_timeout > 0
        ):
            raise InvalidArgument(
                f"handshake_timeout must be a positive number, got {describe(handshake_timeout)}"
            )
        self.store = store
        self._token = token
        self._ssl = ssl
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.handshake_timeout = float(handshake_timeout)
        self.max_calls_in_flight = max_calls_in_flight
        self._servers: list[asyncio.AbstractServer] = []
        self._unix_paths: list[str] = []
        self._connections: set[_ServedConnection] = set()
        self._lingering: set[_ServedConnection] = set()  # closed, waiting for the peer to close
        self._addresses: list[str] = []
        self._codec = Codec(frozen_mapping=_frozen_mapping)
        self._started = False
        self._closing = False

    @property
    def addresses(self) -> list[str]:
        """Where it listens, in the form ``connect`` takes (actual ports, not 0)."""
        return list(self._addresses)

    @property
    def connection_count(self) -> int:
        """Connections open now."""
        return len(self._connections)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Bind every address and start accepting connections."""
        if self._started:
            raise InvalidArgument("this SessionServer has already been started")
        self._started = True
        if not self.store.running:
            raise StoreClosed("the store must be running before it is served")
        loop = asyncio.get_running_loop()
        if loop is not self.store._loop:
            raise InvalidArgument("a SessionServer must run in the event loop of its store")
        try:
            for address in self._listen:
                try:
                    server = await self._bind(loop, address)
                except OSError as error:  # say which address: the OS error names none
                    reason = os.strerror(error.errno) if error.errno else str(error)
                    raise OSError(error.errno, f"cannot listen on {address}: {reason}") from error
                self._servers.append(server)
        except BaseException:
            await self.aclose()
            raise

    async def _bind(
        self, loop: asyncio.AbstractEventLoop, address: TcpAddress | UnixAddress
    ) -> asyncio.AbstractServer:
        if isinstance(address, UnixAddress):
            server = await loop.create_unix_server(
                self._new_connection, sock=_bind_unix(address.path)
            )
            self._unix_paths.append(address.path)
            self._addresses.append(str(address))
            return server
        server = await loop.create_server(
            self._new_connection,
            address.host,
            address.port,
            ssl=self._ssl,
            reuse_address=True,
            backlog=_LISTEN_BACKLOG,
        )
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            self._addresses.append(str(TcpAddress(host, port)))
        return server

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. For ``await task_group.start(server.serve)``."""
        await self.start()
        task_status.started()
        try:
            await asyncio.Event().wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop accepting, let the calls already taken be answered (for up to ``grace``
        seconds), then close every connection."""
        if self._closing:
            return
        self._closing = True
        for server in self._servers:
            server.close()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        connections = list(self._connections)
        for connection in connections:
            connection.stop_reading()
        with anyio.move_on_after(grace):
            for connection in connections:
                await connection.drained()
        for connection in connections:
            connection.close(StoreClosed("the server is shutting down"))
        with anyio.move_on_after(_LINGER + 1.0):  # each lingers at most _LINGER, then aborts
            for connection in list(self._lingering):
                await connection.gone.wait()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def _new_connection(self) -> _ServedConnection:
        return _ServedConnection(self)


def _bind_unix(path: str) -> socket.socket:
    """A listening unix socket at ``path`` with mode 0600 from the moment it exists.

    The socket is bound under a temporary name, given its mode, and then renamed
    into place, so no other user can ever connect to it. A stale socket left by
    a server that died is replaced; any other file there is an error.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise InvalidArgument(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: a server that died left it
        else:
            raise InvalidArgument(f"another server already listens on unix:{path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = f"{path}.{os.getpid()}.binding"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        sock.bind(temporary)
        os.chmod(temporary, 0o600)
        os.rename(temporary, path)
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return sock


def _shortened(error: SessionStoreError) -> SessionStoreError:
    """The same error with its message and large attributes cut down to fit a frame."""
    short = copy.copy(error)
    short.message = error.message[:2000]
    short.args = (short.message,)
    for name, value in vars(error).items():
        if isinstance(value, dict) and len(value) > 100:
            setattr(short, name, dict(list(value.items())[:100]))
    return short


class _ServedConnection(asyncio.Protocol):
    """One client's connection: bytes to events to store calls, and replies back."""

    def __init__(self, server: SessionServer) -> None:
        self.server = server
        self.store = server.store
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.connection = ServerConnection(
            server_version=_SERVER_VERSION,
            token=server._token,
            max_frame_bytes=server.max_frame_bytes,
            codec=server._codec,
            limits=server.store.limits,
        )
        self.closed = False
        self.in_flight = 0
        self.reading = True  # we have not paused the transport's reading
        self.write_paused = False
        self.flush_scheduled = False
        self.handshake_timer: asyncio.TimerHandle | None = None
        self.watches: dict[int, Watcher] = {}  # by watch id (the call id that opened it)
        self.watch_ids: dict[int, int] = {}  # id(watcher) -> watch id
        self.opening: set[int] = set()  # watch ids whose subscription is on its way
        self.unwatched: set[int] = set()  # of those, the ones the client ended already
        self.watch_tasks: set[asyncio.Task[None]] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        # Changes taken from pushed watches in the actor's turn, encoded and sent ahead
        # of that turn's replies (which are answered after the turn, in callbacks).
        self.outbox: list[tuple[int, list[object], SessionStoreError | object | None]] = []
        self.idle: asyncio.Event | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.gone = asyncio.Event()  # the transport has closed
        self.trace = self.store._telemetry.tracer is not None
        # Reads skip the actor when it is idle, unless calls are measured (spans, durations)
        # or the mailbox is bounded (a caller waiting for room is not in it yet).
        self.read_directly = (
            not self.store._telemetry.instruments_calls and self.store._mailbox_size is None
        )

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        server = self.server
        if server._closing or len(server._connections) >= server.max_connections:
            why = "shutting down" if server._closing else "at its limit of connections"
            self.connection.abort(
                ProtocolError(f"the server is {why} ({server.max_connections}); try again later")
            )
            self._close_gently()
            return
        server._connections.add(self)
        self.handshake_timer = self.loop.call_later(
            server.handshake_timeout, self._handshake_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        for event in self.connection.receive_data(data):
            if type(event) is CallReceived:
                self._take_call(event)
            elif type(event) is UnwatchReceived:
                self._end_watch(event.watch_id, None, send=False)
            elif type(event) is ClientHello:
                if self.handshake_timer is not None:
                    self.handshake_timer.cancel()
                    self.handshake_timer = None
            elif type(event) in (HandshakeRejected, ProtocolViolation):
                self._close_gently()  # the refusal or the reason, then close
                return
            elif type(event) is ConnectionClosed:
                self._shut()
                return
        if self.in_flight:
            self._flush_soon()  # the actor's replies follow: one write with them
        else:
            self._flush()  # everything is answered (reads answered directly): no need to wait

    def eof_received(self) -> bool:
        if not self.closed:
            self.connection.receive_eof()
            self._shut()
        return False  # asyncio closes the transport (a lingering one too: the peer is done)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        self.server._lingering.discard(self)
        self.gone.set()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()
        for watcher in list(self.watches.values()):
            self._push(watcher)  # what waited in the watcher's buffer while the client was slow
        self._flush_soon()

    # -- calls --------------------------------------------------------------------------

    def _take_call(self, event: CallReceived) -> None:
        call_id, operation = event.call_id, event.operation
        if operation == m.WatchVariables.operation:
            self._open_watch(event)
            return
        build = CALLS.get(operation)
        if build is None:
            self._answer_error(call_id, ProtocolError(f"unknown operation {describe(operation)}"))
            return
        try:
            command = build(self.store, **event.fields)
        except TypeError as error:  # a field the call does not have, or one missing
            self._answer_error(call_id, ProtocolError(f"{operation}: {error}"))
            return
        if type(command) in _DIRECT_READS and self.read_directly and self._actor_idle():
            self._read_directly(call_id, operation, command)
            return
        try:
            if self.trace and event.trace:
                reply = self._call_in_trace(command, event.trace)
            else:
                reply = self.store._call(command)
        except SessionStoreError as error:
            self._answer_error(call_id, error)
            return
        if not isinstance(reply, asyncio.Future):
            reply = self.loop.create_task(reply)
        reply.add_done_callback(partial(self._answer, call_id, operation))
        self.in_flight += 1
        if self.in_flight >= self.server.max_calls_in_flight:
            self._update_reading()

    def _actor_idle(self) -> bool:
        """Nothing waits in the actor's mailbox and, with a database, for a commit: every
        call taken so far is handled and answered, so the state holds only what is durable."""
        actor = self.store._actor
        return actor is not None and not actor.mailbox.qsize() and actor.settled

    def _read_directly(self, call_id: int, operation: str, command: m.AnyCommand) -> None:
        """A read answered now, in this callback, from the actor's state.

        Only while the actor is idle: no call of any connection waits for it, so
        the read sees exactly what it would see in the actor's next turn (handlers
        never await, and the actor does not run while this does), and it still
        comes after every call this client sent before it. It skips the mailbox,
        the reply future and two trips around the event loop. Its watch changes
        already taken go first, as for a reply from the actor.
        """
        try:
            reply = self.store._read_now(command)
        except SessionStoreError as error:
            self._answer_error(call_id, error)
            return
        self._send_outbox()
        try:
            self.connection.send_reply(call_id, reply)
        except InvalidArgument as error:  # too large for a frame
            self._answer_error(call_id, InvalidArgument(f"{operation}: the reply {error}"))

    def _call_in_trace(self, command: m.AnyCommand, carrier: dict[str, str]) -> Any:
        """The call, started in the caller's trace context: its span is the child of
        the span the client had open."""
        from opentelemetry import context, propagate

        token = context.attach(propagate.extract(carrier))
        try:
            reply = self.store._call(command)
            if not isinstance(reply, asyncio.Future):
                reply = self.loop.create_task(reply)  # type: ignore[arg-type]  # copies the context
            return reply
        finally:
            context.detach(token)

    def _answer(self, call_id: int, operation: str, reply: asyncio.Future[Any]) -> None:
        self.in_flight -= 1
        if self.closed:
            if not reply.cancelled():
                reply.exception()  # retrieved: nobody is left to tell
            return
        if self.write_paused:
            # A reply goes out even to a slow reader: the changes its watches hold go
            # ahead of it, or the client's mirror would miss the write it answers.
            for watcher in list(self.watches.values()):
                self._push(watcher, ahead_of_a_reply=True)
        self._send_outbox()
        if reply.cancelled():
            self._answer_error(call_id, StoreClosed("the session store stopped"))
        elif (error := reply.exception()) is not None:
            if not isinstance(error, SessionStoreError):
                failure = InternalError(operation, error)
                failure.__cause__ = error
                error = failure
            self._answer_error(call_id, error)
        else:
            try:
                self.connection.send_reply(call_id, reply.result())
            except InvalidArgument as error:  # no wire form (program data), or too large
                self._answer_error(call_id, InvalidArgument(f"{operation}: the reply {error}"))
        if self.in_flight + 1 >= self.server.max_calls_in_flight:
            self._update_reading()
        if self.in_flight:
            self._flush_soon()  # more replies may follow in this iteration: one write for all
        else:
            self._flush()  # the last call in progress: its reply need not wait an iteration
        if self.idle is not None and self.in_flight == 0:
            self.idle.set()

    def _answer_error(self, call_id: int, error: SessionStoreError) -> None:
        if self.closed:
            return
        try:
            self.connection.send_error(call_id, error)
        except InvalidArgument:  # larger than a frame (an import's thousand faults): shortened
            with contextlib.suppress(SessionStoreError):
                self.connection.send_error(call_id, _shortened(error))
        except SessionStoreError:  # the connection is gone
            pass
        self._flush_soon()

    # -- pushed watches -------------------------------------------------------------------

    def _open_watch(self, event: CallReceived) -> None:
        try:
            request = m.WatchVariables(**event.fields)
        except TypeError as error:
            self._answer_error(event.call_id, ProtocolError(f"watch_variables: {error}"))
            return
        self.opening.add(event.call_id)
        task = self.loop.create_task(self._start_watch(event.call_id, request))
        self.watch_tasks.add(task)
        task.add_done_callback(self.watch_tasks.discard)

    async def _start_watch(self, watch_id: int, request: m.WatchVariables) -> None:
        buffer = request.buffer
        if type(buffer) is int and buffer > _WATCH_BUFFER_CAP:
            buffer = _WATCH_BUFFER_CAP  # a client's mirror asks for no bound; the server keeps one
        try:
            watcher = await self.store._subscribe(
                request.session_id,  # type: ignore[arg-type]
                request.identifiers,  # type: ignore[arg-type]
                request.pattern,  # type: ignore[arg-type]
                request.include_initial,  # type: ignore[arg-type]
                buffer,  # type: ignore[arg-type]
                on_ready=self._push,
            )
        except SessionStoreError as error:
            self.unwatched.discard(watch_id)
            self._answer_error(watch_id, error)
            return
        finally:
            self.opening.discard(watch_id)
        if self.closed:
            self.store._unsubscribe(watcher)
            return
        if watch_id in self.unwatched:  # the client gave up on it before it opened
            self.unwatched.discard(watch_id)
            self.store._unsubscribe(watcher)
            with contextlib.suppress(SessionStoreError):  # its call is answered all the same
                self.connection.send_reply(watch_id, watcher.revision)
            self._flush_soon()
            return
        self.watches[watch_id] = watcher
        self.watch_ids[id(watcher)] = watch_id
        self.connection.send_reply(watch_id, watcher.revision)
        self._push(watcher, first=True)  # the listing follows the reply, even an empty one
        self._flush_soon()

    def _push(
        self, watcher: Watcher, *, ahead_of_a_reply: bool = False, first: bool = False
    ) -> None:
        """Take what the watcher has (in the actor's turn: cheap, no encoding here)."""
        watch_id = self.watch_ids.get(id(watcher))
        if watch_id is None or self.closed:
            return
        if self.write_paused and not (watcher.ending_now or ahead_of_a_reply or first):
            return  # the client does not read: let the watcher's bounded buffer fill
        events, ending = watcher.take()
        if first:  # the listing, a WATCH_EVENTS of its own even when empty
            self.outbox.append((watch_id, events, None))  # type: ignore[arg-type]
            events = []
        if events or ending is not None:
            self.outbox.append((watch_id, events, ending))  # type: ignore[arg-type]
            if ending is not None:
                # Not now: this runs while the store offers a turn's changes to its
                # watchers, and unsubscribing changes the table the store is going through.
                self._forget_watch(watch_id, later=True)
            self._flush_soon()

    def _send_outbox(self) -> None:
        outbox, self.outbox = self.outbox, []
        for watch_id, events, ending in outbox:
            if events or ending is None:  # (only a watch's first message can be empty)
                try:
                    self.connection.send_watch_events(watch_id, events)
                except EncodeError as fault:  # a custom type's value with no wire form
                    ending = InternalError("watch_variables", fault)
                    self._forget_watch(watch_id)
                except SessionStoreError:
                    return  # the connection is gone
            if ending is not None:
                reason = ending if isinstance(ending, SessionStoreError) else None
                with contextlib.suppress(SessionStoreError):
                    self.connection.send_watch_end(watch_id, reason)

    def _end_watch(self, watch_id: int, error: SessionStoreError | None, *, send: bool) -> None:
        watcher = self.watches.get(watch_id)
        if watcher is None:
            if watch_id in self.opening:
                self.unwatched.add(watch_id)  # ended as soon as it opens
            return  # ended already (its end is on its way)
        self._forget_watch(watch_id)
        if send:
            self.outbox.append((watch_id, [], error or ENDED))

    def _forget_watch(self, watch_id: int, *, later: bool = False) -> None:
        watcher = self.watches.pop(watch_id, None)
        if watcher is not None:
            self.watch_ids.pop(id(watcher), None)
            if later:
                self.loop.call_soon(self.store._unsubscribe, watcher)
            else:
                self.store._unsubscribe(watcher)

    # -- writing, reading, closing ------------------------------------------------------

    def _flush_soon(self) -> None:
        if not self.flush_scheduled and not self.closed:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.closed:
            return
        self._send_outbox()
        self._write_now()

    def _write_now(self) -> None:
        data = self.connection.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _update_reading(self) -> None:
        """Read while the client reads its replies and has few calls in progress."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        want = (
            not self.write_paused
            and self.in_flight < self.server.max_calls_in_flight
            and not self.server._closing
        )
        if want and not self.reading:
            self.reading = True
            transport.resume_reading()
        elif not want and self.reading:
            self.reading = False
            transport.pause_reading()

    def _handshake_timed_out(self) -> None:
        self.handshake_timer = None
        if not self.closed:
            with contextlib.suppress(SessionStoreError):
                self.connection.abort(
                    ProtocolError(
                        f"no handshake within {self.server.handshake_timeout:g} s; closing"
                    )
                )
            self._close_gently()

    def stop_reading(self) -> None:
        """The server is stopping: take no more calls from this connection."""
        self._update_reading()

    async def drained(self) -> None:
        """Wait until every call taken from this connection is answered and written."""
        while self.in_flight and not self.closed:
            self.idle = asyncio.Event()
            await self.idle.wait()
        self._flush()

    def close(self, error: SessionStoreError) -> None:
        if self.closed:
            return
        with contextlib.suppress(SessionStoreError):
            self.connection.abort(error)
        self._send_outbox()
        self._close_gently()

    def _close_gently(self) -> None:
        """Send what is queued (replies, the reason for closing), then close without
        letting a reset destroy it.

        Closing a socket whose peer sent bytes we have not read makes the kernel
        answer with a reset, which can discard our last frames before the peer
        reads them: a refused token would look like a lost connection, a reply
        taken before shutdown would be lost. So: end our side after the data
        (FIN), read and discard what still comes, and close when the peer does,
        or abort after ``_LINGER`` seconds if it never does.
        """
        self._write_now()
        transport = self.transport
        self._forget()
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():  # TLS: its close sends close_notify after the data
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the peer is gone already (ENOTCONN): nothing is left to protect
            transport.abort()
            return
        if not self.reading:
            self.reading = True
            transport.resume_reading()
        self.linger_timer = self.loop.call_later(_LINGER, transport.abort)
        self.server._lingering.add(self)

    def _shut(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._forget()

    def _forget(self) -> None:
        if self.closed and self not in self.server._connections:
            return
        self.closed = True
        self.server._connections.discard(self)
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        for watch_id in list(self.watches):
            self._forget_watch(watch_id)
        for task in self.watch_tasks:
            task.cancel()
        self.outbox.clear()
        if self.idle is not None:
            self.idle.set()
