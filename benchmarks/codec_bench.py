"""Cost of the wire codec on every remote call's path (``_codec.py``, ``_protocol.py``).

    python -m benchmarks.codec_bench          # about 20 s on 2 cores

Measures, in microseconds per operation (best of 7 repeats), the two hot shapes:
a ``Variable`` reply (float value, small constraints and metadata) and an
``UpdateVariable`` call with a W3C trace header. For each: encode, decode, their
sum, and the same through the sans-I/O connections (send, frame, receive, event).
A floor packs the same data as plain lists and dicts with msgpack alone, and, if
msgspec happens to be installed, msgspec's msgpack codec on the same objects (it
cannot encode lone surrogates, so it is a yardstick only).
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from types import MappingProxyType

import attrs
import msgpack

from sessionactor._codec import Codec, decode_call, encode_call
from sessionactor._protocol import ClientConnection, ServerConnection
from sessionactor.messages import UpdateVariable
from sessionactor.model import Variable

VARIABLE = Variable(
    id="var_temperature_1733063460123_ab12",
    name="temperature",
    type="float",
    value=0.7,
    constraints=MappingProxyType({"min": 0.0, "max": 1.0}),
    metadata=MappingProxyType(
        {"source": "python", "updated_at": "2024-12-01T14:31:00.123456+00:00", "owner": "tuner"}
    ),
    version=3,
    created_at=1733063460.123,
    updated_at=1733063461.456,
    revision=42,
)
COMMAND = UpdateVariable("session_abc", "temperature", 0.7, expected_version=3)
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def best_us(operation: Callable[[], object], number: int = 50_000) -> float:
    return min(timeit.repeat(operation, number=number, repeat=7)) / number * 1e6


def report(label: str, operation: Callable[[], object]) -> None:
    print(f"  {label:<44} {best_us(operation):6.2f} us")


def codec_numbers() -> None:
    codec = Codec()
    reply = [1, 12345, VARIABLE]
    reply_bytes = codec.encode(reply)
    operation, fields = encode_call(COMMAND)
    call_bytes = codec.encode([0, 12345, operation, fields, TRACE])

    def encode_call_message() -> bytes:
        name, arguments = encode_call(COMMAND)
        return codec.encode([0, 12345, name, arguments, TRACE])

    def decode_call_message() -> object:
        message = codec.decode(call_bytes)
        assert isinstance(message, list)
        return decode_call(message[2], message[3])

    print(f"Variable reply ({len(reply_bytes)} bytes):")
    report("encode", lambda: codec.encode(reply))
    report("decode", lambda: codec.decode(reply_bytes))
    report("encode + decode", lambda: codec.decode(codec.encode(reply)))
    print(f"UpdateVariable call ({len(call_bytes)} bytes):")
    report("encode_call + encode", encode_call_message)
    report("decode + decode_call", decode_call_message)
    report("encode + decode", lambda: (encode_call_message(), decode_call_message()))


def connection_numbers() -> None:
    client = ClientConnection()
    server = ServerConnection(server_version="bench")
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())

    def call_and_reply() -> object:
        call_id = client.send_call(COMMAND, trace=TRACE)
        [event] = server.receive_data(client.data_to_send())
        decode_call(event.operation, event.fields)  # type: ignore[union-attr]
        server.send_reply(call_id, VARIABLE)
        return client.receive_data(server.data_to_send())

    print("Through the connections (send, frame, receive, event, command):")
    report("call + Variable reply, both directions", call_and_reply)


def floor_numbers() -> None:
    items = [getattr(VARIABLE, field.name) for field in attrs.fields(Variable)]
    items[4], items[5] = dict(VARIABLE.constraints), dict(VARIABLE.metadata)
    plain = [1, 12345, items]
    packer = msgpack.Packer()
    print("Floor, msgpack alone on plain lists and dicts:")
    report("Variable-shaped reply encode + decode", lambda: msgpack.unpackb(packer.pack(plain)))
    report(
        "... and Variable(*fields) rebuilt",
        lambda: Variable(*msgpack.unpackb(packer.pack(plain))[2]),
    )


def msgspec_numbers() -> None:
    try:
        import msgspec
    except ImportError:
        print("msgspec: not installed, skipped")
        return

    def enc_hook(value: object) -> object:
        if isinstance(value, MappingProxyType):
            return dict(value)
        raise NotImplementedError(type(value).__name__)

    encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
    decoder = msgspec.msgpack.Decoder(Variable)
    data = encoder.encode(VARIABLE)
    print(f"msgspec.msgpack, Variable as a map by field name ({len(data)} bytes):")
    report("encode + typed decode", lambda: decoder.decode(encoder.encode(VARIABLE)))


def main() -> None:
    codec_numbers()
    connection_numbers()
    floor_numbers()
    msgspec_numbers()


if __name__ == "__main__":
    main()
