"""The sans-I/O wire protocol (``sessionactor._protocol``), driven with plain byte strings.

No sockets and no event loop: a client and a server state machine pass bytes to
each other by hand, and hostile peers are byte strings written out in full.
"""

from __future__ import annotations

import contextlib
import itertools
import tracemalloc
from collections.abc import Iterator, Sequence
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor._codec import Codec, EncodeError, decode_call
from sessionactor._frozen import DEFAULT_LIMITS, Limits
from sessionactor._protocol import (
    MAX_FRAME_BYTES,
    MAX_HANDSHAKE_BYTES,
    CallReceived,
    ClientConnection,
    ClientEvent,
    ClientHello,
    ConnectionAborted,
    ConnectionClosed,
    ConnectionState,
    ErrorReceived,
    HandshakeRejected,
    MessageKind,
    ProtocolViolation,
    ReplyReceived,
    ServerConnection,
    ServerEvent,
    ServerHello,
    call_message,
    client_hello,
    encode_frames,
    error_message,
    frame,
    reply_message,
)
from sessionactor.errors import (
    AuthenticationFailed,
    ConnectionLost,
    InvalidArgument,
    ProtocolError,
    StoreClosed,
    VariableNotFound,
    VersionConflict,
)
from sessionactor.messages import GetStats, GetVariable, ListSessions, UpdateVariable
from sessionactor.model import Variable

SERVER_VERSION = "sessionactor-test 1.0"
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def framed(message: object) -> bytes:
    """One frame holding ``message`` (which may be anything, to play a hostile peer)."""
    return frame(Codec().encode(message))


def open_pair(
    client_token: str | None = None, server_token: str | None = None
) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server whose handshake succeeded, with nothing left to send."""
    client = ClientConnection(token=client_token)
    server = ServerConnection(server_version=SERVER_VERSION, token=server_token)
    assert server.receive_data(client.data_to_send()) == [ClientHello(1)]
    assert isinstance(client.receive_data(server.data_to_send())[0], ServerHello)
    return client, server


def open_server(max_frame_bytes: int = MAX_FRAME_BYTES) -> ServerConnection:
    server = ServerConnection(server_version=SERVER_VERSION, max_frame_bytes=max_frame_bytes)
    assert server.receive_data(framed(client_hello(None))) == [ClientHello(1)]
    server.data_to_send()
    return server


def decode_frames(data: bytes) -> list[object]:
    """Every message in a byte stream of frames."""
    messages = []
    while data:
        length = int.from_bytes(data[:4], "big")
        messages.append(Codec().decode(data[4 : 4 + length]))
        data = data[4 + length :]
    return messages


def variable(value: object = 0.5) -> Variable:
    empty: MappingProxyType[str, object] = MappingProxyType({})
    return Variable("var_x", "x", "float", value, empty, empty, 1, 1.0, 2.0, 7)


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yields a list that holds the peak of traced allocations once the block ends."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


# Handshake -------------------------------------------------------------------


def test_the_right_token_opens_both_sides() -> None:
    client = ClientConnection(token="s3cret")
    server = ServerConnection(server_version=SERVER_VERSION, token="s3cret", max_frame_bytes=1000)
    assert server.receive_data(client.data_to_send()) == [ClientHello(1)]
    assert server.state is ConnectionState.OPEN
    assert client.receive_data(server.data_to_send()) == [ServerHello(1, SERVER_VERSION, 1000)]
    assert client.state is ConnectionState.OPEN
    assert client.error is None and server.error is None


def test_a_new_connection_awaits_the_handshake() -> None:
    assert ClientConnection().state is ConnectionState.HANDSHAKE
    assert ServerConnection(server_version=SERVER_VERSION).state is ConnectionState.HANDSHAKE


def test_the_handshake_frames_are_the_documented_maps() -> None:
    client = ClientConnection(token="t")
    server = ServerConnection(server_version=SERVER_VERSION, token="t")
    hello = client.data_to_send()
    assert decode_frames(hello) == [{"protocol": "sessionactor", "version": 1, "token": "t"}]
    server.receive_data(hello)
    assert decode_frames(server.data_to_send()) == [
        {
            "protocol": "sessionactor",
            "version": 1,
            "ok": True,
            "server": SERVER_VERSION,
            "max_frame_bytes": MAX_FRAME_BYTES,
            "limits": {"max_items": 100_000, "max_string_length": 1_000_000, "max_depth": 64},
        }
    ]


def test_the_server_answer_carries_its_stores_limits() -> None:
    limits = Limits(max_items=200_000, max_string_length=7, max_depth=3)
    client = ClientConnection()
    server = ServerConnection(server_version=SERVER_VERSION, limits=limits)
    server.receive_data(client.data_to_send())
    answer = server.data_to_send()
    [hello] = decode_frames(answer)
    assert isinstance(hello, dict)
    assert hello["limits"] == {
        "max_items": 200_000,
        "max_string_length": 7,
        "max_depth": 3,
    }
    assert client.receive_data(answer) == [ServerHello(1, SERVER_VERSION, MAX_FRAME_BYTES, limits)]


ACCEPTED = {"ok": True, "protocol": "sessionactor", "version": 1, "server": "s"}


@pytest.mark.parametrize(
    ("announced", "expected"),
    [
        (None, DEFAULT_LIMITS),  # an older server says nothing of its limits
        ({"max_items": 5}, Limits(max_items=5)),  # a key left out is its default
        ({"max_depth": 2, "max_bytes": 9}, Limits(max_depth=2)),  # an unknown key is ignored
    ],
)
def test_limits_a_server_does_not_announce_are_the_defaults(
    announced: dict[str, int] | None, expected: Limits
) -> None:
    answer: dict[str, object] = {**ACCEPTED, "max_frame_bytes": 9}
    if announced is not None:
        answer["limits"] = announced
    client = ClientConnection()
    [event] = client.receive_data(framed(answer))
    assert event == ServerHello(1, "s", 9, expected)
    assert client.state is ConnectionState.OPEN


@pytest.mark.parametrize("client_token", [None, "", "anything"])
def test_a_server_without_a_token_accepts_any_token(client_token: str | None) -> None:
    client, server = open_pair(client_token=client_token, server_token=None)
    assert client.state is server.state is ConnectionState.OPEN


def test_a_wrong_token_is_refused_and_both_sides_fail() -> None:
    client = ClientConnection(token="guess")
    server = ServerConnection(server_version=SERVER_VERSION, token="s3cret")
    [event] = server.receive_data(client.data_to_send())
    assert isinstance(event, HandshakeRejected)
    assert type(event.error) is AuthenticationFailed
    assert server.state is ConnectionState.FAILED
    refusal = server.data_to_send()
    [answer] = decode_frames(refusal)
    assert isinstance(answer, dict) and answer["ok"] is False
    assert type(answer["error"]) is AuthenticationFailed
    [client_event] = client.receive_data(refusal)
    assert isinstance(client_event, HandshakeRejected)
    assert type(client_event.error) is AuthenticationFailed
    assert client.state is ConnectionState.FAILED
    assert client.error is client_event.error
    with pytest.raises(ConnectionLost):
        client.send_call(GetStats())


@pytest.mark.parametrize(
    "hello",
    [
        {"protocol": "sessionactor", "version": 1, "token": None},
        {"protocol": "sessionactor", "version": 1},
    ],
)
def test_a_missing_token_is_refused_when_the_server_has_one(hello: dict[str, object]) -> None:
    server = ServerConnection(server_version=SERVER_VERSION, token="s3cret")
    [event] = server.receive_data(framed(hello))
    assert isinstance(event, HandshakeRejected)
    assert type(event.error) is AuthenticationFailed
    assert "requires a token" in str(event.error)


def test_calls_sent_behind_a_refused_handshake_are_never_seen() -> None:
    client = ClientConnection(token="guess")
    client.send_call(GetStats())
    server = ServerConnection(server_version=SERVER_VERSION, token="s3cret")
    events = server.receive_data(client.data_to_send())
    assert [type(event) for event in events] == [HandshakeRejected]


def test_tokens_are_compared_as_utf8_bytes_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[object, object]] = []

    def compare_digest(left: bytes, right: bytes) -> bool:
        compared.append((left, right))
        return left == right

    monkeypatch.setattr("hmac.compare_digest", compare_digest)
    _, server = open_pair(client_token="k\ud800é", server_token="k\ud800é")
    assert server.state is ConnectionState.OPEN
    assert compared == [(b"k\xed\xa0\x80\xc3\xa9", b"k\xed\xa0\x80\xc3\xa9")]
    refused = ServerConnection(server_version=SERVER_VERSION, token="k\ud800é")
    [event] = refused.receive_data(framed(client_hello("k\ud801é")))
    assert isinstance(event, HandshakeRejected)


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        ({"protocol": "sessionactor", "version": 2, "token": None}, "version 2"),
        ({"protocol": "sessionactor", "version": "1", "token": None}, "version '1'"),
        ({"protocol": "sessionactor", "version": True, "token": None}, "version True"),
        ({"protocol": "sessionactor", "token": None}, "version None"),
        ({"protocol": "other", "version": 1, "token": None}, "protocol 'other'"),
        ({"version": 1}, "protocol None"),
        ({"protocol": "sessionactor", "version": 1, "token": 42}, "token must be a str"),
        (["sessionactor", 1, None], "must be a map"),
        ([0, 1, "get_stats", {}, None], "must be a map"),
    ],
)
def test_a_malformed_handshake_is_refused_with_a_protocol_error(hello: object, reason: str) -> None:
    server = ServerConnection(server_version=SERVER_VERSION)
    [event] = server.receive_data(framed(hello))
    assert isinstance(event, HandshakeRejected)
    assert type(event.error) is ProtocolError
    assert reason in str(event.error)
    assert server.state is ConnectionState.FAILED
    [client_event] = ClientConnection().receive_data(server.data_to_send())
    assert isinstance(client_event, HandshakeRejected)
    assert type(client_event.error) is ProtocolError


def test_a_handshake_frame_is_small_whatever_max_frame_bytes() -> None:
    server = ServerConnection(server_version=SERVER_VERSION)
    hello = client_hello("x" * MAX_HANDSHAKE_BYTES)
    [event] = server.receive_data(framed(hello)[:4])
    assert isinstance(event, HandshakeRejected)
    assert "handshake frame of 65579 bytes exceeds the limit of 65536" in str(event.error)
    client = ClientConnection()
    [answer] = client.receive_data((MAX_HANDSHAKE_BYTES + 1).to_bytes(4, "big"))
    assert isinstance(answer, ProtocolViolation)


def test_bytes_that_are_no_handshake_are_refused() -> None:
    server = ServerConnection(server_version=SERVER_VERSION)
    [event] = server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(event, HandshakeRejected)
    assert "exceeds the limit" in str(event.error)  # "GET " read as a length
    assert server.data_to_send()  # the refusal, for a client that speaks the protocol


@pytest.mark.parametrize(
    "answer",
    [
        [1, 2, 3],
        {"protocol": "sessionactor", "version": 1},
        {"ok": 1},
        {"ok": True, "protocol": "sessionactor", "version": 2, "server": "s", "max_frame_bytes": 9},
        {"ok": True, "protocol": "sessionactor", "version": 1, "server": 5, "max_frame_bytes": 9},
        {"ok": True, "protocol": "sessionactor", "version": 1, "server": "s", "max_frame_bytes": 0},
        {**ACCEPTED, "max_frame_bytes": 9, "limits": [1, 2, 3]},
        {**ACCEPTED, "max_frame_bytes": 9, "limits": {"max_items": 0}},
        {**ACCEPTED, "max_frame_bytes": 9, "limits": {"max_depth": True}},
        {**ACCEPTED, "max_frame_bytes": 9, "limits": {"max_string_length": 1.5}},
        {"ok": False, "error": "not an error value"},
    ],
)
def test_a_malformed_handshake_answer_is_a_protocol_violation(answer: object) -> None:
    client = ClientConnection()
    [event] = client.receive_data(framed(answer))
    assert isinstance(event, ProtocolViolation)
    assert client.state is ConnectionState.FAILED


def test_the_server_answer_must_come_before_any_message() -> None:
    client = ClientConnection()
    call_id = client.send_call(GetStats())
    [event] = client.receive_data(framed(reply_message(call_id, 1)))
    assert isinstance(event, ProtocolViolation)


# Calls, replies and errors ---------------------------------------------------


def test_a_call_reaches_the_server_as_its_command_and_the_reply_comes_back() -> None:
    client, server = open_pair()
    command = UpdateVariable("s1", "x", 0.25, expected_version=1)
    call_id = client.send_call(command, trace=TRACE)
    [event] = server.receive_data(client.data_to_send())
    assert isinstance(event, CallReceived)
    assert (event.call_id, event.operation, event.trace) == (call_id, "update_variable", TRACE)
    assert decode_call(event.operation, event.fields) == command
    server.send_reply(call_id, variable(0.25))
    assert client.receive_data(server.data_to_send()) == [ReplyReceived(call_id, variable(0.25))]
    assert client.calls_in_flight == server.calls_in_flight == 0


def test_an_error_comes_back_with_its_class_and_attributes() -> None:
    client, server = open_pair()
    call_id = client.send_call(UpdateVariable("s1", "x", 1.0, expected_version=1))
    server.receive_data(client.data_to_send())
    server.send_error(call_id, VersionConflict(1, 4, "x"))
    [event] = client.receive_data(server.data_to_send())
    assert isinstance(event, ErrorReceived)
    assert type(event.error) is VersionConflict
    assert (event.error.expected, event.error.actual, event.error.identifier) == (1, 4, "x")
    assert str(event.error) == str(VersionConflict(1, 4, "x"))


def test_an_unknown_operation_is_the_calls_error_not_the_connections() -> None:
    _, server = open_pair()
    server.receive_data(framed(call_message(1, "drop_everything", {}, None)))
    assert server.state is ConnectionState.OPEN
    with pytest.raises(ProtocolError, match="unknown operation 'drop_everything'"):
        decode_call("drop_everything", {})


def test_calls_sent_before_the_answer_follow_the_handshake() -> None:
    client = ClientConnection()
    first = client.send_call(GetStats())
    second = client.send_call(ListSessions())
    server = ServerConnection(server_version=SERVER_VERSION)
    events = server.receive_data(client.data_to_send())
    assert events == [
        ClientHello(1),
        CallReceived(first, "get_stats", {}, None),
        CallReceived(second, "list_sessions", {}, None),
    ]


def test_call_ids_count_up_from_one() -> None:
    client, _ = open_pair()
    assert [client.send_call(GetStats()) for _ in range(3)] == [1, 2, 3]
    assert client.calls_in_flight == 3


def test_replies_queued_together_go_out_in_one_write_and_arrive_in_order() -> None:
    client, server = open_pair()
    ids = [client.send_call(GetVariable("s", f"v{i}")) for i in range(3)]
    server.receive_data(client.data_to_send())
    server.send_reply(ids[2], "third")
    server.send_error(ids[0], VersionConflict(0, 1))
    server.send_reply(ids[1], None)
    batch = server.data_to_send()
    assert server.data_to_send() == b""
    events = client.receive_data(batch)
    assert [(type(event), getattr(event, "call_id", None)) for event in events] == [
        (ReplyReceived, ids[2]),
        (ErrorReceived, ids[0]),
        (ReplyReceived, ids[1]),
    ]


def test_many_frames_in_one_chunk_are_all_received_in_order() -> None:
    client, server = open_pair()
    ids = [client.send_call(GetVariable("s", str(i))) for i in range(200)]
    events = server.receive_data(client.data_to_send())
    assert [event.call_id for event in events if isinstance(event, CallReceived)] == ids


def test_encode_frames_batches_any_messages() -> None:
    codec = Codec()
    data = encode_frames(codec, [reply_message(1, "a"), error_message(2, VersionConflict(0, 1))])
    assert data[:4] == len(codec.encode(reply_message(1, "a"))).to_bytes(4, "big")
    assert [message[:2] for message in decode_frames(data)] == [[1, 1], [2, 2]]  # type: ignore[index]


def byte_stream() -> tuple[bytes, list[ServerEvent]]:
    """A client's whole byte stream (handshake and calls), and the server's events for it."""
    client = ClientConnection(token="t")
    client.send_call(UpdateVariable("s", "x", "\ud800 value", metadata={"k": (1, 2)}), trace=TRACE)
    client.send_call(GetStats())
    client.send_call(GetVariable("s", "y" * 300))
    data = client.data_to_send()
    events = ServerConnection(server_version=SERVER_VERSION, token="t").receive_data(data)
    assert len(events) == 4
    return data, events


def test_bytes_fed_one_at_a_time_give_the_same_events() -> None:
    data, expected = byte_stream()
    server = ServerConnection(server_version=SERVER_VERSION, token="t")
    events: list[ServerEvent] = []
    for index in range(len(data)):
        events += server.receive_data(data[index : index + 1])
    assert events == expected


@given(st.lists(st.integers(0, 10_000), max_size=8))
def test_bytes_split_anywhere_give_the_same_events(cuts: list[int]) -> None:
    data, expected = byte_stream()
    bounds = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    server = ServerConnection(server_version=SERVER_VERSION, token="t")
    events: list[ServerEvent] = []
    for start, end in itertools.pairwise(bounds):
        events += server.receive_data(memoryview(data)[start:end])
    assert events == expected


def test_a_call_id_may_be_reused_once_answered_but_not_before() -> None:
    server = open_server()
    [first] = server.receive_data(framed(call_message(5, "get_stats", {}, None)))
    assert isinstance(first, CallReceived)
    server.send_reply(5, None)
    [again] = server.receive_data(framed(call_message(5, "get_stats", {}, None)))
    assert isinstance(again, CallReceived)
    [clash] = server.receive_data(framed(call_message(5, "get_stats", {}, None)))
    assert isinstance(clash, ProtocolViolation)
    assert "call id 5 is already awaiting a reply" in str(clash.error)


def test_the_server_answers_each_call_once() -> None:
    client, server = open_pair()
    call_id = client.send_call(GetStats())
    server.receive_data(client.data_to_send())
    server.send_reply(call_id, 1)
    with pytest.raises(ValueError, match="not awaiting a reply"):
        server.send_reply(call_id, 2)
    with pytest.raises(ValueError, match="not awaiting a reply"):
        server.send_error(99, VersionConflict(0, 1))


def test_later_versions_may_append_items_to_a_message() -> None:
    server = open_server()
    [event] = server.receive_data(framed([0, 1, "get_stats", {}, None, "a later item"]))
    assert event == CallReceived(1, "get_stats", {}, None)


# Limits ----------------------------------------------------------------------


def test_a_one_gib_length_is_refused_as_soon_as_its_prefix_arrives() -> None:
    server = open_server()
    more = b"\x00" * (1 << 20)
    with peak_memory() as peak:
        [event] = server.receive_data((2**30).to_bytes(4, "big"))
        assert server.receive_data(more) == []  # and nothing more is buffered
    assert isinstance(event, ProtocolViolation)
    assert str(event.error) == "a frame of 1073741824 bytes exceeds max_frame_bytes 16777216"
    assert server.state is ConnectionState.FAILED
    assert peak[0] < 256 << 10


def test_the_prefix_is_judged_even_when_it_trickles_in() -> None:
    server = open_server(max_frame_bytes=100)
    for byte in b"\x00\x00\x00":
        assert server.receive_data(bytes([byte])) == []
    [event] = server.receive_data(b"\x65")
    assert isinstance(event, ProtocolViolation)
    assert "101 bytes exceeds max_frame_bytes 100" in str(event.error)


def test_a_frame_of_exactly_max_frame_bytes_is_accepted() -> None:
    message = call_message(1, "get_stats", {"pad": "x" * 40}, None)
    size = len(Codec().encode(message))
    [event] = open_server(max_frame_bytes=size).receive_data(framed(message))
    assert isinstance(event, CallReceived)
    [event] = open_server(max_frame_bytes=size - 1).receive_data(framed(message))
    assert isinstance(event, ProtocolViolation)


def test_a_zero_length_frame_is_a_protocol_violation() -> None:
    [event] = open_server().receive_data(b"\x00\x00\x00\x00")
    assert isinstance(event, ProtocolViolation)
    assert "length 0" in str(event.error)


def test_a_large_frame_in_small_chunks_keeps_memory_bounded() -> None:
    limit = 4 << 20
    server = open_server(max_frame_bytes=limit)
    data = framed(call_message(1, "store_program", {"data": b"\x00" * (limit - 100)}, None))
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    with peak_memory() as peak:
        events: list[ServerEvent] = []
        for chunk in chunks:
            events += server.receive_data(chunk)
    assert [type(event) for event in events] == [CallReceived]
    assert peak[0] < 4 * limit  # the frame, its copy and the decoded bytes: no more


def test_a_call_larger_than_the_servers_limit_is_refused_before_sending() -> None:
    client = ClientConnection()
    server = ServerConnection(server_version=SERVER_VERSION, max_frame_bytes=200)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    with pytest.raises(InvalidArgument, match="exceeds max_frame_bytes 200"):
        client.send_call(UpdateVariable("s", "x", "v" * 500))
    assert client.data_to_send() == b""
    assert client.send_call(GetStats()) == 1  # the refused call took no id


def test_a_call_with_an_argument_without_wire_form_queues_nothing() -> None:
    client, _ = open_pair()
    with pytest.raises(EncodeError, match="set"):
        client.send_call(UpdateVariable("s", "x", {1, 2}))
    assert client.data_to_send() == b""
    assert client.calls_in_flight == 0


def test_a_reply_too_large_leaves_the_call_awaiting_an_answer() -> None:
    client = ClientConnection()
    server = ServerConnection(server_version=SERVER_VERSION, max_frame_bytes=200)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    call_id = client.send_call(GetStats())
    server.receive_data(client.data_to_send())
    with pytest.raises(InvalidArgument, match="exceeds max_frame_bytes"):
        server.send_reply(call_id, "x" * 500)
    server.send_error(call_id, InvalidArgument("the reply is too large"))
    [event] = client.receive_data(server.data_to_send())
    assert isinstance(event, ErrorReceived)


@pytest.mark.parametrize("limit", [0, -1, 2**32, 1.5, True])
def test_max_frame_bytes_must_fit_the_prefix(limit: int) -> None:
    with pytest.raises(InvalidArgument, match="max_frame_bytes"):
        ServerConnection(server_version=SERVER_VERSION, max_frame_bytes=limit)


# Ending ----------------------------------------------------------------------


def test_eof_between_frames_closes_cleanly() -> None:
    _, server = open_pair()
    assert server.receive_eof() == [ConnectionClosed()]
    assert server.state is ConnectionState.CLOSED
    assert server.receive_eof() == []
    with pytest.raises(ConnectionLost):
        server.send_reply(1, None)


@pytest.mark.parametrize("cut", [1, 3, 4, 10])
def test_eof_inside_a_frame_is_a_truncated_frame(cut: int) -> None:
    server = open_server()
    data = framed(call_message(1, "get_stats", {}, None))
    assert server.receive_data(data[:cut]) == []
    [event] = server.receive_eof()
    assert isinstance(event, ProtocolViolation)
    assert "closed in the middle of a frame" in str(event.error)
    assert server.data_to_send() == b""  # no farewell to a peer that has gone


def test_a_server_that_gives_up_tells_the_client_why() -> None:
    client, server = open_pair()
    pending = client.send_call(GetStats())
    server.receive_data(client.data_to_send())
    [violation] = server.receive_data(framed([MessageKind.REPLY, pending, None]))
    assert isinstance(violation, ProtocolViolation)
    [event] = client.receive_data(server.data_to_send())
    assert isinstance(event, ConnectionAborted)
    assert type(event.error) is ProtocolError
    assert str(event.error) == str(violation.error)
    assert client.state is ConnectionState.CLOSED
    assert client.error is event.error


def test_a_server_may_abort_an_open_connection_saying_why() -> None:
    client, server = open_pair()
    client.send_call(GetStats())
    server.receive_data(client.data_to_send())
    server.abort(StoreClosed("the server is shutting down"))
    assert server.state is ConnectionState.CLOSED
    assert server.calls_in_flight == 0
    [event] = client.receive_data(server.data_to_send())
    assert isinstance(event, ConnectionAborted)
    assert type(event.error) is StoreClosed
    assert str(event.error) == "the server is shutting down"
    with pytest.raises(ConnectionLost):
        server.abort(StoreClosed())


def test_a_server_may_abort_a_handshake_that_never_comes() -> None:
    server = ServerConnection(server_version=SERVER_VERSION)
    server.abort(ProtocolError("no handshake within 10 s"))
    [event] = ClientConnection().receive_data(server.data_to_send())
    assert isinstance(event, HandshakeRejected)
    assert str(event.error) == "no handshake within 10 s"


# Hostile peers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"kind": 0}, "must be a non-empty array"),
        ([], "must be a non-empty array"),
        (None, "must be a non-empty array"),
        (["0", 1], "kind must be an int"),
        ([True, 1, "get_stats", {}, None], "kind must be an int"),
        ([1.0, 1, "get_stats", {}, None], "kind must be an int"),
        ([1, 1, None], "may not send a message of kind 1"),
        ([2, 1, VersionConflict(0, 1)], "may not send a message of kind 2"),
        ([3, 1, []], "may not send a message of kind 3"),
        ([4, 1, None], "may not send a message of kind 4"),
        ([5], "UNWATCH message has 2 items, got 1"),
        ([5, -1], "call id must be"),
        ([99], "may not send a message of kind 99"),
        ([0, 1, "get_stats", {}], "CALL message has 5 items, got 4"),
        ([0, -1, "get_stats", {}, None], "call id must be"),
        ([0, 2**64, "get_stats", {}, None], "call id must be"),
        ([0, "1", "get_stats", {}, None], "call id must be"),
        ([0, 1.0, "get_stats", {}, None], "call id must be"),
        ([0, 1, 5, {}, None], "operation must be a str"),
        ([0, 1, b"get_stats", {}, None], "operation must be a str"),
        ([0, 1, "get_stats", [], None], "fields must be a map"),
        ([0, 1, "get_stats", MappingProxyType({}), None], "fields must be a map"),
        ([0, 1, "get_stats", {1: 2}, None], "fields must be a map"),
        ([0, 1, "get_stats", {b"session_id": 2}, None], "fields must be a map"),
        ([0, 1, "get_stats", {}, "00-abc"], "trace must be a map"),
        ([0, 1, "get_stats", {}, {"traceparent": 1}], "trace must be a map"),
    ],
)
def test_a_malformed_message_fails_the_connection_with_a_farewell(
    message: object, reason: str
) -> None:
    server = open_server()
    [event] = server.receive_data(framed(message))
    assert isinstance(event, ProtocolViolation)
    assert reason in str(event.error)
    assert server.state is ConnectionState.FAILED
    assert server.error is event.error
    [farewell] = decode_frames(server.data_to_send())
    assert isinstance(farewell, list) and farewell[:2] == [MessageKind.ERROR, None]
    assert str(farewell[2]) == str(event.error)
    assert server.receive_data(framed(call_message(1, "get_stats", {}, None))) == []


@pytest.mark.parametrize(
    "frame_payload",
    [b"\xc1", b"\x92\x00", b"\x91\x00\x00", b"\x95\x00\x01\xa1x\x80\xd6\xff\x00\x00\x00\x00"],
)
def test_a_frame_that_is_not_msgpack_fails_the_connection(frame_payload: bytes) -> None:
    [event] = open_server().receive_data(frame(frame_payload))
    assert isinstance(event, ProtocolViolation)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ([1, 99, "value"], "call 99, which is not awaiting one"),
        ([2, 99, VersionConflict(0, 1)], "call 99, which is not awaiting one"),
        ([2, 1, "not an error"], "error must be an error value"),
        ([2, None, "not an error"], "error must be an error value"),
        ([1, 1], "REPLY message has 3 items, got 2"),
        ([0, 1, "get_stats", {}, None], "may not send a message of kind 0"),
        ([5, 1], "may not send a message of kind 5"),
        ([3, 1, "not a list"], "watch events must be an array"),
        ([3, 1], "WATCH_EVENTS message has 3 items, got 2"),
        ([4, 1, "not an error"], "WATCH_END message's error must be an error value"),
    ],
)
def test_a_misbehaving_server_is_a_protocol_violation_on_the_client(
    message: object, reason: str
) -> None:
    client, _ = open_pair()
    client.send_call(GetStats())
    client.data_to_send()
    [event] = client.receive_data(framed(message))
    assert isinstance(event, ProtocolViolation)
    assert reason in str(event.error)
    assert client.state is ConnectionState.FAILED
    assert client.data_to_send() == b""
    with pytest.raises(ConnectionLost):
        client.send_call(GetStats())


def test_events_before_a_violation_in_the_same_chunk_are_kept() -> None:
    server = open_server()
    data = framed(call_message(1, "get_stats", {}, None)) + framed([]) + framed([0, 2])
    events = server.receive_data(data)
    assert [type(event) for event in events] == [CallReceived, ProtocolViolation]


@given(st.binary(max_size=200), st.booleans())
@settings(max_examples=200)
def test_random_bytes_only_ever_give_events(data: bytes, handshake_done: bool) -> None:
    server = open_server() if handshake_done else ServerConnection(server_version="x")
    events: Sequence[ServerEvent] = server.receive_data(data) + server.receive_eof()
    if any(isinstance(event, ProtocolViolation | HandshakeRejected) for event in events):
        assert server.state is ConnectionState.FAILED
    client, _ = open_pair()
    client_events: list[ClientEvent] = client.receive_data(data)
    assert all(not isinstance(event, ServerHello) for event in client_events)


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
@settings(max_examples=200)
def test_random_frames_after_the_handshake_only_ever_give_events(payloads: list[bytes]) -> None:
    server = open_server()
    server.receive_data(b"".join(frame(payload) for payload in payloads))
    assert server.state in {ConnectionState.OPEN, ConnectionState.FAILED}


# The worked example of docs/protocol.md ----------------------------------------


def test_the_documented_worked_example_is_the_real_encoding() -> None:
    client, _ = open_pair()
    client.send_call(GetVariable("s1", "temp"))
    assert client.data_to_send().hex(" ") == (
        "00 00 00 30 95 00 01 ac 67 65 74 5f 76 61 72 69 61 62 6c 65 82 aa 73 65 73 73 69 6f "
        "6e 5f 69 64 a2 73 31 aa 69 64 65 6e 74 69 66 69 65 72 a4 74 65 6d 70 c0"
    )


def test_the_documented_handshake_example_is_the_real_encoding() -> None:
    client = ClientConnection(token="s3cret")
    hello = client.data_to_send()
    assert hello.hex() == (
        "0000002d83a870726f746f636f6cac73657373696f6e6163746f72a776657273696f6e01"
        "a5746f6b656ea6733363726574"
    )
    server = ServerConnection(server_version="sessionactor 0.1.0", token="s3cret")
    server.receive_data(hello)
    assert server.data_to_send().hex() == (
        "0000008c86a870726f746f636f6cac73657373696f6e6163746f72a776657273696f6e01"
        "a26f6bc3a6736572766572b273657373696f6e6163746f7220302e312e30"
        "af6d61785f6672616d655f6279746573ce01000000"
        "a66c696d69747383a96d61785f6974656d73ce000186a0"
        "b16d61785f737472696e675f6c656e677468ce000f4240a96d61785f646570746840"
    )


def test_the_documented_error_example_is_the_real_encoding() -> None:
    assert framed(error_message(1, VariableNotFound("s1", "temp"))).hex() == (
        "00000062930201c75c0593b05661726961626c654e6f74466f756e64"
        "d9297661726961626c65202774656d7027206e6f7420666f756e6420696e2073657373696f6e2027733127"
        "82aa73657373696f6e5f6964a27331aa6964656e746966696572a474656d70"
    )


def test_the_documented_reply_example_is_the_real_encoding() -> None:
    empty: MappingProxyType[str, object] = MappingProxyType({})
    reply = reply_message(1, Variable("v1", "temp", "float", 0.5, empty, empty, 0, 1.0, 1.0, 3))
    assert framed(reply).hex(" ") == (
        "00 00 00 36 93 01 01 c7 30 10 9c a2 76 31 a4 74 65 6d 70 a5 66 6c 6f 61 74 cb 3f e0 "
        "00 00 00 00 00 00 80 80 00 cb 3f f0 00 00 00 00 00 00 cb 3f f0 00 00 00 00 00 00 03 "
        "c0 c0"
    )
