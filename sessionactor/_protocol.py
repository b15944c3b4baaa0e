"""The wire protocol as a pure state machine: bytes in, events out; messages in, bytes out.

No sockets and no asyncio (in the manner of h11 and wsproto): the server and
client shells read bytes from their transport and hand them to
:meth:`ServerConnection.receive_data` / :meth:`ClientConnection.receive_data`,
act on the events that come back, and write whatever :meth:`data_to_send` returns.
Values are encoded by :mod:`sessionactor._codec`; ``docs/protocol.md`` describes
the same protocol for other languages.

Framing: a 4-byte big-endian unsigned length, then that many bytes holding one
msgpack object. The first frame each way is the handshake (a map); every frame
after it is a message, an array whose first item is its :class:`MessageKind`.

>>> client = ClientConnection(token="secret")
>>> server = ServerConnection(server_version="sessionactor 0.1.0", token="secret")
>>> server.receive_data(client.data_to_send())
[ClientHello(version=1)]
>>> client.receive_data(server.data_to_send())[0].server
'sessionactor 0.1.0'

Watches: a ``CALL`` of operation ``watch_variables`` opens a watch whose id is
that call's id. The server answers it with the revision the watch starts at,
follows that reply at once with a first ``WATCH_EVENTS`` (the initial events,
possibly none), and pushes ``WATCH_EVENTS`` until a ``WATCH_END``; the client
ends a watch early with ``UNWATCH``.

Adding a message kind: a member of :class:`MessageKind`, an event class, a
builder function, a ``send_*`` method on the sending side and an entry in the
receiving side's ``_receivers`` table.
"""

from __future__ import annotations

import abc
import enum
import hmac
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Generic, TypeVar

import attrs

from ._codec import Codec, encode_call
from ._frozen import DEFAULT_LIMITS, Limits
from .errors import (
    AuthenticationFailed,
    ConnectionLost,
    InvalidArgument,
    ProtocolError,
    SessionStoreError,
    describe,
)
from .messages import AnyCommand

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_HANDSHAKE_BYTES",
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "CallReceived",
    "ClientConnection",
    "ClientEvent",
    "ClientHello",
    "ConnectionAborted",
    "ConnectionClosed",
    "ConnectionState",
    "ErrorReceived",
    "HandshakeRejected",
    "MessageKind",
    "ProtocolViolation",
    "ReplyReceived",
    "ServerConnection",
    "ServerEvent",
    "ServerHello",
    "UnwatchReceived",
    "WatchEnded",
    "WatchEventsReceived",
    "call_message",
    "client_hello",
    "encode_frames",
    "error_message",
    "frame",
    "handshake_refusal",
    "reply_message",
    "server_hello",
    "unwatch_message",
    "watch_end_message",
    "watch_events_message",
]

PROTOCOL_NAME: Final = "sessionactor"
PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 16 * 2**20
"""The default largest frame, in bytes, not counting its 4-byte length prefix."""
MAX_HANDSHAKE_BYTES: Final = 64 * 1024
"""The largest handshake frame either side accepts. A handshake is a few dozen
bytes; a peer not yet authenticated must not make the other decode 16 MiB (whose
values can take many times that in memory)."""

_PREFIX_BYTES: Final = 4
_LARGEST_FRAME: Final = 2**32 - 1  # what a 4-byte prefix can say
_LARGEST_CALL_ID: Final = 2**64 - 1
# The fields of Limits the server's hello carries (spelled out: they are part of the protocol).
_LIMIT_NAMES: Final = ("max_items", "max_string_length", "max_depth")


class MessageKind(enum.IntEnum):
    """The first item of every message after the handshake.

    A peer that receives a kind it does not expect treats it as a protocol
    violation.
    """

    CALL = 0
    """Client to server: ``[0, call_id, operation, fields, trace]``."""
    REPLY = 1
    """Server to client: ``[1, call_id, value]``."""
    ERROR = 2
    """Server to client: ``[2, call_id, error]``; ``call_id`` nil for a connection-level
    error sent just before the server closes the connection."""
    WATCH_EVENTS = 3
    """Server to client: ``[3, watch_id, [change, ...]]``, changes in revision order."""
    WATCH_END = 4
    """Server to client: ``[4, watch_id, error]``: the watch ended; ``error`` is nil when its
    session closed (the last change said so), else why (``WatchOverflow``, ``StoreClosed``)."""
    UNWATCH = 5
    """Client to server: ``[5, watch_id]``: end this watch. Events already sent still
    arrive; nothing follows them, not even a ``WATCH_END``."""


class ConnectionState(enum.Enum):
    """Where a connection is in its life."""

    HANDSHAKE = "handshake"
    """Only the handshake frame is accepted (a client may already send calls)."""
    OPEN = "open"
    """The handshake succeeded; messages flow."""
    CLOSED = "closed"
    """The peer closed the connection at a frame boundary, or said why it closes."""
    FAILED = "failed"
    """The handshake was refused or the peer broke the protocol; ``error`` says how."""


# Events ---------------------------------------------------------------------


@attrs.frozen
class ClientHello:
    """Server side: the client's handshake was accepted, and the answer is queued."""

    version: int


@attrs.frozen
class ServerHello:
    """Client side: the server accepted the handshake.

    ``max_frame_bytes`` is the largest frame the server takes; the client's
    ``send_call`` refuses larger ones from now on. ``limits`` are the server's
    store's :class:`~sessionactor.Limits`, for the client to copy arguments in
    with (the defaults when an older server does not say).
    """

    version: int
    server: str
    max_frame_bytes: int
    limits: Limits = DEFAULT_LIMITS


@attrs.frozen
class HandshakeRejected:
    """The handshake failed: ``error`` is an ``AuthenticationFailed`` or a ``ProtocolError``.

    On the server the refusal is queued in :meth:`data_to_send`; send it, then
    close. On the client the server refused; it closes the connection.
    """

    error: SessionStoreError


@attrs.frozen
class CallReceived:
    """Server side: a call. Build its command with :func:`decode_call`.

    ``trace`` holds the caller's W3C trace-context headers (``traceparent``,
    ``tracestate``) for the global propagator's ``extract``, or is None.
    """

    call_id: int
    operation: str
    fields: dict[str, object]
    trace: dict[str, str] | None


@attrs.frozen
class ReplyReceived:
    """Client side: the value a call returned."""

    call_id: int
    value: object


@attrs.frozen
class ErrorReceived:
    """Client side: the error a call raised, of its own class with its attributes."""

    call_id: int
    error: SessionStoreError


@attrs.frozen
class UnwatchReceived:
    """Server side: the client ends watch ``watch_id`` (it may have ended already)."""

    watch_id: int


@attrs.frozen
class WatchEventsReceived:
    """Client side: changes pushed for watch ``watch_id``, in revision order."""

    watch_id: int
    changes: list[object]


@attrs.frozen
class WatchEnded:
    """Client side: watch ``watch_id`` has ended; ``error`` says why, None when it ended
    normally (its session closed, or the client asked)."""

    watch_id: int
    error: SessionStoreError | None


@attrs.frozen
class ConnectionAborted:
    """Client side: the server is closing the connection and says why (``ERROR`` with
    a nil call id). Calls still awaiting a reply will not get one."""

    error: SessionStoreError


@attrs.frozen
class ProtocolViolation:
    """The peer broke the protocol; the connection is ``FAILED`` and must be closed.

    A server queues a last ``ERROR`` message (or, during the handshake, a refusal)
    saying why: send :meth:`data_to_send`, then close.
    """

    error: ProtocolError


@attrs.frozen
class ConnectionClosed:
    """The peer closed its side of the connection between two frames."""


ServerEvent = (
    ClientHello
    | HandshakeRejected
    | CallReceived
    | UnwatchReceived
    | ProtocolViolation
    | ConnectionClosed
)
ClientEvent = (
    ServerHello
    | HandshakeRejected
    | ReplyReceived
    | ErrorReceived
    | WatchEventsReceived
    | WatchEnded
    | ConnectionAborted
    | ProtocolViolation
    | ConnectionClosed
)


# Builders -------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian length in front.

    >>> frame(b"\\xc0")
    b'\\x00\\x00\\x00\\x01\\xc0'
    """
    return len(payload).to_bytes(_PREFIX_BYTES, "big") + payload


def client_hello(token: str | None) -> dict[str, object]:
    """The client's handshake: the first frame it sends."""
    return {"protocol": PROTOCOL_NAME, "version": PROTOCOL_VERSION, "token": token}


def server_hello(
    server_version: str, max_frame_bytes: int, limits: Limits = DEFAULT_LIMITS
) -> dict[str, object]:
    """The server's answer to an accepted handshake; ``limits`` are its store's."""
    return {
        "protocol": PROTOCOL_NAME,
        "version": PROTOCOL_VERSION,
        "ok": True,
        "server": server_version,
        "max_frame_bytes": max_frame_bytes,
        "limits": {name: getattr(limits, name) for name in _LIMIT_NAMES},
    }


def handshake_refusal(error: SessionStoreError) -> dict[str, object]:
    """The server's answer to a refused handshake; it closes the connection after it."""
    return {"protocol": PROTOCOL_NAME, "version": PROTOCOL_VERSION, "ok": False, "error": error}


def call_message(
    call_id: int, operation: str, fields: Mapping[str, object], trace: Mapping[str, str] | None
) -> list[object]:
    """A ``CALL`` message. ``fields`` are the call's arguments by parameter name."""
    return [MessageKind.CALL.value, call_id, operation, fields, trace]


def reply_message(call_id: int, value: object) -> list[object]:
    """A ``REPLY`` message: the value call ``call_id`` returned."""
    return [MessageKind.REPLY.value, call_id, value]


def error_message(call_id: int | None, error: SessionStoreError) -> list[object]:
    """An ``ERROR`` message: the error call ``call_id`` raised, or (``call_id`` None)
    why the server closes the connection."""
    return [MessageKind.ERROR.value, call_id, error]


def watch_events_message(watch_id: int, changes: list[object]) -> list[object]:
    """A ``WATCH_EVENTS`` message: changes of watch ``watch_id``, in revision order."""
    return [MessageKind.WATCH_EVENTS.value, watch_id, changes]


def watch_end_message(watch_id: int, error: SessionStoreError | None) -> list[object]:
    """A ``WATCH_END`` message: watch ``watch_id`` ended, normally (None) or with ``error``."""
    return [MessageKind.WATCH_END.value, watch_id, error]


def unwatch_message(watch_id: int) -> list[object]:
    """An ``UNWATCH`` message: the client ends watch ``watch_id``."""
    return [MessageKind.UNWATCH.value, watch_id]


def encode_frames(
    codec: Codec, messages: Iterable[object], max_frame_bytes: int = MAX_FRAME_BYTES
) -> bytes:
    """Several messages (or handshakes) framed into one bytes object, for one write.

    Raises :class:`~sessionactor._codec.EncodeError` for a value without a wire
    form and ``InvalidArgument`` for a message larger than ``max_frame_bytes``.
    """
    out = bytearray()
    for message in messages:
        out += frame(_checked_payload(codec, message, max_frame_bytes))
    return bytes(out)


def _checked_payload(codec: Codec, message: object, max_frame_bytes: int) -> bytes:
    payload = codec.encode(message)
    if len(payload) > max_frame_bytes:
        raise InvalidArgument(
            f"a message of {len(payload)} bytes exceeds max_frame_bytes {max_frame_bytes}"
        )
    return payload


# Checks of received values ----------------------------------------------------


def _require_call_id(value: object) -> int:
    if type(value) is not int or not 0 <= value <= _LARGEST_CALL_ID:
        raise ProtocolError(f"a call id must be an unsigned 64-bit int, got {describe(value)}")
    return value


def _require_str(value: object, what: str) -> str:
    if type(value) is not str:
        raise ProtocolError(f"{what} must be a str, got {describe(value)}")
    return value


def _require_error(value: object, what: str) -> SessionStoreError:
    if not isinstance(value, SessionStoreError):
        raise ProtocolError(f"{what} must be an error value, got {describe(value)}")
    return value


def _require_protocol(handshake: dict[object, object], side: str) -> None:
    name = handshake.get("protocol")
    if name != PROTOCOL_NAME:
        raise ProtocolError(f"{side} speaks protocol {describe(name)}, not {PROTOCOL_NAME!r}")
    version = handshake.get("version")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"{side} speaks protocol version {describe(version)}; "
            f"this side speaks version {PROTOCOL_VERSION}"
        )


def _require_limits(value: object) -> Limits:
    """The store limits a server's hello announces. An older server announces none, and
    one may leave a field out: the default stands for what is not said."""
    if value is None:
        return DEFAULT_LIMITS
    if type(value) is not dict:
        raise ProtocolError(f"the server's limits must be a map, got {describe(value)}")
    announced: dict[str, int] = {}
    for name in _LIMIT_NAMES:
        limit = value.get(name, getattr(DEFAULT_LIMITS, name))
        if type(limit) is not int or limit < 1:
            raise ProtocolError(f"the server's {name} is invalid: {describe(limit)}")
        announced[name] = limit
    return Limits(**announced)


def _check_frame_limit(value: object) -> int:
    if type(value) is not int or not 1 <= value <= _LARGEST_FRAME:
        raise InvalidArgument(
            f"max_frame_bytes must be an int from 1 to {_LARGEST_FRAME}, got {describe(value)}"
        )
    return value


def _token_bytes(token: str) -> bytes:
    return token.encode("utf-8", "surrogatepass")


# Connections ----------------------------------------------------------------


E = TypeVar("E", ServerEvent, ClientEvent)


class _Connection(abc.ABC, Generic[E]):
    """Framing shared by both sides: assembles frames from received bytes, queues
    outgoing frames, and tracks the state. Each side says what its frames may be."""

    def __init__(self, *, max_frame_bytes: int, codec: Codec | None) -> None:
        self._max_frame_bytes = _check_frame_limit(max_frame_bytes)
        self._receive_limit = min(self._max_frame_bytes, MAX_HANDSHAKE_BYTES)  # until OPEN
        self._codec = Codec() if codec is None else codec
        self._state = ConnectionState.HANDSHAKE
        self._live = True  # HANDSHAKE or OPEN: checked on every frame, so kept apart
        self._error: SessionStoreError | None = None
        # Only the frame being assembled is kept: its prefix until the length is
        # known, then its body. A frame is never started beyond max_frame_bytes.
        self._inbound = bytearray()
        self._frame_length: int | None = None
        self._outbound = bytearray()
        self._calls: set[int] = set()

    @property
    def state(self) -> ConnectionState:
        """The connection's state (see :class:`ConnectionState`)."""
        return self._state

    @property
    def error(self) -> SessionStoreError | None:
        """Why the connection failed or was aborted; None while it has not."""
        return self._error

    @property
    def calls_in_flight(self) -> int:
        """How many calls have been sent (client) or received (server) and not answered."""
        return len(self._calls)

    def data_to_send(self) -> bytes:
        """Every frame queued since the last call, as one bytes object (possibly empty)."""
        data = bytes(self._outbound)
        self._outbound.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[E]:
        """Take bytes received from the peer; return the events they complete, in order.

        Stops at the first protocol violation (the last event is then a
        :class:`ProtocolViolation` or :class:`HandshakeRejected`); once the
        connection is closed or failed, further bytes are ignored.
        """
        if type(data) is not bytes:
            data = bytes(data)
        events: list[E] = []
        offset = 0
        size = len(data)
        while offset < size and self._live:
            length = self._frame_length
            if length is None:
                if self._inbound or size - offset < _PREFIX_BYTES:  # a prefix in pieces
                    piece = data[offset : offset + _PREFIX_BYTES - len(self._inbound)]
                    self._inbound += piece
                    offset += len(piece)
                    if len(self._inbound) < _PREFIX_BYTES:
                        break
                    length = int.from_bytes(self._inbound, "big")
                    self._inbound.clear()
                else:
                    length = int.from_bytes(data[offset : offset + _PREFIX_BYTES], "big")
                    offset += _PREFIX_BYTES
                if not 0 < length <= self._receive_limit:
                    handshaking = self._state is ConnectionState.HANDSHAKE
                    error = _frame_size_error(length, self._receive_limit, handshaking)
                    events.append(self._fail(error))
                    break
                self._frame_length = length
            if self._inbound or size - offset < length:  # a body in pieces
                piece = data[offset : offset + length - len(self._inbound)]
                self._inbound += piece
                offset += len(piece)
                if len(self._inbound) < length:
                    break
                payload = bytes(self._inbound)
                self._inbound.clear()
            else:
                payload = data[offset : offset + length]
                offset += length
            self._frame_length = None
            try:
                events.append(self._receive_frame(payload))
            except ProtocolError as error:
                events.append(self._fail(error))
                break
        return events

    def receive_eof(self) -> list[E]:
        """The peer closed its side: a :class:`ConnectionClosed`, or a
        :class:`ProtocolViolation` if it stopped in the middle of a frame."""
        if not self._live:
            return []
        if self._frame_length is not None or self._inbound:
            expected = "its length" if self._frame_length is None else f"{self._frame_length} bytes"
            error = ProtocolError(
                f"the connection closed in the middle of a frame: {len(self._inbound)} bytes of "
                f"{expected} received"
            )
            return [self._fail(error, farewell=False)]
        self._close()
        return [self._closed_event()]

    def _enter_open(self) -> None:
        self._state = ConnectionState.OPEN
        self._receive_limit = self._max_frame_bytes

    def _close(self) -> None:
        self._state = ConnectionState.CLOSED
        self._live = False
        self._inbound = bytearray()
        self._frame_length = None

    def _enter_failed(self, error: SessionStoreError) -> None:
        self._close()
        self._state = ConnectionState.FAILED
        self._error = error

    @abc.abstractmethod
    def _receive_frame(self, payload: bytes) -> E:
        """The event of one complete frame; raises ``ProtocolError`` if it is not valid here."""

    @abc.abstractmethod
    def _fail(self, error: ProtocolError, *, farewell: bool = True) -> E:
        """Enter ``FAILED`` because the peer broke the protocol; the event reporting it.
        ``farewell``: whether the peer may still read a last frame saying why."""

    @abc.abstractmethod
    def _closed_event(self) -> E:
        """The event of the peer closing between frames."""

    def _queue(self, message: object, max_frame_bytes: int) -> None:
        """Encode and queue one frame; nothing is queued if encoding fails."""
        payload = _checked_payload(self._codec, message, max_frame_bytes)
        self._outbound += len(payload).to_bytes(_PREFIX_BYTES, "big")
        self._outbound += payload

    def _decode_message(self, payload: bytes) -> tuple[int, list[object]]:
        message = self._codec.decode(payload)
        if type(message) is not list or not message:
            raise ProtocolError(f"a message must be a non-empty array, got {describe(message)}")
        kind = message[0]
        if type(kind) is not int:
            raise ProtocolError(f"a message kind must be an int, got {describe(kind)}")
        return kind, message

    def _require_open(self) -> None:
        if not self._live:
            raise ConnectionLost(f"the connection is {self._state.value}")


def _frame_size_error(length: int, limit: int, handshaking: bool) -> ProtocolError:
    if length == 0:
        return ProtocolError("a frame of length 0 (a frame holds exactly one msgpack value)")
    if handshaking:
        return ProtocolError(f"a handshake frame of {length} bytes exceeds the limit of {limit}")
    return ProtocolError(f"a frame of {length} bytes exceeds max_frame_bytes {limit}")


def _require_arity(message: list[object], kind: MessageKind, arity: int) -> None:
    # A later version may append items to a kind; only missing ones are an error.
    if len(message) < arity:
        raise ProtocolError(
            f"a {kind.name} message has {arity} items, got {len(message)}: {describe(message)}"
        )


class ServerConnection(_Connection[ServerEvent]):
    """The server's side of one connection.

    ``token``: the token clients must present (compared in constant time), or
    None to accept any. ``server_version`` and ``limits`` (the served store's)
    are sent to the client in the handshake answer. ``max_frame_bytes`` bounds
    every frame either way.

    >>> server = ServerConnection(server_version="test", token="t")
    >>> events = server.receive_data(frame(Codec().encode(client_hello("wrong"))))
    >>> events[0].error
    AuthenticationFailed('the session store refused the token')
    >>> server.state
    <ConnectionState.FAILED: 'failed'>
    """

    def __init__(
        self,
        *,
        server_version: str,
        token: str | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        codec: Codec | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes, codec=codec)
        self._server_version = server_version
        self._limits = limits
        self._token = None if token is None else _token_bytes(token)
        self._receivers: dict[int, Callable[[list[object]], ServerEvent]] = {
            MessageKind.CALL: self._receive_call,
            MessageKind.UNWATCH: self._receive_unwatch,
        }

    def send_reply(self, call_id: int, value: object) -> None:
        """Queue the reply to call ``call_id``.

        Raises ``EncodeError`` if ``value`` has no wire form and ``InvalidArgument``
        if it is larger than ``max_frame_bytes`` (the call still awaits an answer:
        send an error instead), ``ValueError`` if the call is not awaiting one, and
        ``ConnectionLost`` once the connection is closed.
        """
        self._answer(call_id, reply_message(call_id, value))

    def send_error(self, call_id: int, error: SessionStoreError) -> None:
        """Queue ``error`` as the outcome of call ``call_id`` (see :meth:`send_reply`)."""
        self._answer(call_id, error_message(call_id, error))

    def send_watch_events(self, watch_id: int, changes: list[object]) -> None:
        """Queue changes of watch ``watch_id`` (whose opening call was answered).

        Raises ``EncodeError``/``InvalidArgument`` as :meth:`send_reply` does (nothing
        is queued then) and ``ConnectionLost`` once the connection is closed.
        """
        self._require_open()
        self._queue(watch_events_message(watch_id, changes), self._max_frame_bytes)

    def send_watch_end(self, watch_id: int, error: SessionStoreError | None) -> None:
        """Queue the end of watch ``watch_id``: None when it ended normally."""
        self._require_open()
        self._queue(watch_end_message(watch_id, error), _LARGEST_FRAME)

    def abort(self, error: SessionStoreError) -> None:
        """Queue a last frame telling the client why the server closes the connection
        (a refusal during the handshake, an ``ERROR`` with a nil call id after it),
        and enter ``CLOSED``: for a handshake that never comes, a server shutting
        down, or a client that must go. Send :meth:`data_to_send`, then close."""
        self._require_open()
        if self._state is ConnectionState.HANDSHAKE:
            self._queue(handshake_refusal(error), _LARGEST_FRAME)
        else:
            self._queue(error_message(None, error), _LARGEST_FRAME)
        self._close()
        self._error = error
        self._calls.clear()

    def _answer(self, call_id: int, message: list[object]) -> None:
        self._require_open()
        if call_id not in self._calls:
            raise ValueError(f"call {describe(call_id)} is not awaiting a reply")
        self._queue(message, self._max_frame_bytes)
        self._calls.discard(call_id)

    def _fail(self, error: ProtocolError, *, farewell: bool = True) -> ServerEvent:
        handshaking = self._state is ConnectionState.HANDSHAKE
        if farewell:  # tell the client why, before the shell closes the connection
            answer = handshake_refusal(error) if handshaking else error_message(None, error)
            self._queue(answer, _LARGEST_FRAME)
        self._enter_failed(error)
        return HandshakeRejected(error) if handshaking else ProtocolViolation(error)

    def _closed_event(self) -> ServerEvent:
        return ConnectionClosed()

    def _receive_frame(self, payload: bytes) -> ServerEvent:
        if self._state is ConnectionState.HANDSHAKE:
            return self._receive_hello(payload)
        kind, message = self._decode_message(payload)
        receiver = self._receivers.get(kind)
        if receiver is None:
            raise ProtocolError(f"a client may not send a message of kind {kind}")
        return receiver(message)

    def _receive_hello(self, payload: bytes) -> ServerEvent:
        hello = self._codec.decode(payload)
        if type(hello) is not dict:
            raise ProtocolError(f"the handshake must be a map, got {describe(hello)}")
        _require_protocol(hello, "the client")
        token = hello.get("token")
        if token is not None and type(token) is not str:
            raise ProtocolError(f"the handshake token must be a str or nil, got {describe(token)}")
        if self._token is not None:
            if token is None:
                return self._refuse(AuthenticationFailed("the session store requires a token"))
            if not hmac.compare_digest(_token_bytes(token), self._token):
                return self._refuse(AuthenticationFailed())
        answer = server_hello(self._server_version, self._max_frame_bytes, self._limits)
        self._queue(answer, _LARGEST_FRAME)
        self._enter_open()
        return ClientHello(PROTOCOL_VERSION)

    def _receive_unwatch(self, message: list[object]) -> ServerEvent:
        _require_arity(message, MessageKind.UNWATCH, 2)
        return UnwatchReceived(_require_call_id(message[1]))

    def _refuse(self, error: AuthenticationFailed) -> ServerEvent:
        self._queue(handshake_refusal(error), _LARGEST_FRAME)
        self._enter_failed(error)
        return HandshakeRejected(error)

    def _receive_call(self, message: list[object]) -> ServerEvent:
        _require_arity(message, MessageKind.CALL, 5)
        call_id = _require_call_id(message[1])
        operation = _require_str(message[2], "an operation")
        fields = message[3]
        if type(fields) is not dict or not all(type(name) is str for name in fields):
            raise ProtocolError(f"call fields must be a map by field name, got {describe(fields)}")
        trace = message[4]
        if trace is not None and (
            type(trace) is not dict
            or not all(type(key) is str and type(value) is str for key, value in trace.items())
        ):
            raise ProtocolError(
                f"a call's trace must be a map of str or nil, got {describe(trace)}"
            )
        if call_id in self._calls:
            raise ProtocolError(f"call id {call_id} is already awaiting a reply")
        self._calls.add(call_id)
        return CallReceived(call_id, operation, fields, trace)


class ClientConnection(_Connection[ClientEvent]):
    """The client's side of one connection.

    The handshake is queued at once; calls may follow it before the answer comes
    (a refused handshake fails them all). ``max_frame_bytes`` bounds the frames
    the client accepts; the frames it sends are bounded by the server's limit
    once the server has announced it.

    >>> client = ClientConnection()
    >>> from sessionactor.messages import GetStats
    >>> client.send_call(GetStats())
    1
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        codec: Codec | None = None,
    ) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes, codec=codec)
        self._server_max_frame_bytes = self._max_frame_bytes  # until the server says
        self._next_call_id = 1
        self._receivers: dict[int, Callable[[list[object]], ClientEvent]] = {
            MessageKind.REPLY: self._receive_reply,
            MessageKind.ERROR: self._receive_error,
            MessageKind.WATCH_EVENTS: self._receive_watch_events,
            MessageKind.WATCH_END: self._receive_watch_end,
        }
        self._queue(client_hello(token), _LARGEST_FRAME)

    def send_call(self, command: AnyCommand, *, trace: Mapping[str, str] | None = None) -> int:
        """Queue a call of ``command``; its call id, which the reply will carry.

        Raises ``EncodeError`` if an argument has no wire form, ``InvalidArgument``
        if the call is larger than the server's ``max_frame_bytes``, and
        ``ConnectionLost`` once the connection is closed or failed. Nothing is
        queued when it raises.
        """
        self._require_open()
        call_id = self._next_call_id
        operation, fields = encode_call(command)
        message = call_message(call_id, operation, fields, trace)
        self._queue(message, self._server_max_frame_bytes)
        self._next_call_id = call_id + 1
        self._calls.add(call_id)
        return call_id

    def send_unwatch(self, watch_id: int) -> None:
        """Queue the end of watch ``watch_id`` (events already on their way still come)."""
        self._require_open()
        self._queue(unwatch_message(watch_id), _LARGEST_FRAME)

    def _fail(self, error: ProtocolError, *, farewell: bool = True) -> ClientEvent:
        self._enter_failed(error)  # the server gets no message saying why: it reads none
        return ProtocolViolation(error)

    def _closed_event(self) -> ClientEvent:
        return ConnectionClosed()

    def _receive_frame(self, payload: bytes) -> ClientEvent:
        if self._state is ConnectionState.HANDSHAKE:
            return self._receive_answer(payload)
        kind, message = self._decode_message(payload)
        receiver = self._receivers.get(kind)
        if receiver is None:
            raise ProtocolError(f"a server may not send a message of kind {kind}")
        return receiver(message)

    def _receive_answer(self, payload: bytes) -> ClientEvent:
        answer = self._codec.decode(payload)
        if type(answer) is not dict or type(answer.get("ok")) is not bool:
            raise ProtocolError(
                f"the handshake answer must be a map with ok, got {describe(answer)}"
            )
        if not answer["ok"]:
            error = _require_error(answer.get("error"), "a handshake refusal's error")
            self._enter_failed(error)
            return HandshakeRejected(error)
        _require_protocol(answer, "the server")
        server = _require_str(answer.get("server"), "the server's version")
        limit = answer.get("max_frame_bytes")
        if type(limit) is not int or not 1 <= limit <= _LARGEST_FRAME:
            raise ProtocolError(f"the server's max_frame_bytes is invalid: {describe(limit)}")
        limits = _require_limits(answer.get("limits"))
        self._server_max_frame_bytes = limit
        self._enter_open()
        return ServerHello(PROTOCOL_VERSION, server, limit, limits)

    def _answered(self, value: object) -> int:
        call_id = _require_call_id(value)
        if call_id not in self._calls:
            raise ProtocolError(f"an answer to call {call_id}, which is not awaiting one")
        self._calls.discard(call_id)
        return call_id

    def _receive_reply(self, message: list[object]) -> ClientEvent:
        _require_arity(message, MessageKind.REPLY, 3)
        return ReplyReceived(self._answered(message[1]), message[2])

    def _receive_watch_events(self, message: list[object]) -> ClientEvent:
        _require_arity(message, MessageKind.WATCH_EVENTS, 3)
        changes = message[2]
        if type(changes) is not list:
            raise ProtocolError(f"watch events must be an array, got {describe(changes)}")
        return WatchEventsReceived(_require_call_id(message[1]), changes)

    def _receive_watch_end(self, message: list[object]) -> ClientEvent:
        _require_arity(message, MessageKind.WATCH_END, 3)
        error = message[2]
        if error is not None:
            error = _require_error(error, "a WATCH_END message's error")
        return WatchEnded(_require_call_id(message[1]), error)

    def _receive_error(self, message: list[object]) -> ClientEvent:
        _require_arity(message, MessageKind.ERROR, 3)
        error = _require_error(message[2], "an ERROR message's error")
        if message[1] is None:
            self._close()
            self._error = error
            return ConnectionAborted(error)
        return ErrorReceived(self._answered(message[1]), error)
