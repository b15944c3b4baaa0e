"""The wire's value codec: every value the store takes or gives, as msgpack, exactly.

Pure and synchronous (no sockets, no asyncio): :class:`Codec` turns a value into
the bytes of one msgpack object and back, and :func:`encode_call` /
:func:`decode_call` turn a command message into an operation name and a map of
fields and back. ``_protocol.py`` frames what this module encodes; ``docs/protocol.md``
is the description for other languages.

Native msgpack carries None, bool, int in [-2**63, 2**64 - 1], float (always
float64, so NaN, the infinities and -0.0 keep their bits), str (UTF-8 with lone
surrogates passed through, so *any* Python str survives), bytes (the bin type),
list (array; every array decodes as a list) and dict (map). Everything else the
store deals in is an ext type, listed in :class:`ExtCode`; any other object is an
:class:`EncodeError`, and bytes that are not a valid encoding are a
:class:`~sessionactor.errors.ProtocolError` naming what is wrong.

>>> codec = Codec()
>>> codec.decode(codec.encode({"shape": (2, 3), "big": 2**70}))
{'shape': (2, 3), 'big': 1180591620717411303424}
"""

from __future__ import annotations

import enum
import operator
import re
import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs
import msgpack

from . import errors as _errors
from . import messages as _messages
from ._frozen import FrozenMap, Owned, Refused
from .errors import InvalidArgument, ProtocolError, SessionStoreError, describe
from .messages import AnyCommand, Command
from .model import BatchGet, Session, StoreStats, Variable, VariableChange
from .types import Tensor

__all__ = [
    "COMMANDS",
    "ERROR_CLASSES",
    "MAX_BIG_INT_DIGITS",
    "MAX_EXT_DEPTH",
    "Codec",
    "EncodeError",
    "ExtCode",
    "FrozenMappingFactory",
    "decode_call",
    "encode_call",
]


class ExtCode(enum.IntEnum):
    """The msgpack ext type codes of the protocol, and what each payload holds.

    Every payload but ``BIG_INT``'s is itself one msgpack object, encoded with
    the same rules (so ext values nest). A decoder ignores trailing array items
    it does not know, so a later version can append fields.
    """

    BIG_INT = 1
    """An int outside [-2**63, 2**64 - 1]: its decimal digits as ASCII, ``-`` first if negative."""
    TUPLE = 2
    """A tuple: an array of its items (a plain array always decodes as a list)."""
    MAPPING = 3
    """A read-only mapping (any ``Mapping`` that is not a ``dict``): a map of its items."""
    TENSOR = 4
    """A :class:`~sessionactor.types.Tensor`: array ``[shape, data]``, both arrays."""
    ERROR = 5
    """A :class:`~sessionactor.errors.SessionStoreError`: array ``[class name, message,
    attributes]``, the attributes a map of attribute name to value."""
    REFUSED = 6
    """An argument the caller's side already refused (too large, or not copyable): its
    error, as an ``ERROR`` payload. The server raises it where the argument is checked,
    so the call fails exactly as it would on a local store."""
    VARIABLE = 16
    """A :class:`~sessionactor.model.Variable`: array of its fields in declaration order."""
    SESSION = 17
    """A :class:`~sessionactor.model.Session`: array of its fields in declaration order."""
    BATCH_GET = 18
    """A :class:`~sessionactor.model.BatchGet`: array of its fields in declaration order."""
    STORE_STATS = 19
    """A :class:`~sessionactor.model.StoreStats`: array of its fields in declaration order."""
    VARIABLE_CHANGE = 20
    """A :class:`~sessionactor.model.VariableChange`: array of its fields in declaration order."""


MAX_EXT_DEPTH: Final = 100
"""How deep ext values may nest inside one another (a Variable whose metadata
holds containers nested 64 deep needs 65 levels)."""
MAX_BIG_INT_DIGITS: Final = 4300
"""Python's limit on converting between int and decimal text."""

FrozenMappingFactory = Callable[[dict[Any, object]], Mapping[Any, object]]
"""Builds the read-only mapping a ``MAPPING`` ext value decodes to, from a fresh dict."""

_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
_BIG_INT_TEXT: Final = re.compile(rb"-?[0-9]{1,%d}" % MAX_BIG_INT_DIGITS)
_RETAINED_BUFFER_BYTES: Final = 1 << 20
_PACKER_BUFFER_BYTES: Final = 4096
_EMPTY_MAPPING_EXT: Final = msgpack.ExtType(ExtCode.MAPPING, b"\x80")  # an empty map
_SNAPSHOTS: Final[dict[type, ExtCode]] = {
    Variable: ExtCode.VARIABLE,
    Session: ExtCode.SESSION,
    BatchGet: ExtCode.BATCH_GET,
    StoreStats: ExtCode.STORE_STATS,
    VariableChange: ExtCode.VARIABLE_CHANGE,
}
# Decoded map keys are limited to types whose hashes an attacker cannot make
# collide without bound (str and bytes hash with a secret key; a 64-bit int or a
# float shares its hash with at most a handful of others): a map whose keys all
# collide would make building its dict quadratic. Tuples and big ints are out.
_KEY_TYPES: Final = frozenset({str, bytes, int, float, bool, type(None)})
# msgpack-python decodes ext type -1 (msgpack's timestamp) itself, without asking
# the ext hook; these byte pairs end every possible header of such a value.
_TIMESTAMP_HEADER_END: Final = re.compile(rb"[\x04\x08\x0c\xd6\xd7]\xff")


class EncodeError(InvalidArgument, TypeError):
    """A value cannot be encoded: its type has no wire form, or it is too big or deep.

    Also a ``TypeError`` (an object of the wrong type) and an ``InvalidArgument``
    (so a remote caller catches it where a local call would reject the argument).
    """


def _describe_error(error: BaseException) -> str:
    """What a msgpack exception says, as a phrase (some carry no message)."""
    if isinstance(error, msgpack.StackError):
        return "arrays and maps nest too deep"
    if isinstance(error, msgpack.ExtraData):
        return "extra bytes after the value"
    if isinstance(error, msgpack.FormatError):
        return "a byte that starts no msgpack value"
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _type_name(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _error_classes() -> dict[str, type[SessionStoreError]]:
    classes: dict[str, type[SessionStoreError]] = {}
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        if isinstance(cls, type) and issubclass(cls, SessionStoreError):
            classes[cls.__name__] = cls
    return classes


ERROR_CLASSES: Final[Mapping[str, type[SessionStoreError]]] = MappingProxyType(_error_classes())
"""The error classes an ``ERROR`` ext value may name, by class name."""


_WIRE_ERROR_NAMES: Final[dict[type, str]] = {cls: name for name, cls in ERROR_CLASSES.items()}


def _wire_error_name(cls: type[SessionStoreError]) -> str:
    """The name the wire gives ``cls``: its own, or its nearest ancestor's that the
    other side knows (a custom subclass of ``ValidationError`` goes as ``ValidationError``)."""
    name = _WIRE_ERROR_NAMES.get(cls)
    if name is None:
        base = next(base for base in cls.__mro__ if base in _WIRE_ERROR_NAMES)
        name = _WIRE_ERROR_NAMES[cls] = _WIRE_ERROR_NAMES[base]
    return name


def _allowed_error_attribute(cls: type, name: object) -> bool:
    """Whether a decoded error may get attribute ``name``: a plain public name that
    the class does not define itself (so nothing can replace a method, ``args`` or
    ``__class__``)."""
    return (
        type(name) is str
        and name.isidentifier()
        and not name.startswith("_")
        and name != "message"
        and not hasattr(cls, name)
    )


@attrs.frozen(weakref_slot=False)
class _SnapshotLayout:
    """How one snapshot class travels: its fields in declaration order, as an array.

    Fields declared as a ``Mapping`` travel as a plain map and fields declared as
    a ``tuple`` as a plain array: the declaration already says what they decode
    to, so they need no ext wrapper of their own (a snapshot is the hottest
    reply, and each ext level costs a nested pack and unpack).
    """

    cls: type
    code: ExtCode
    names: tuple[str, ...]
    fields: Callable[[object], Any]
    mapping_fields: tuple[int, ...]
    tuple_fields: tuple[int, ...]

    @classmethod
    def of(cls, snapshot: type, code: ExtCode) -> _SnapshotLayout:
        fields = attrs.fields(snapshot)
        if any(not field.init or field.kw_only for field in fields):
            # decoding rebuilds a snapshot as snapshot(*items)
            raise TypeError(
                f"{snapshot.__name__} has fields its constructor cannot take by position"
            )
        hints = typing.get_type_hints(snapshot)
        origins = [typing.get_origin(hints[field.name]) for field in fields]
        names = tuple(field.name for field in fields)
        return cls(
            cls=snapshot,
            code=code,
            names=names,
            fields=operator.attrgetter(*names),
            mapping_fields=tuple(i for i, origin in enumerate(origins) if origin is Mapping),
            tuple_fields=tuple(i for i, origin in enumerate(origins) if origin is tuple),
        )


_SNAPSHOT_LAYOUTS: Final[dict[type, _SnapshotLayout]] = {
    snapshot: _SnapshotLayout.of(snapshot, code) for snapshot, code in _SNAPSHOTS.items()
}


def _ext(code: int, payload: bytes) -> msgpack.ExtType:
    # ExtType's own __new__ re-checks both arguments in Python, which costs more
    # than packing a small payload; both are known good here.
    return tuple.__new__(msgpack.ExtType, (code, payload))


def _command_classes() -> dict[str, type[AnyCommand]]:
    classes: dict[str, type[AnyCommand]] = {}
    for name in _messages.__all__:
        cls = getattr(_messages, name)
        if not (isinstance(cls, type) and issubclass(cls, Command)):
            continue
        operation = getattr(cls, "operation", None)
        if not isinstance(operation, str) or getattr(cls, "internal", False):
            continue  # the Command base class itself, and messages that never travel
        if operation in classes:
            raise TypeError(f"{name} and {classes[operation].__name__} share operation {operation}")
        classes[operation] = cls
    return classes


COMMANDS: Final[Mapping[str, type[AnyCommand]]] = MappingProxyType(_command_classes())
"""Every command class of ``messages.py`` with an ``operation``, by operation name."""


@attrs.frozen(weakref_slot=False)
class _CallLayout:
    """A command class's fields: all names in order, as a set, and those without a default."""

    names: tuple[str, ...]
    known: frozenset[str]
    required: frozenset[str]


_CALL_LAYOUTS: Final[dict[type, _CallLayout]] = {}


def _call_layout(cls: type[AnyCommand]) -> _CallLayout:
    layout = _CALL_LAYOUTS.get(cls)
    if layout is None:
        fields = attrs.fields(typing.cast("type[attrs.AttrsInstance]", cls))
        names = tuple(field.name for field in fields)
        required = frozenset(field.name for field in fields if field.default is attrs.NOTHING)
        layout = _CALL_LAYOUTS[cls] = _CallLayout(names, frozenset(names), required)
    return layout


def encode_call(command: AnyCommand) -> tuple[str, dict[str, object]]:
    """A command message as its operation name and its fields by name.

    The names are the ``attrs`` field names, which are the parameter names of the
    store's public call.

    >>> from sessionactor.messages import GetVariable
    >>> encode_call(GetVariable("s1", "x"))
    ('get_variable', {'session_id': 's1', 'identifier': 'x'})
    """
    names = _call_layout(type(command)).names
    return command.operation, {name: getattr(command, name) for name in names}


def decode_call(
    operation: str,
    fields: Mapping[str, object],
    commands: Mapping[str, type[AnyCommand]] = COMMANDS,
) -> AnyCommand:
    """The command message named by ``operation``, built from ``fields``.

    Fields with a default may be left out. The values are not checked here: the
    handler validates them as it does for a local call. Raises ``ProtocolError``
    naming an unknown operation, a field the command does not have, or a missing
    field that has no default.

    >>> decode_call("get_variable", {"session_id": "s1", "identifier": "x"})
    GetVariable(session_id='s1', identifier='x')
    """
    cls = commands.get(operation)
    if cls is None:
        raise ProtocolError(f"unknown operation {describe(operation)}")
    layout = _call_layout(cls)
    keys = fields.keys()
    if not keys <= layout.known:
        listed = ", ".join(describe(name) for name in keys - layout.known)
        known = ", ".join(layout.names) or "none"
        raise ProtocolError(f"operation {operation} has no field {listed} (its fields: {known})")
    if not layout.required <= keys:
        missing = ", ".join(sorted(layout.required - keys))
        raise ProtocolError(f"operation {operation} is missing field {missing}")
    return cls(**fields)


class Codec:
    """Encodes values to msgpack bytes and decodes them back.

    ``frozen_mapping`` builds what a read-only mapping decodes to (by default a
    ``MappingProxyType`` of the decoded dict).

    A codec keeps reusable packers and its nesting depth, so it is not
    thread-safe: use one per thread (the connections of one event loop can share
    one, since encoding and decoding never await).

    >>> codec = Codec()
    >>> data = codec.encode(["\\ud800", -0.0, b"\\x00"])
    >>> codec.decode(data)
    ['\\ud800', -0.0, b'\\x00']
    """

    __slots__ = (
        "_checked_options",
        "_decoders",
        "_depth",
        "_encoders",
        "_fast_options",
        "_fast_packers",
        "_frozen_mapping",
        "_packers",
        "_surrogate_packers",
        "_unpack_options",
    )

    def __init__(self, *, frozen_mapping: FrozenMappingFactory = MappingProxyType) -> None:
        self._frozen_mapping = frozen_mapping
        self._depth = 0  # ext levels being packed or unpacked right now
        # One packer per ext level, because an ext payload is packed while its
        # parent's packer is busy. Strings take msgpack's strict UTF-8 fast path;
        # only a value holding a lone surrogate is packed again with surrogatepass.
        self._fast_packers: list[Any] = [self._new_packer(None)]
        self._surrogate_packers: list[Any] = [self._new_packer("surrogatepass")]
        self._packers = self._fast_packers
        self._encoders: dict[type, Callable[[Any], object]] = {
            int: self._encode_int,
            tuple: self._encode_tuple,
            MappingProxyType: self._encode_mapping,
            FrozenMap: self._encode_mapping,
            Tensor: self._encode_tensor,
            Refused: self._encode_refused,
            Owned: _owned_value,
        }
        for cls, layout in _SNAPSHOT_LAYOUTS.items():
            self._encoders[cls] = self._snapshot_encoder(layout)
        self._decoders: dict[int, Callable[[bytes], object]] = {
            ExtCode.BIG_INT: _decode_big_int,
            ExtCode.TUPLE: self._decode_tuple,
            ExtCode.MAPPING: self._decode_mapping,
            ExtCode.TENSOR: self._decode_tensor,
            ExtCode.ERROR: self._decode_error,
            ExtCode.REFUSED: self._decode_refused,
        }
        for layout in _SNAPSHOT_LAYOUTS.values():
            self._decoders[layout.code] = self._snapshot_decoder(layout)
        # raw=False and strict_map_key=True are unpackb's defaults, left out
        # because every keyword costs on each nested unpack.
        common = {"unicode_errors": "surrogatepass", "ext_hook": self._ext_hook}
        # Fast: msgpack builds dicts itself and only allows str and bytes keys.
        # Checked (tried only when the fast path fails or a timestamp header may be
        # present): other safe key types, and no timestamp anywhere.
        self._fast_options: dict[str, object] = common
        self._checked_options: dict[str, object] = {
            **common,
            "strict_map_key": False,
            "object_pairs_hook": _checked_map,
            "list_hook": _checked_list,
        }
        self._unpack_options = self._fast_options

    # Encoding ------------------------------------------------------------------

    def encode(self, value: object) -> bytes:
        """The bytes of one msgpack object holding ``value``.

        Raises :class:`EncodeError` naming the first value that has no wire form
        (for example a ``set``, a ``datetime`` or an arbitrary object), or a value
        that is too large or nests too deep.
        """
        try:
            try:
                return self._pack_top(self._fast_packers, value)
            except UnicodeEncodeError:
                self._packers = self._surrogate_packers
                try:
                    return self._pack_top(self._surrogate_packers, value)
                finally:
                    self._packers = self._fast_packers
        except EncodeError:
            raise
        except (ValueError, OverflowError) as error:  # msgpack's own limits
            raise EncodeError(
                f"cannot encode {describe(value)}: {_describe_error(error)}"
            ) from None

    def _new_packer(self, unicode_errors: str | None) -> Any:
        return msgpack.Packer(
            default=self._default,
            use_bin_type=True,
            strict_types=True,  # tuples, str subclasses, ... reach _default
            unicode_errors=unicode_errors,
            buf_size=_PACKER_BUFFER_BYTES,
        )

    def _pack_top(self, packers: list[Any], value: object) -> bytes:
        data: bytes = packers[0].pack(value)
        if len(data) > _RETAINED_BUFFER_BYTES:
            self._renew_packer(packers, 0)
        return data

    def _pack_nested(self, payload: object) -> bytes:
        """Pack an ext payload with the packer of the next ext level."""
        depth = self._depth + 1
        if depth > MAX_EXT_DEPTH:
            raise EncodeError(f"ext values nest more than {MAX_EXT_DEPTH} levels deep")
        packers = self._packers
        if depth == len(packers):
            packers.append(None)
            self._renew_packer(packers, depth)
        self._depth = depth
        try:
            data: bytes = packers[depth].pack(payload)
        finally:
            self._depth = depth - 1
        if len(data) > _RETAINED_BUFFER_BYTES:
            self._renew_packer(packers, depth)
        return data

    def _renew_packer(self, packers: list[Any], depth: int) -> None:
        """A fresh packer for ``depth``: new, or replacing one whose buffer grew large
        (a packer keeps the largest buffer it ever needed)."""
        surrogates = packers is self._surrogate_packers
        packers[depth] = self._new_packer("surrogatepass" if surrogates else None)

    def _default(self, value: object) -> object:
        """msgpack's hook for every value it does not pack natively."""
        encoder = self._encoders.get(type(value))
        if encoder is None:
            encoder = self._resolve_encoder(type(value))
            if encoder is None:
                raise EncodeError(
                    f"cannot encode a value of type {_type_name(type(value))}: {describe(value)}"
                )
            self._encoders[type(value)] = encoder
        return encoder(value)

    def _resolve_encoder(self, cls: type) -> Callable[[Any], object] | None:
        """The encoder of a type without an exact entry: subclasses and other mappings."""
        if issubclass(cls, SessionStoreError):
            return self._encode_error
        for snapshot, layout in _SNAPSHOT_LAYOUTS.items():
            if issubclass(cls, snapshot):
                return self._snapshot_encoder(layout)
        if issubclass(cls, Tensor):
            return self._encode_tensor
        # Subclasses of native types (a StrEnum member, an IntEnum, an OrderedDict)
        # travel as their base type; the subclass itself does not survive.
        if issubclass(cls, str):
            return str.__str__
        if issubclass(cls, int):
            return lambda value: self._encode_int(int.__int__(value))
        if issubclass(cls, float):
            return float.__float__
        if issubclass(cls, bytes):
            return bytes
        if issubclass(cls, dict):
            return dict
        if issubclass(cls, list):
            return list
        if issubclass(cls, tuple):
            return self._encode_tuple
        if issubclass(cls, Mapping):
            return self._encode_mapping
        return None

    def _encode_int(self, value: int) -> object:
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        try:
            text = str(value)
        except ValueError:  # more digits than Python converts
            raise EncodeError(
                f"an int of {value.bit_length()} bits has more than {MAX_BIG_INT_DIGITS} digits"
            ) from None
        return _ext(ExtCode.BIG_INT, text.encode("ascii"))

    def _encode_tuple(self, value: tuple[object, ...]) -> object:
        return _ext(ExtCode.TUPLE, self._pack_nested(list(value)))

    def _encode_mapping(self, value: Mapping[object, object]) -> object:
        if not value:
            return _EMPTY_MAPPING_EXT
        return _ext(ExtCode.MAPPING, self._pack_nested(dict(value)))

    def _encode_tensor(self, value: Tensor) -> object:
        payload = [list(value.shape), list(value.data)]
        return _ext(ExtCode.TENSOR, self._pack_nested(payload))

    def _snapshot_encoder(self, layout: _SnapshotLayout) -> Callable[[Any], object]:
        def encode_snapshot(value: object) -> object:
            items = list(layout.fields(value))
            for index in layout.mapping_fields:
                field = items[index]
                kind = type(field)  # exact checks first: an ABC isinstance is slow
                if kind is not dict and (kind is MappingProxyType or isinstance(field, Mapping)):
                    items[index] = dict(field)
            for index in layout.tuple_fields:
                if type(items[index]) is tuple:
                    items[index] = list(items[index])
            return _ext(layout.code, self._pack_nested(items))

        return encode_snapshot

    def _encode_error(self, error: SessionStoreError) -> object:
        message = vars(error).get("message")
        if type(message) is not str:
            message = BaseException.__str__(error)
        attributes = {
            name: value
            for name, value in vars(error).items()
            if name != "message" and not name.startswith("_")
        }
        name = _wire_error_name(type(error))
        try:
            payload = self._pack_nested([name, message, attributes])
        except UnicodeEncodeError:
            raise  # encode() packs everything again with surrogates passed through
        except (ValueError, OverflowError):
            # An error must always reach the caller: an attribute that has no wire
            # form (a custom type's object in ValidationError.value) goes as its repr.
            attributes = {key: self._encodable_or_repr(value) for key, value in attributes.items()}
            payload = self._pack_nested([name, message, attributes])
        return _ext(ExtCode.ERROR, payload)

    def _encode_refused(self, refused: Refused) -> object:
        error = self._encode_error(refused.error)
        return _ext(ExtCode.REFUSED, error.data)  # type: ignore[attr-defined]

    def _encodable_or_repr(self, value: object) -> object:
        try:
            self._pack_nested([value])
        except UnicodeEncodeError:
            raise
        except (ValueError, OverflowError):
            return describe(value)
        return value

    # Decoding ------------------------------------------------------------------

    def decode(self, data: bytes) -> object:
        """The value held by ``data``, which must be exactly one msgpack object.

        Raises :class:`~sessionactor.errors.ProtocolError` naming what is wrong:
        bytes that are not msgpack, extra bytes after the value, an unknown ext
        type, a malformed ext payload, a map key of a type that is not allowed,
        or nesting deeper than the limits.
        """
        if type(data) is not bytes:  # `in` below must see bytes, not a view's ints
            data = bytes(data)
        if b"\xff" in data and _TIMESTAMP_HEADER_END.search(data) is not None:
            return self._decode_checked(data)
        self._depth = 0
        try:
            return msgpack.unpackb(data, **self._fast_options)
        except ProtocolError:
            raise
        except Exception:  # any failure of msgpack is the peer's
            # The fast path refuses map keys other than str and bytes; the checked
            # path allows the other safe ones, and says precisely what is wrong.
            return self._decode_checked(data)

    def _decode_checked(self, data: bytes) -> object:
        self._depth = 0
        self._unpack_options = self._checked_options
        try:
            value = msgpack.unpackb(data, **self._checked_options)
        except ProtocolError:
            raise
        except Exception as error:
            raise ProtocolError(f"malformed msgpack: {_describe_error(error)}") from None
        finally:
            self._unpack_options = self._fast_options
        if type(value) is msgpack.Timestamp:
            raise ProtocolError(_TIMESTAMP_REFUSED)
        return value

    def _unpack(self, payload: bytes) -> object:
        return msgpack.unpackb(payload, **self._unpack_options)

    def _ext_hook(self, code: int, payload: bytes) -> object:
        decoder = self._decoders.get(code)
        if decoder is None:
            raise ProtocolError(f"unknown ext type {code}")
        depth = self._depth + 1
        if depth > MAX_EXT_DEPTH:
            raise ProtocolError(f"ext values nest more than {MAX_EXT_DEPTH} levels deep")
        self._depth = depth
        try:
            return decoder(payload)
        finally:
            self._depth = depth - 1

    def _unpack_array(self, payload: bytes, what: str, length: int) -> list[object]:
        """An ext payload that must be an array of at least ``length`` items."""
        items = self._unpack(payload)
        if type(items) is not list or len(items) < length:
            raise ProtocolError(
                f"{what} payload must be an array of at least {length} items, got {describe(items)}"
            )
        return items

    def _decode_tuple(self, payload: bytes) -> tuple[object, ...]:
        return tuple(self._unpack_array(payload, "tuple", 0))

    def _decode_mapping(self, payload: bytes) -> Mapping[object, object]:
        items = self._unpack(payload)
        if type(items) is not dict:
            raise ProtocolError(f"mapping payload must be a map, got {describe(items)}")
        return self._frozen_mapping(items)

    def _decode_tensor(self, payload: bytes) -> Tensor:
        shape, data = self._unpack_array(payload, "tensor", 2)[:2]
        if type(shape) is not list or not all(type(dim) is int and dim >= 0 for dim in shape):
            raise ProtocolError(f"tensor shape must be an array of sizes, got {describe(shape)}")
        if type(data) is not list:
            raise ProtocolError(f"tensor data must be an array, got {describe(data)}")
        return Tensor(tuple(shape), tuple(data))

    def _snapshot_decoder(self, layout: _SnapshotLayout) -> Callable[[bytes], object]:
        def decode_snapshot(payload: bytes) -> object:
            items = msgpack.unpackb(payload, **self._unpack_options)  # the hottest payload
            if type(items) is not list:
                raise ProtocolError(
                    f"{layout.cls.__name__} payload must be an array, got {describe(items)}"
                )
            del items[len(layout.names) :]
            count = len(items)
            for index in layout.mapping_fields:
                if index < count and type(items[index]) is dict:
                    items[index] = self._frozen_mapping(items[index])
            for index in layout.tuple_fields:
                if index < count and type(items[index]) is list:
                    items[index] = tuple(items[index])
            try:
                return layout.cls(*items)
            except TypeError as error:
                raise ProtocolError(f"{layout.cls.__name__} payload: {error}") from None

        return decode_snapshot

    def _decode_refused(self, payload: bytes) -> Refused:
        return Refused(self._decode_error(payload))

    def _decode_error(self, payload: bytes) -> SessionStoreError:
        name, message, attributes = self._unpack_array(payload, "error", 3)[:3]
        if type(name) is not str or type(message) is not str or type(attributes) is not dict:
            raise ProtocolError(
                "error payload must be [class name, message, attributes map], got "
                f"{describe([name, message, attributes])}"
            )
        # A class this version does not know (from a newer peer) still arrives as
        # the base class every caller catches, with its message and attributes.
        cls = ERROR_CLASSES.get(name, SessionStoreError)
        # Not cls(...): each class's constructor takes different arguments and
        # builds its own message; the wire already has the message and the facts.
        error = cls.__new__(cls)
        BaseException.__init__(error, message)
        error.message = message
        for key, value in attributes.items():
            if not _allowed_error_attribute(cls, key):
                raise ProtocolError(f"error {name} cannot have attribute {describe(key)}")
            setattr(error, key, value)
        return error


_TIMESTAMP_REFUSED: Final = "ext type -1 (msgpack timestamp) is not part of the protocol"


def _owned_value(owned: Owned) -> object:
    """Program data the caller's side copied: it travels as the data itself."""
    return owned.value


def _checked_list(items: list[object]) -> list[object]:
    if msgpack.Timestamp in map(type, items):
        raise ProtocolError(_TIMESTAMP_REFUSED)
    return items


def _checked_map(pairs: list[tuple[object, object]]) -> dict[object, object]:
    for key, value in pairs:
        key_type = type(key)
        if key_type not in _KEY_TYPES or (
            key_type is int and not _INT64_MIN <= key <= _UINT64_MAX  # type: ignore[operator]
        ):
            raise ProtocolError(f"a map key of type {_type_name(key_type)} is not allowed")
        if type(value) is msgpack.Timestamp:
            raise ProtocolError(_TIMESTAMP_REFUSED)
    return dict(pairs)


def _decode_big_int(payload: bytes) -> int:
    if _BIG_INT_TEXT.fullmatch(payload) is None:
        raise ProtocolError(
            f"big int payload must be up to {MAX_BIG_INT_DIGITS} ASCII decimal digits, "
            f"got {describe(payload)}"
        )
    return int(payload)
