"""``RemoteSessionStore``: the store's API for a store served by another process or machine.

``connect(address)`` gives a store object with every call of
:class:`SessionStore`, with the same arguments, the same frozen snapshots and
the same errors, over one connection that carries any number of calls at once
(pipelined; calls one task makes one after another are handled in that order).

A call whose connection breaks before its reply raises :class:`ConnectionLost`:
like :class:`CallTimeout`, it may or may not have been applied, and it is never
sent again behind the caller's back. The next call connects again (after a
short, growing pause if connecting keeps failing), so a server restarted at the
same address is reached by the same store object. ``call_timeout`` bounds a
call end to end, connecting included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl as ssl_module
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, NoReturn, Self, TypeVar

from opentelemetry import propagate
from opentelemetry.trace import get_current_span

from . import messages as m
from ._address import UnixAddress, parse_address
from ._api import AsyncFacade, StoreCalls
from ._codec import Codec, EncodeError, encode_call
from ._frozen import DEFAULT_LIMITS, FrozenMap, Limits, Owned
from ._protocol import (
    MAX_FRAME_BYTES,
    ClientConnection,
    ConnectionAborted,
    ConnectionClosed,
    ErrorReceived,
    HandshakeRejected,
    ProtocolViolation,
    ReplyReceived,
    ServerHello,
    WatchEnded,
    WatchEventsReceived,
)
from ._timeouts import CallDeadlines
from ._watch import Watcher, Watching, watch_arguments
from .errors import (
    CallTimeout,
    ConnectionLost,
    InvalidArgument,
    SessionStoreError,
    StoreClosed,
    describe,
)
from .mirror import Mirroring
from .model import VariableChange

__all__ = ["RemoteSessionStore", "connect"]

R = TypeVar("R")

TOKEN_ENVIRONMENT: Final = "SESSIONACTOR_TOKEN"
_FIRST_BACKOFF: Final = 0.05  # seconds before connecting again after a failed attempt
_LAST_BACKOFF: Final = 2.0


def connect(
    address: str,
    *,
    token: str | None = None,
    ssl: ssl_module.SSLContext | None = None,
    call_timeout: float | None = 5.0,
) -> RemoteSessionStore:
    """A store served at ``address`` (``tcp://HOST:PORT`` or ``unix:/path``), for ``async with``.

    The options are those of :class:`RemoteSessionStore`: ``token`` defaults to
    the environment variable ``SESSIONACTOR_TOKEN``, ``ssl`` makes TCP use TLS,
    ``call_timeout`` bounds each call end to end. Entering the block connects,
    and raises ``AuthenticationFailed`` if the server refuses the token, or
    ``ConnectionLost`` if it cannot be reached.

    >>> async with connect("tcp://127.0.0.1:7420") as store:  # doctest: +SKIP
    ...     await store.create_session("s1")
    """
    return RemoteSessionStore(address, token=token, ssl=ssl, call_timeout=call_timeout)


def _frozen_mapping(items: dict[Any, object]) -> FrozenMap:
    return FrozenMap._owning(items)


def _unsendable(command: m.AnyCommand, codec: Codec, error: Exception) -> InvalidArgument:
    """The error a call gets when an argument has no wire form (or one of its own methods
    raises while it is encoded): an ``InvalidArgument`` naming the argument, raised
    before anything is sent."""
    operation, fields = encode_call(command)
    for name, value in fields.items():
        try:
            codec.encode(value)
        except Exception as fault:
            shown = value.value if type(value) is Owned else value
            why = fault if isinstance(fault, EncodeError) else f"encoding it raised {fault!r}"
            return InvalidArgument(
                f"{operation}(): {name} {describe(shown)} cannot be sent to a remote store "
                f"({why}); a remote call takes JSON-like data, bytes, tuples and Tensor"
            )
    return InvalidArgument(f"{operation}(): the call cannot be sent to a remote store ({error})")


def _trace_headers() -> dict[str, str] | None:
    """The caller's open span as W3C trace-context headers (the global propagator's), or None."""
    if not get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


class RemoteSessionStore(StoreCalls, Watching, Mirroring, AsyncFacade):
    """The calls of :class:`SessionStore`, answered by a server over one connection.

    Made by :func:`connect`, for ``async with``: entering connects, leaving
    closes the connection (not the store). What only makes sense next to the
    actor stays there: the clock, custom types (they live in the server) and
    the ``*_nowait`` reads.

    >>> async with connect("tcp://127.0.0.1:7420", token="s3cret") as store:  # doctest: +SKIP
    ...     await store.create_session("s1")

    Args:
        address: where the store is served: ``tcp://HOST:PORT`` or
            ``unix:/path/to.sock``.
        token: the secret the server asks for (``None``: the environment
            variable ``SESSIONACTOR_TOKEN``, or no token if it is unset). A
            refused token raises ``AuthenticationFailed``.
        ssl: an ``ssl.SSLContext`` for TLS to a ``tcp://`` address (``None``:
            plain TCP); the address's host is the server name TLS asks for
            and, if the context checks host names, checks the certificate against.
        call_timeout: seconds a call may take end to end, connecting included,
            before it raises ``CallTimeout`` (``None``: no limit). Like
            ``ConnectionLost``, a timed-out call may or may not have been applied.
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        call_timeout: float | None = 5.0,
    ) -> None:
        self._address = parse_address(address)
        if token is None:
            token = os.environ.get(TOKEN_ENVIRONMENT) or None
        if token is not None and type(token) is not str:
            raise InvalidArgument(f"token must be a str or None, got {describe(token)}")
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise InvalidArgument(f"ssl must be an ssl.SSLContext, got {describe(ssl)}")
        if call_timeout is not None and (
            isinstance(call_timeout, bool)
            or not isinstance(call_timeout, int | float)
            or not call_timeout > 0
        ):
            raise InvalidArgument(
                f"call_timeout must be a positive number or None, got {describe(call_timeout)}"
            )
        self._token = token
        self._ssl = ssl
        self._call_timeout: float | None = None if call_timeout is None else float(call_timeout)
        self._limits: Limits = DEFAULT_LIMITS  # until a server's hello gives its store's
        self._types = None  # the server checks imports against its types
        self._codec = Codec(frozen_mapping=_frozen_mapping)
        self._link: _Link | None = None
        self._connecting: asyncio.Future[_Link] | None = None
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._closed = False
        self._closed_reason = "the remote store was closed"
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server_version: str | None = None

    @property
    def address(self) -> str:
        return str(self._address)

    @property
    def running(self) -> bool:
        """Whether calls are taken (the store is not closed; it may still need to connect)."""
        return not self._closed

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._link is not None and self._link.usable

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._connected()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> NoReturn:
        raise TypeError(
            "RemoteSessionStore is asynchronous: use `async with connect(...) as store:`, "
            "or `with BlockingSessionStore.connect(...) as store:` in synchronous code"
        )

    def __exit__(self, *exc_info: object) -> None:  # pragma: no cover - __enter__ raises
        return None

    async def aclose(self) -> None:
        """Close the connection; calls still waiting get ``StoreClosed``."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            link.break_off(StoreClosed(self._closed_reason))
            await link.closed_event.wait()

    # -- the call path -------------------------------------------------------------

    def _call(self, command: m.Command[R]) -> asyncio.Future[R] | Any:
        link = self._link
        if link is not None and link.usable:
            return link.call(command)
        if self._closed:
            raise StoreClosed(self._closed_reason)
        return self._call_connecting(command)

    async def _call_connecting(self, command: m.Command[R]) -> R:
        try:
            async with asyncio.timeout(self._call_timeout):
                link = await self._connected()
                reply: R = await link.call(command)
                return reply
        except TimeoutError as error:
            if isinstance(error, CallTimeout):
                raise
            raise CallTimeout(command.operation, self._call_timeout or 0.0) from None

    async def _connected(self) -> _Link:
        """The open connection, connecting if there is none (one attempt for all callers)."""
        if self._closed:
            raise StoreClosed(self._closed_reason)
        link = self._link
        if link is not None and link.usable:
            return link
        connecting = self._connecting
        if connecting is None:
            loop = asyncio.get_running_loop()
            self._loop = loop
            connecting = self._connecting = loop.create_future()
            task = loop.create_task(self._connect(connecting))
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(connecting)

    async def _connect(self, result: asyncio.Future[_Link]) -> None:
        loop = asyncio.get_running_loop()
        try:
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            link = _Link(self, loop)
            address = self._address
            try:
                if isinstance(address, UnixAddress):
                    await loop.create_unix_connection(lambda: link, address.path)
                else:
                    await loop.create_connection(
                        lambda: link,
                        address.host,
                        address.port,
                        ssl=self._ssl,
                        server_hostname=address.host if self._ssl is not None else None,
                    )
            except OSError as error:
                self._failed_attempt()
                raise ConnectionLost(
                    f"cannot reach the session store at {self.address}: {error}"
                ) from error
            await link.handshake
            self._backoff = 0.0
            self._link = link
            result.set_result(link)
        except BaseException as error:
            if not result.done():
                if isinstance(error, asyncio.CancelledError):
                    result.set_exception(ConnectionLost("connecting was cancelled"))
                else:
                    result.set_exception(error)
            if not isinstance(error, Exception):
                raise
        finally:
            self._connecting = None

    def _failed_attempt(self) -> None:
        self._backoff = min(max(self._backoff * 2, _FIRST_BACKOFF), _LAST_BACKOFF)
        self._next_attempt = time.monotonic() + self._backoff

    def _lost(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
            self._failed_attempt()

    # -- watch -------------------------------------------------------------------------

    async def _subscribe(
        self,
        session_id: str,
        identifiers: Sequence[str] | None,
        pattern: str | None,
        include_initial: bool,
        buffer: int,
        on_ready: Callable[[Watcher], None] | None = None,
    ) -> Watcher:
        """A watch pushed by the server; end it with :meth:`_unsubscribe`."""
        copied = watch_arguments(identifiers, include_initial, buffer, self._limits)
        request = m.WatchVariables(session_id, copied, pattern, include_initial, buffer)
        try:
            async with asyncio.timeout(self._call_timeout):
                link = await self._connected()
                watcher, reply = link.open_watch(request, on_ready)
                try:
                    await reply
                    await watcher.listed  # the listing follows the reply: a mirror is whole
                except BaseException:
                    # Given up (cancelled, timed out) or refused: a watch the server may
                    # still open must not stay open there (closing a refused one is a no-op).
                    link.close_watch(watcher)
                    raise
        except TimeoutError:
            raise CallTimeout("watch_variables", self._call_timeout or 0.0) from None
        return watcher

    def _unsubscribe(self, watcher: Watcher) -> None:
        watcher.unsubscribe()
        link = self._link
        if link is not None:
            link.close_watch(watcher)


class _Link(asyncio.Protocol):
    """One connection: calls out, replies and pushed changes in."""

    def __init__(self, owner: RemoteSessionStore, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.connection = ClientConnection(
            token=owner._token, max_frame_bytes=MAX_FRAME_BYTES, codec=owner._codec
        )
        self.transport: asyncio.Transport | None = None
        self.usable = False  # connected and not broken (calls may go before the handshake ends)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.watches: dict[int, Watcher] = {}
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.closed_event = asyncio.Event()
        self.flush_scheduled = False
        timeout = owner._call_timeout
        self.deadlines = None if timeout is None else CallDeadlines(loop, timeout)

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.usable = True
        self.transport.write(self.connection.data_to_send())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        for event in self.connection.receive_data(data):
            match event:
                case ReplyReceived(call_id, value):
                    watcher = self.watches.get(call_id)
                    if isinstance(watcher, _RemoteWatcher) and not watcher.accepting_remote:
                        watcher.begin(value)  # type: ignore[arg-type]
                    future = self.pending.pop(call_id, None)
                    if future is not None and not future.done():
                        future.set_result(value)
                case ErrorReceived(call_id, error):
                    self.watches.pop(call_id, None)
                    future = self.pending.pop(call_id, None)
                    if future is not None and not future.done():
                        future.set_exception(error)
                case WatchEventsReceived(watch_id, changes):
                    watcher = self.watches.get(watch_id)
                    if watcher is not None:
                        watcher.receive(changes)  # type: ignore[arg-type]
                case WatchEnded(watch_id, error):
                    watcher = self.watches.pop(watch_id, None)
                    if watcher is not None:
                        watcher.end(error)
                case ServerHello(_, server, _, limits):
                    # Arguments are copied in with the server's limits from now on: the
                    # client then refuses no more than the server would.
                    self.owner.server_version = server
                    self.owner._limits = limits
                    if not self.handshake.done():
                        self.handshake.set_result(None)
                case HandshakeRejected(error):
                    self.break_off(error)
                    return
                case ConnectionAborted(error):
                    self.break_off(ConnectionLost(f"the server closed the connection: {error}"))
                    return
                case ProtocolViolation(error):
                    self.break_off(ConnectionLost(f"the server broke the protocol: {error}"))
                    return
                case ConnectionClosed():
                    self.break_off(ConnectionLost("the server closed the connection"))
                    return

    def eof_received(self) -> bool:
        self.connection.receive_eof()
        self.break_off(ConnectionLost("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "the connection to the session store was lost"
        self.break_off(ConnectionLost(f"{reason}: {exc}" if exc else reason))
        self.closed_event.set()

    # -- calls ---------------------------------------------------------------------------

    def call(self, command: m.AnyCommand) -> asyncio.Future[Any]:
        return self._send(command)[1]

    def _send(self, command: m.AnyCommand) -> tuple[int, asyncio.Future[Any]]:
        try:
            call_id = self.connection.send_call(command, trace=_trace_headers())
        except EncodeError as error:  # no wire form: nothing was sent
            raise _unsendable(command, self.owner._codec, error) from None
        except SessionStoreError:  # ConnectionLost, a call larger than a frame
            raise
        except Exception as error:  # an argument's own methods raise while it is encoded
            raise _unsendable(command, self.owner._codec, error) from None
        future = self.loop.create_future()
        self.pending[call_id] = future
        if self.deadlines is not None:
            self.deadlines.watch(future, command.operation)
        self._flush_soon()
        return call_id, future

    def open_watch(
        self, request: m.WatchVariables, on_ready: Callable[[Watcher], None] | None
    ) -> tuple[_RemoteWatcher, asyncio.Future[Any]]:
        call_id, reply = self._send(request)
        watcher = _RemoteWatcher(
            request.session_id,  # type: ignore[arg-type]
            call_id,
            buffer=request.buffer,  # type: ignore[arg-type]
            include_initial=request.include_initial,  # type: ignore[arg-type]
            on_overflow=lambda: self.close_watch(watcher),
            on_ready=on_ready,
            loop=self.loop,
        )
        self.watches[call_id] = watcher
        return watcher, reply

    def close_watch(self, watcher: Watcher) -> None:
        if self.watches.pop(watcher.token, None) is not None and self.usable:
            with contextlib.suppress(SessionStoreError):
                self.connection.send_unwatch(watcher.token)
                self._flush_soon()

    def _flush_soon(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        data = self.connection.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def break_off(self, error: SessionStoreError) -> None:
        """The connection is done: every waiting call and watch gets ``error``."""
        if not self.usable and not self.pending and not self.watches:
            if self.transport is None:
                self.closed_event.set()
            return
        self.usable = False
        self.owner._lost(self)
        if not self.handshake.done():
            self.handshake.set_exception(error)
            self.handshake.exception()  # retrieved: the callers get it through their calls
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        watches, self.watches = self.watches, {}
        # A watch ends with StoreClosed when this side closed the store, as a local
        # store's watches do when it stops; with ConnectionLost when the connection broke.
        ending = (
            error if isinstance(error, ConnectionLost | StoreClosed) else ConnectionLost(str(error))
        )
        for watcher in watches.values():
            watcher.end(ending)
        if self.deadlines is not None:
            self.deadlines.close()
        if self.transport is not None:
            self.transport.close()
        else:
            self.closed_event.set()


class _RemoteWatcher(Watcher):
    """A watcher fed by the server's pushed changes (its token is the watch's call id).
    Falling more than ``buffer`` behind ends it here and tells the server.

    ``listed`` is done once the first batch (the listing, possibly empty, which the
    server sends right after its reply) has arrived, or the watch has ended.
    """

    __slots__ = ("listed",)

    def __init__(
        self,
        session_id: str,
        token: int,
        *,
        buffer: int,
        include_initial: bool,
        on_overflow: Callable[[], None],
        on_ready: Callable[[Watcher], None] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(
            session_id,
            token,
            buffer=buffer,
            include_initial=include_initial,
            on_overflow=on_overflow,
            on_ready=on_ready,
        )
        self.listed: asyncio.Future[None] = loop.create_future()

    def receive(self, changes: list[VariableChange]) -> None:
        super().receive(changes)
        if not self.listed.done():
            self.listed.set_result(None)

    def end(self, error: SessionStoreError | None) -> None:
        super().end(error)
        if not self.listed.done():
            self.listed.set_result(None)

    @property
    def accepting_remote(self) -> bool:
        """Whether the server has answered: the watch started."""
        return self._filter is not None
