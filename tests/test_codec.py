"""The wire's value codec (``sessionactor._codec``): exact round trips, and hostile bytes.

Round trips are compared with :func:`same`, which tells apart what ``==`` does not:
``1`` from ``1.0`` and ``True``, ``-0.0`` from ``0.0``, a NaN's bits, a tuple from a
list, a read-only mapping from a dict, and errors by class, message and attributes.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import enum
import math
import struct
import tracemalloc
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import attrs
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor import messages as messages_module
from sessionactor._codec import (
    COMMANDS,
    ERROR_CLASSES,
    MAX_BIG_INT_DIGITS,
    MAX_EXT_DEPTH,
    Codec,
    EncodeError,
    ExtCode,
    decode_call,
    encode_call,
)
from sessionactor.errors import (
    AtomicUpdateError,
    AuthenticationFailed,
    CallTimeout,
    ConnectionLost,
    ConstraintViolation,
    InternalError,
    InvalidArgument,
    InvalidConstraint,
    InvalidImport,
    PersistenceError,
    ProgramNotFound,
    ProtocolError,
    SessionLimitExceeded,
    SessionNotFound,
    SessionStoreError,
    StoreClosed,
    UnknownType,
    ValidationError,
    VariableExists,
    VariableLocked,
    VariableNotFound,
    VersionConflict,
    WatchOverflow,
)
from sessionactor.messages import AnyCommand, GetVariable, UpdateVariable
from sessionactor.model import BatchGet, Session, StoreStats, Variable, VariableChange
from sessionactor.state import UpdateMetadata
from sessionactor.types import Tensor, VariableType

# Comparing -------------------------------------------------------------------


def same(left: object, right: object) -> bool:
    """Equal, and of the same types all the way down (see the module docstring)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return struct.pack(">d", left) == struct.pack(">d", right)
    if isinstance(left, list | tuple):
        assert isinstance(right, list | tuple)
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, Mapping):
        assert isinstance(right, Mapping)
        pairs = zip(left.items(), right.items(), strict=False)
        return len(left) == len(right) and all(
            same(lk, rk) and same(lv, rv) for (lk, lv), (rk, rv) in pairs
        )
    if attrs.has(type(left)):
        names = [
            field.name for field in attrs.fields(cast("type[attrs.AttrsInstance]", type(left)))
        ]
        return all(same(getattr(left, name), getattr(right, name)) for name in names)
    if isinstance(left, BaseException):
        assert isinstance(right, BaseException)
        left_vars, right_vars = vars(left), vars(right)
        return (
            str(left) == str(right)
            and left.args == right.args
            and left_vars.keys() == right_vars.keys()
            and all(same(value, right_vars[name]) for name, value in left_vars.items())
        )
    return left == right


def round_trip(value: object, codec: Codec | None = None) -> object:
    codec = codec or Codec()
    return codec.decode(codec.encode(value))


def ext(code: int, payload: bytes) -> bytes:
    """The msgpack bytes of one ext value."""
    data: bytes = msgpack.packb(msgpack.ExtType(code, payload))
    return data


def packed(value: object) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


# Strategies ------------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and NUL too
native_ints = st.integers(-(2**63), 2**64 - 1)
any_ints = st.one_of(
    native_ints, st.integers(-(2**300), 2**300), st.sampled_from([2**64, -(2**63) - 1])
)
any_floats = st.one_of(st.floats(), st.sampled_from([-0.0, math.inf, -math.inf, math.nan]))
scalars = st.one_of(
    st.none(), st.booleans(), any_ints, any_floats, any_text, st.binary(max_size=12)
)
map_keys = st.one_of(any_text, st.binary(max_size=6), native_ints, st.booleans(), st.none())


def tensors() -> st.SearchStrategy[Tensor]:
    shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
    return shapes.flatmap(
        lambda shape: st.builds(
            Tensor,
            st.just(shape),
            st.lists(any_floats, min_size=math.prod(shape), max_size=math.prod(shape)).map(tuple),
        )
    )


def extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    str_dicts = st.dictionaries(any_text, children, max_size=4)
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(map_keys, children, max_size=4),
        str_dicts.map(MappingProxyType),
    )


values = st.recursive(st.one_of(scalars, tensors()), extend, max_leaves=12)
frozen_maps = st.dictionaries(any_text, values, max_size=3).map(MappingProxyType)
optional_text = st.none() | any_text

variables = st.builds(
    Variable,
    id=any_text,
    name=any_text,
    type=any_text,
    value=values,
    constraints=frozen_maps,
    metadata=frozen_maps,
    version=any_ints,
    created_at=any_floats,
    updated_at=any_floats,
    revision=any_ints,
    optimizer_id=optional_text,
    optimization_started_at=st.none() | any_floats,
)
sessions = st.builds(
    Session,
    id=any_text,
    created_at=any_floats,
    last_accessed=any_floats,
    ttl=any_floats,
    metadata=frozen_maps,
    last_worker_id=optional_text,
    variable_count=any_ints,
    program_ids=st.lists(any_text, max_size=3).map(tuple),
    total_variable_updates=any_ints,
)
batch_gets = st.builds(
    BatchGet,
    found=st.dictionaries(any_text, variables, max_size=2),
    missing=st.lists(any_text, max_size=3),
)
store_stats = st.builds(StoreStats, *[any_ints] * len(attrs.fields(StoreStats)))
variable_changes = st.builds(
    VariableChange,
    kind=st.sampled_from(["initial", "registered", "updated", "deleted", "session_closed"]),
    session_id=any_text,
    variable_id=optional_text,
    name=optional_text,
    old_value=values,
    new_value=values,
    version=st.none() | any_ints,
    revision=any_ints,
    metadata=frozen_maps,
)
snapshots = st.one_of(variables, sessions, batch_gets, store_stats, variable_changes)

leaf_errors: dict[type[SessionStoreError], st.SearchStrategy[SessionStoreError]] = {
    SessionStoreError: st.builds(SessionStoreError, any_text),
    SessionNotFound: st.builds(SessionNotFound, any_text),
    VariableNotFound: st.builds(VariableNotFound, any_text, any_text),
    ProgramNotFound: st.builds(ProgramNotFound, any_text, optional_text),
    VariableExists: st.builds(VariableExists, any_text, any_text),
    UnknownType: st.builds(UnknownType, values),
    ValidationError: st.builds(ValidationError, any_text, value=values),
    ConstraintViolation: st.builds(ConstraintViolation, any_text, value=values),
    InvalidConstraint: st.builds(InvalidConstraint, any_text),
    InvalidArgument: st.builds(InvalidArgument, any_text),
    InvalidImport: st.builds(
        InvalidImport, st.dictionaries(st.integers(0, 10**6), any_text, max_size=3), optional_text
    ),
    VariableLocked: st.builds(VariableLocked, any_text, any_text),
    VersionConflict: st.builds(VersionConflict, any_ints, any_ints, optional_text),
    WatchOverflow: st.builds(WatchOverflow, any_ints),
    SessionLimitExceeded: st.builds(SessionLimitExceeded, any_ints),
    StoreClosed: st.builds(StoreClosed, any_text),
    CallTimeout: st.builds(CallTimeout, any_text, any_floats),
    InternalError: st.builds(InternalError, any_text, st.builds(RuntimeError, any_text)),
    ConnectionLost: st.builds(ConnectionLost, any_text),
    AuthenticationFailed: st.builds(AuthenticationFailed, any_text),
    ProtocolError: st.builds(ProtocolError, any_text),
    PersistenceError: st.builds(PersistenceError, any_text, optional_text),
}
all_errors: dict[type[SessionStoreError], st.SearchStrategy[SessionStoreError]] = {
    **leaf_errors,
    AtomicUpdateError: st.builds(
        AtomicUpdateError, st.dictionaries(any_text, st.one_of(*leaf_errors.values()), max_size=3)
    ),
}
store_errors = st.one_of(*all_errors.values())


# Round trips -----------------------------------------------------------------


@given(values)
def test_any_value_round_trips_exactly(value: object) -> None:
    assert same(round_trip(value), value)


@given(snapshots)
@settings(max_examples=60)
def test_every_snapshot_round_trips_exactly(snapshot: object) -> None:
    assert same(round_trip(snapshot), snapshot)


@given(store_errors)
def test_every_error_round_trips_with_class_message_and_attributes(
    error: SessionStoreError,
) -> None:
    decoded = round_trip(error)
    assert type(decoded) is type(error)
    assert isinstance(decoded, SessionStoreError)
    assert str(decoded) == str(error)
    assert same(decoded, error)


def test_the_error_strategies_cover_every_error_class() -> None:
    assert set(all_errors) == set(ERROR_CLASSES.values())


@given(st.lists(st.one_of(values, snapshots, store_errors), max_size=4))
@settings(max_examples=40)
def test_one_codec_round_trips_a_sequence_of_mixed_messages(items: list[object]) -> None:
    codec = Codec()
    for item in items:
        assert same(round_trip([1, 7, item], codec), [1, 7, item])


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",
        "\udfff\x00\ud83d",
        "a\x00b",
        "\U0001f600",
        {"\ud800key": ("\udc00",)},
        Variable("\ud800", "n", "string", "\udfff", MappingProxyType({}), MappingProxyType({}),
                 0, 0.0, 0.0, 0),
        InvalidArgument("bad \ud800 value"),
    ],
)  # fmt: skip
def test_lone_surrogates_and_nul_survive_anywhere(value: object) -> None:
    assert same(round_trip(value), value)


def test_strings_are_utf8_on_the_wire() -> None:
    assert Codec().encode("é") == b"\xa2\xc3\xa9"
    assert Codec().encode("\ud800") == b"\xa3\xed\xa0\x80"  # the surrogate's own UTF-8 form


@pytest.mark.parametrize("number", [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.5])
def test_floats_keep_their_bits(number: float) -> None:
    data = Codec().encode(number)
    assert data == b"\xcb" + struct.pack(">d", number)
    assert same(Codec().decode(data), number)


def test_nan_payload_bits_survive() -> None:
    (odd_nan,) = struct.unpack(">d", b"\x7f\xf8\x00\x00\x00\x00\x12\x34")
    assert same(round_trip(odd_nan), odd_nan)


def test_ints_in_64_bits_are_native_and_the_rest_big_int_text() -> None:
    codec = Codec()
    assert codec.encode(2**64 - 1) == b"\xcf" + b"\xff" * 8
    assert codec.encode(-(2**63)) == b"\xd3\x80" + b"\x00" * 7
    assert codec.encode(2**64) == ext(ExtCode.BIG_INT, b"18446744073709551616")
    assert codec.encode(-(2**63) - 1) == ext(ExtCode.BIG_INT, b"-9223372036854775809")
    largest = 10**MAX_BIG_INT_DIGITS - 1
    assert round_trip(largest) == largest
    with pytest.raises(EncodeError, match="digits"):
        codec.encode(10**MAX_BIG_INT_DIGITS)


def test_the_reference_encodings_of_the_protocol_document() -> None:
    codec = Codec()
    assert codec.encode((1, 2)).hex(" ") == "c7 03 02 92 01 02"
    assert codec.encode(2**64).hex() == "c71401" + b"18446744073709551616".hex()
    assert codec.encode(MappingProxyType({"a": 1})).hex(" ") == "d6 03 81 a1 61 01"
    assert codec.encode(Tensor((2,), (1.0, 2.0))).hex() == (
        "c7160492910292cb3ff0000000000000cb4000000000000000"
    )


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    value: object = ([1, (2, [3])], (), [])
    decoded = round_trip(value)
    assert same(decoded, value)
    assert Codec().decode(packed([1, [2]])) == [1, [2]]  # a plain array is a list


def test_read_only_mappings_decode_as_mapping_proxies() -> None:
    update_metadata = UpdateMetadata(MappingProxyType({"a": 1}), "python", 0.0)
    decoded = round_trip([update_metadata, MappingProxyType({"b": (1,)}), MappingProxyType({})])
    assert isinstance(decoded, list)
    assert all(type(item) is MappingProxyType for item in decoded)
    assert decoded[0] == dict(update_metadata)
    assert decoded[1] == {"b": (1,)}


def test_frozen_mapping_factory_builds_every_read_only_mapping() -> None:
    class Frozen(dict[Any, object]):
        pass

    codec = Codec(frozen_mapping=Frozen)
    meta = MappingProxyType({"k": MappingProxyType({"inner": 1})})
    variable = Variable("id", "n", "float", 1.0, MappingProxyType({}), meta, 0, 0.0, 0.0, 0)
    decoded = codec.decode(codec.encode(variable))
    assert isinstance(decoded, Variable)
    assert type(decoded.metadata) is Frozen
    assert type(decoded.metadata["k"]) is Frozen
    assert type(decoded.constraints) is Frozen


def test_snapshot_mapping_and_tuple_fields_travel_as_plain_maps_and_arrays() -> None:
    session = Session("s", 1.0, 2.0, 3.0, MappingProxyType({"a": 1}), None, 0, ("p",), 0)
    payload = packed(["s", 1.0, 2.0, 3.0, {"a": 1}, None, 0, ["p"], 0])
    assert Codec().encode(session) == ext(ExtCode.SESSION, payload)


def test_snapshot_decoding_ignores_trailing_fields_a_newer_peer_sends() -> None:
    stats = list(range(len(attrs.fields(StoreStats))))
    decoded = Codec().decode(ext(ExtCode.STORE_STATS, packed([*stats, "a later field"])))
    assert decoded == StoreStats(*stats)


def test_snapshot_fields_with_defaults_may_be_left_out() -> None:
    required = ["id", "n", "float", 1.0, {}, {}, 0, 0.0, 0.0, 5]
    decoded = Codec().decode(ext(ExtCode.VARIABLE, packed(required)))
    assert isinstance(decoded, Variable)
    assert decoded.revision == 5
    assert decoded.optimizer_id is None


def test_subclasses_of_native_types_travel_as_their_base_type() -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Pair(NamedTuple):
        left: int
        right: int

    value = [VariableType.FLOAT, Color.RED, collections.OrderedDict(a=1), Pair(1, 2)]
    decoded = round_trip(value)
    assert same(decoded, ["float", 1, {"a": 1}, (1, 2)])


def test_bytes_like_values_decode_as_bytes() -> None:
    assert same(round_trip([bytearray(b"ab"), memoryview(b"cd")]), [b"ab", b"cd"])


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (object(), "object"),
        (datetime.datetime(2024, 1, 1), "datetime.datetime"),
        ([1, {"deep": (complex(1, 2),)}], "complex"),
        (ValueError("not a store error"), "ValueError"),
    ],
)
def test_values_without_a_wire_form_are_encode_errors_naming_the_type(
    value: object, type_name: str
) -> None:
    with pytest.raises(EncodeError, match=type_name) as caught:
        Codec().encode(value)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, InvalidArgument)


def test_a_codec_keeps_working_after_an_encode_error() -> None:
    codec = Codec()
    with pytest.raises(EncodeError):
        codec.encode([("\ud800", MappingProxyType({"x": (object(),)}))])
    assert same(round_trip([("\ud800",)], codec), [("\ud800",)])
    assert same(round_trip((1,), codec), (1,))


def test_nesting_too_deep_to_encode_is_an_encode_error() -> None:
    deep_tuples: object = ()
    for _ in range(MAX_EXT_DEPTH + 1):
        deep_tuples = (deep_tuples,)
    with pytest.raises(EncodeError, match="nest"):
        Codec().encode(deep_tuples)
    deep_lists: object = []
    for _ in range(2000):
        deep_lists = [deep_lists]
    with pytest.raises(EncodeError, match="recursion limit"):
        Codec().encode(deep_lists)


def test_store_metadata_nested_64_deep_fits() -> None:
    nested: object = 1
    for _ in range(64):
        nested = (nested,)
    metadata = MappingProxyType({"deep": nested})
    variable = Variable("i", "n", "float", 1.0, metadata, metadata, 0, 0.0, 0.0, 0)
    assert same(round_trip([1, 1, variable]), [1, 1, variable])


def test_large_values_round_trip_and_the_codec_stays_usable() -> None:
    codec = Codec()
    big = (b"x" * (3 << 20), "y" * (2 << 20))
    assert same(round_trip(big, codec), big)
    assert same(round_trip((1, "small"), codec), (1, "small"))


# Errors ----------------------------------------------------------------------


def test_errors_rebuild_the_built_in_bases_callers_catch() -> None:
    timeout = round_trip(CallTimeout("get_variable", 5.0))
    assert isinstance(timeout, TimeoutError)
    assert str(timeout) == "get_variable got no reply within 5 s"
    assert (timeout.operation, timeout.timeout) == ("get_variable", 5.0)  # type: ignore[attr-defined]
    lost = round_trip(ConnectionLost())
    assert isinstance(lost, ConnectionError)
    assert isinstance(round_trip(AuthenticationFailed()), PermissionError)
    missing = round_trip(VariableNotFound("s1", "x"))
    assert isinstance(missing, KeyError)
    assert str(missing) == "variable 'x' not found in session 's1'"


def test_atomic_update_error_carries_its_nested_errors() -> None:
    error = AtomicUpdateError(
        {"x": VersionConflict(1, 2, "x"), "y": ValidationError("must be a float", value=[1])}
    )
    decoded = round_trip(error)
    assert isinstance(decoded, AtomicUpdateError)
    conflict = decoded.errors["x"]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.expected, conflict.actual, conflict.identifier) == (1, 2, "x")
    assert same(decoded, error)


def test_invalid_import_keeps_its_int_keyed_errors() -> None:
    decoded = round_trip(InvalidImport({0: "no name", 3: "bad type"}))
    assert isinstance(decoded, InvalidImport)
    assert decoded.errors == {0: "no name", 3: "bad type"}


def test_a_custom_error_subclass_travels_as_its_nearest_known_class() -> None:
    class TooWarm(ConstraintViolation):
        pass

    decoded = round_trip(TooWarm("too warm", value=99.0))
    assert type(decoded) is ConstraintViolation
    assert str(decoded) == "too warm"
    assert decoded.value == 99.0


def test_an_unknown_error_class_decodes_as_session_store_error() -> None:
    payload = packed(["ErrorFromTheFuture", "something new", {"detail": 1}])
    decoded = Codec().decode(ext(ExtCode.ERROR, payload))
    assert type(decoded) is SessionStoreError
    assert str(decoded) == "something new"
    assert decoded.detail == 1  # type: ignore[attr-defined]


def test_an_error_attribute_without_a_wire_form_goes_as_its_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    decoded = round_trip(ValidationError("bad", value=Opaque()))
    assert isinstance(decoded, ValidationError)
    assert decoded.value == "<opaque>"


def test_internal_error_keeps_operation_and_message_but_not_the_cause() -> None:
    error = InternalError("get_stats", KeyError("boom"))
    decoded = round_trip(error)
    assert isinstance(decoded, InternalError)
    assert decoded.operation == "get_stats"
    assert str(decoded) == str(error)
    assert decoded.__cause__ is None


@pytest.mark.parametrize(
    "name", ["__class__", "args", "with_traceback", "message", "_hidden", "not an identifier", 1]
)
def test_error_attributes_that_would_replace_behaviour_are_refused(name: object) -> None:
    payload = packed(["InvalidArgument", "m", {name: 1}])
    codec = Codec()
    with pytest.raises(ProtocolError, match="attribute"):
        codec.decode(ext(ExtCode.ERROR, payload))


# Commands --------------------------------------------------------------------


def test_commands_are_every_message_class_that_travels() -> None:
    classes = [getattr(messages_module, name) for name in messages_module.__all__]
    expected = {
        operation: cls
        for cls in classes
        if isinstance(cls, type)
        and isinstance(operation := getattr(cls, "operation", None), str)
        and not getattr(cls, "internal", False)
    }
    assert dict(COMMANDS) == expected
    assert "update_variable" in COMMANDS and "get_stats" in COMMANDS
    assert COMMANDS["watch_variables"] is messages_module.WatchVariables


@st.composite
def commands(draw: st.DrawFn) -> AnyCommand:
    cls = draw(st.sampled_from(sorted(COMMANDS.values(), key=lambda c: c.operation)))
    names = [field.name for field in attrs.fields(cast("type[attrs.AttrsInstance]", cls))]
    fields = {name: draw(values) for name in names}
    return cls(**fields)


@given(commands())
def test_every_command_round_trips_through_the_wire(command: AnyCommand) -> None:
    codec = Codec()
    operation, fields = encode_call(command)
    assert operation == command.operation
    decoded_fields = codec.decode(codec.encode(fields))
    assert isinstance(decoded_fields, dict)
    rebuilt = decode_call(operation, decoded_fields)
    assert same(rebuilt, command)


def test_call_fields_are_the_parameter_names() -> None:
    assert encode_call(UpdateVariable("s", "x", 1.0, expected_version=3)) == (
        "update_variable",
        {
            "session_id": "s",
            "identifier": "x",
            "value": 1.0,
            "metadata": None,
            "expected_version": 3,
            "optimizer_id": None,
        },
    )


def test_fields_with_defaults_may_be_left_out() -> None:
    command = decode_call("update_variable", {"session_id": "s", "identifier": "x", "value": 2})
    assert command == UpdateVariable("s", "x", 2)


def test_an_unknown_operation_is_a_protocol_error_naming_it() -> None:
    with pytest.raises(ProtocolError, match="unknown operation 'drop_database'"):
        decode_call("drop_database", {})


def test_an_unknown_field_is_a_protocol_error_naming_it() -> None:
    with pytest.raises(ProtocolError, match="get_variable has no field 'sesion_id'"):
        decode_call("get_variable", {"sesion_id": "s", "identifier": "x"})


def test_a_missing_required_field_is_a_protocol_error_naming_it() -> None:
    with pytest.raises(ProtocolError, match="get_variable is missing field identifier"):
        decode_call("get_variable", {"session_id": "s"})


def test_decode_call_uses_the_registry_it_is_given() -> None:
    registry = {"fetch": GetVariable}
    assert decode_call("fetch", {"session_id": "s", "identifier": "x"}, registry) == GetVariable(
        "s", "x"
    )
    with pytest.raises(ProtocolError, match="unknown operation"):
        decode_call("get_variable", {"session_id": "s", "identifier": "x"}, registry)


# Hostile input ---------------------------------------------------------------


def decode_or_protocol_error(data: bytes) -> None:
    """Decoding either gives a value or raises ProtocolError; nothing else."""
    with contextlib.suppress(ProtocolError):
        Codec().decode(data)


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(data)


@given(st.one_of(values, snapshots, store_errors), st.data())
@settings(max_examples=60)
def test_corrupted_encodings_decode_or_raise_protocol_error(
    value: object, data: st.DataObject
) -> None:
    encoded = bytearray(Codec().encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    decode_or_protocol_error(bytes(encoded))


@given(st.one_of(values, snapshots, store_errors))
@settings(max_examples=40)
def test_every_truncation_is_a_protocol_error(value: object) -> None:
    codec = Codec()
    encoded = codec.encode(value)
    for end in range(len(encoded)):
        with pytest.raises(ProtocolError):
            codec.decode(encoded[:end])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "incomplete"),
        (b"\x01\x02", "extra bytes"),
        (b"\xc1", "starts no msgpack value"),
        (b"\xa1\xff", "utf-8"),
        (b"\xdd\xff\xff\xff\xff", "max_array_len"),
        (b"\xdf\xff\xff\xff\xff", "max_map_len"),
        (b"\xdb\xff\xff\xff\xff", "incomplete"),
        (b"\x91" * 100_000 + b"\xc0", "nest too deep"),
    ],
)
def test_malformed_msgpack_is_a_protocol_error_saying_what_is_wrong(
    data: bytes, reason: str
) -> None:
    with pytest.raises(ProtocolError, match=reason):
        Codec().decode(data)


@pytest.mark.parametrize("code", [0, 7, 15, 21, 127, -2, -128])
def test_unknown_ext_codes_are_protocol_errors(code: int) -> None:
    fixext_1 = b"\xd4" + code.to_bytes(1, "big", signed=True) + b"\xc0"
    with pytest.raises(ProtocolError, match=f"unknown ext type {code}"):
        Codec().decode(b"\x92\x01" + fixext_1)


@pytest.mark.parametrize(
    "data",
    [
        packed(msgpack.Timestamp(0)),  # fixext 4
        packed([msgpack.Timestamp(1, 5)]),  # fixext 8
        packed({"at": msgpack.Timestamp(2**40, 5)}),  # ext 8, 12 bytes
        packed({msgpack.Timestamp(3): 1}),
        packed([[[1, 2, msgpack.Timestamp(4)]]]),
        b"\xc8\x00\x04\xff\x00\x00\x00\x00",  # ext 16 holding a 4-byte timestamp
        ext(ExtCode.TUPLE, packed([msgpack.Timestamp(0)])),
        ext(ExtCode.MAPPING, packed({"t": msgpack.Timestamp(0)})),
    ],
)
def test_msgpack_timestamps_are_refused_wherever_they_are(data: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"(?i)timestamp"):
        Codec().decode(data)


def test_a_timestamp_is_refused_from_any_bytes_like_input() -> None:
    data = packed([msgpack.Timestamp(0)])
    for form in (bytearray(data), memoryview(data)):
        with pytest.raises(ProtocolError, match="timestamp"):
            Codec().decode(form)  # type: ignore[arg-type]


def test_values_whose_bytes_look_like_a_timestamp_header_still_decode() -> None:
    (number,) = struct.unpack(">d", b"\x40\xd7\xff\x08\xff\x0c\xff\x00")
    value = [number, b"\xd6\xff\x04\xff", "\u07ff", {"k": (number,)}]
    assert same(round_trip(value), value)


def test_deeply_nested_ext_values_are_a_protocol_error() -> None:
    data = packed(None)
    for _ in range(MAX_EXT_DEPTH + 1):
        data = ext(ExtCode.TUPLE, b"\x91" + data)
    with pytest.raises(ProtocolError, match="nest more than"):
        Codec().decode(data)


def test_deep_arrays_inside_nested_ext_values_are_a_protocol_error_not_a_crash() -> None:
    data = b"\x91" * 2000 + b"\xc0"
    for _ in range(50):
        data = ext(ExtCode.TUPLE, b"\x91" + data)
    with pytest.raises(ProtocolError, match="nest too deep"):
        Codec().decode(data)


def test_arrays_nest_within_each_ext_level_up_to_msgpacks_stack() -> None:
    data = packed(None)
    for _ in range(50):
        data = ext(ExtCode.TUPLE, b"\x91" * 1000 + data)
    assert type(Codec().decode(data)) is tuple


@pytest.mark.parametrize(
    ("key", "type_name"),
    [((1, 2), "tuple"), (2**70, "int"), (MappingProxyType({}), "mappingproxy"), ((), "tuple")],
)
def test_map_keys_that_could_collide_without_bound_are_refused(key: object, type_name: str) -> None:
    data = b"\x81" + Codec().encode(key) + b"\x01"
    with pytest.raises(ProtocolError, match=f"map key of type {type_name}"):
        Codec().decode(data)


def test_int_bytes_float_bool_and_nil_map_keys_are_allowed() -> None:
    value = {1: "a", -(2**63): "b", 2**64 - 1: "c", b"k": "d", 1.5: "e", None: "f", False: "g"}
    assert same(round_trip(value), value)


@pytest.mark.parametrize(
    "payload", [b"", b"+1", b"1 ", b" 1", b"0x10", b"1_000", b"--1", b"\xd9\xa0", b"9" * 4301]
)
def test_malformed_big_int_payloads_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError, match="big int"):
        Codec().decode(ext(ExtCode.BIG_INT, payload))


@pytest.mark.parametrize(
    ("code", "payload", "reason"),
    [
        (ExtCode.TUPLE, packed({"a": 1}), "tuple payload must be an array"),
        (ExtCode.TUPLE, b"\x91", "incomplete"),
        (ExtCode.MAPPING, packed([1]), "mapping payload must be a map"),
        (ExtCode.TENSOR, packed([[2]]), "tensor payload must be an array of at least 2"),
        (ExtCode.TENSOR, packed([[-1], []]), "tensor shape"),
        (ExtCode.TENSOR, packed([[True], []]), "tensor shape"),
        (ExtCode.TENSOR, packed([2, [1.0, 2.0]]), "tensor shape"),
        (ExtCode.TENSOR, packed([[2], "xy"]), "tensor data"),
        (ExtCode.VARIABLE, packed(["id", "name"]), "Variable payload"),
        (ExtCode.VARIABLE, packed({"id": 1}), "Variable payload must be an array"),
        (ExtCode.BATCH_GET, packed([]), "BatchGet payload"),
        (ExtCode.ERROR, packed(["InvalidArgument", "m"]), "error payload must be an array"),
        (ExtCode.ERROR, packed(["InvalidArgument", 1, {}]), "error payload must be"),
        (ExtCode.ERROR, packed([1, "m", {}]), "error payload must be"),
        (ExtCode.ERROR, packed(["InvalidArgument", "m", []]), "error payload must be"),
    ],
)
def test_malformed_ext_payloads_are_protocol_errors(code: int, payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        Codec().decode(ext(code, payload))


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


@pytest.mark.parametrize(
    "data",
    [
        b"\xdd\xff\xff\xff\xff",  # an array of 4 billion items, with none of them
        b"\xdf\xff\xff\xff\xff\xa1a",
        b"\xc6\xff\xff\xff\xff\x00",  # a 4 GiB bin
        ext(ExtCode.TUPLE, b"\xdd\x7f\xff\xff\xff"),
        b"\x91" * 100_000,
        ext(ExtCode.TUPLE, b"\x91" * 100_000),
    ],
)
def test_hostile_headers_allocate_nothing_large(data: bytes) -> None:
    codec = Codec()
    with peak_memory() as peak, pytest.raises(ProtocolError):
        codec.decode(data)
    assert peak[0] < 2 << 20
