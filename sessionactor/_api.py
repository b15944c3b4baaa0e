"""Every public call of the store, defined once.

A call is a function that turns the caller's arguments into one command
message (copying what the caller passed into immutable form on the way). Each
facade supplies only how a message reaches the actor and comes back:

* :class:`~sessionactor.SessionStore` puts it in the mailbox of an actor in the
  same event loop and hands back an awaitable reply;
* :class:`~sessionactor.BlockingSessionStore` hands it to the loop thread and
  blocks until the reply comes;
* :class:`~sessionactor.RemoteSessionStore` sends it over a connection to a
  server, which builds the same message from the same function.

So a call's signature, documentation and copy-in rules live here and nowhere
else. For the type checker, ``@call`` makes a descriptor whose type depends on
the facade that reads it: a coroutine of the command's reply type on an async
facade, the reply itself on a blocking one. At run time each facade class gets
a plain function with the builder's exact signature, so a call costs no more
than a hand-written method.
"""

from __future__ import annotations

import inspect
import textwrap
import typing
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Final,
    Generic,
    ParamSpec,
    TypeVar,
    overload,
)

from . import messages as m
from ._frozen import (
    DEFAULT_LIMITS,
    Limits,
    copy_identifiers,
    copy_mapping,
    copy_program,
    copy_text,
    copy_updates,
    copy_value,
)
from ._imports import prepare_import, prepare_store_import
from .errors import InvalidConstraint
from .types import TypeRegistry, VariableType

if TYPE_CHECKING:
    from typing import Self

__all__ = ["CALLS", "AsyncFacade", "BlockingFacade", "Builder", "StoreCalls", "call"]

P = ParamSpec("P")
R = TypeVar("R")

Builder = Callable[..., m.AnyCommand]
"""A call's builder: ``build(facade, *arguments) -> command``."""

CALLS: Final[dict[str, Builder]] = {}
"""Every public call's builder by operation name: what a server uses to build the
same command from arguments that came over the wire."""


class _CallSpec:
    """A call at run time, until a facade class turns it into a method (see ``_Facade``)."""

    __slots__ = ("build", "name")

    def __init__(self, build: Builder) -> None:
        self.build = build
        self.name = build.__name__

    def __get__(self, facade: object, owner: type[Any]) -> Any:
        if facade is None:
            return self
        raise TypeError(f"{type(facade).__name__} does not offer {self.name}()")


class _Facade:
    """Turns each call of :class:`StoreCalls` into a method of the facade class that
    inherits both; the facade's ``_call`` decides how the message travels."""

    _limits: Limits = DEFAULT_LIMITS
    _types: TypeRegistry | None = None
    _asynchronous: ClassVar[bool]
    # Whether a large argument's check should be handed to _call to run in steps: true
    # where calls are made in the event loop that also runs the actor.
    _checks_in_steps: ClassVar[bool] = False
    # How a generated method sends its command, if not ``self._call(command)``: the
    # statements of the method's body after ``command = ...`` (with the names they use),
    # for commands that need nothing special (see Command.special). A facade may write
    # its common case out there; a Python call less per call is a tenth of a fast one.
    _send_source: ClassVar[str | None] = None
    _send_names: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in CALLS:
            # Where the class would find the name, it must be a call still to be made
            # into a method: a subclass keeps its base's methods and its own overrides.
            found = next((vars(base)[name] for base in cls.__mro__ if name in vars(base)), None)
            if isinstance(found, _CallSpec):
                setattr(cls, name, _method(found.build, cls, asynchronous=cls._asynchronous))


class AsyncFacade(_Facade):
    """A facade whose calls are awaited: the same loop's actor, or a remote server."""

    _asynchronous = True

    def _call(self, command: m.Command[R]) -> Awaitable[R]:
        raise NotImplementedError


class BlockingFacade(_Facade):
    """A facade whose calls block the calling thread until the reply comes."""

    _asynchronous = False

    def _call(self, command: m.Command[R]) -> R:
        raise NotImplementedError


if TYPE_CHECKING:

    class Call(Generic[P, R]):
        """What ``@call`` gives the type checker: a method whose return depends on the facade."""

        @overload
        def __get__(self, facade: None, owner: type[Any]) -> Self: ...
        @overload
        def __get__(
            self, facade: AsyncFacade, owner: type[Any]
        ) -> Callable[P, Coroutine[Any, Any, R]]: ...
        @overload
        def __get__(self, facade: BlockingFacade, owner: type[Any]) -> Callable[P, R]: ...
        def __get__(self, facade: object, owner: type[Any]) -> Any: ...

    def call(build: Callable[Concatenate[Any, P], m.Command[R]]) -> Call[P, R]: ...

else:

    def call(build):
        """Declare a public call by its builder: ``build(facade, ...) -> command``."""
        CALLS[build.__name__] = build
        return _CallSpec(build)


def _command_class(build: Builder) -> type[m.AnyCommand]:
    """The class of the command that ``build`` returns (its return annotation)."""
    command_class: type[m.AnyCommand] = typing.get_type_hints(build)["return"]
    return command_class


def _reply_type(build: Builder) -> object:
    """The reply type ``R`` of the ``Command[R]`` that ``build`` returns, for signatures."""
    for base in getattr(_command_class(build), "__orig_bases__", ()):
        if typing.get_origin(base) is m.Command:
            return typing.get_args(base)[0]
    return Any


def _method(build: Builder, facade: type[Any], *, asynchronous: bool) -> Callable[..., Any]:
    """A method with ``build``'s exact signature: ``self._call(build(self, ...))``, awaited
    on an async facade (or sent as the facade's ``_send_source`` says).

    Generated from source (as attrs and dataclasses do) so that forwarding the
    arguments costs no ``*args``/``**kwargs`` packing on every call.
    """
    signature = inspect.signature(build)
    namespace: dict[str, Any] = {"_build": build}
    declared: list[str] = []
    passed: list[str] = []
    keyword_only = False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only:
            declared.append("*")
            keyword_only = True
        text = parameter.name
        if parameter.default is not inspect.Parameter.empty:
            namespace[f"_default_{parameter.name}"] = parameter.default
            text += f"=_default_{parameter.name}"
        declared.append(text)
        passed.append(f"{parameter.name}={parameter.name}" if keyword_only else parameter.name)
    name = build.__name__
    built = f"_build({', '.join(passed)})"
    send = facade._send_source
    if not asynchronous:
        body = f"return self._call({built})"
    elif send is None or _command_class(build).special:
        body = f"return await self._call({built})"
    else:
        namespace.update(facade._send_names)
        body = f"command = {built}\n" + send
    prefix = "async def" if asynchronous else "def"
    exec(f"{prefix} {name}({', '.join(declared)}):\n{textwrap.indent(body, '    ')}\n", namespace)
    method: Callable[..., Any] = namespace[name]
    method.__doc__ = build.__doc__
    method.__qualname__ = f"{facade.__qualname__}.{name}"
    method.__module__ = facade.__module__
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=_reply_type(build)
    )
    method.__wrapped__ = build  # type: ignore[attr-defined]
    return method


class StoreCalls:
    """The public calls shared by every facade; see each facade for how they are awaited."""

    _limits: Limits
    _types: TypeRegistry | None
    _checks_in_steps: ClassVar[bool]

    # -- sessions ---------------------------------------------------------------------

    @call
    def create_session(
        self,
        session_id: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> m.CreateSession:
        """Create a session, or return the live one with this id unchanged (and touched).

        ``ttl`` is how many seconds the session lives without being used
        (default: the store's ``default_ttl``; ``math.inf``: forever).

        >>> session = await store.create_session("s1", ttl=600, metadata={"user": "ada"})
        """
        return m.CreateSession(session_id, ttl, copy_mapping(metadata, self._limits))

    @call
    def get_session(self, session_id: str) -> m.GetSession:
        """The session's snapshot; touches it. ``SessionNotFound`` if missing or expired."""
        return m.GetSession(session_id)

    @call
    def update_session(
        self,
        session_id: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> m.UpdateSession:
        """Change the session's ttl and merge ``metadata`` into its metadata."""
        return m.UpdateSession(session_id, ttl, copy_mapping(metadata, self._limits))

    @call
    def delete_session(self, session_id: str) -> m.DeleteSession:
        """Delete the session with its variables and programs; a missing one is not an error."""
        return m.DeleteSession(session_id)

    @call
    def session_exists(self, session_id: str) -> m.SessionExists:
        """Whether a live session has this id. Does not touch it."""
        return m.SessionExists(session_id)

    @call
    def list_sessions(self) -> m.ListSessions:
        """The ids of the live sessions."""
        return m.ListSessions()

    @call
    def cleanup_expired_sessions(self) -> m.CleanupExpiredSessions:
        """Remove expired sessions now; returns how many were removed.

        The store also does this by itself every ``cleanup_interval`` seconds,
        and an expired session is gone for every call even before.
        """
        return m.CleanupExpiredSessions()

    @call
    def store_worker_session(self, session_id: str, worker_id: str) -> m.StoreWorkerSession:
        """Record which worker serves the session, creating the session if needed."""
        return m.StoreWorkerSession(session_id, worker_id)

    @call
    def get_stats(self) -> m.GetStats:
        """Store-wide counters (``StoreStats``)."""
        return m.GetStats()

    # -- programs ---------------------------------------------------------------------

    @call
    def store_program(self, session_id: str, program_id: str, data: Any) -> m.StoreProgram:
        """Store a session-scoped program: any data, kept as a private copy."""
        return m.StoreProgram(session_id, program_id, copy_program(data))

    @call
    def get_program(self, session_id: str, program_id: str) -> m.GetProgram:
        """A copy of a session-scoped program; ``ProgramNotFound`` if there is none."""
        return m.GetProgram(session_id, program_id)

    @call
    def delete_program(self, session_id: str, program_id: str) -> m.DeleteProgram:
        """Delete a session-scoped program; a missing one is not an error."""
        return m.DeleteProgram(session_id, program_id)

    @call
    def store_global_program(self, program_id: str, data: Any) -> m.StoreGlobalProgram:
        """Store a program for every session; it expires ``global_program_ttl`` seconds later."""
        return m.StoreGlobalProgram(program_id, copy_program(data))

    @call
    def get_global_program(self, program_id: str) -> m.GetGlobalProgram:
        """A copy of a global program; ``ProgramNotFound`` if missing or expired."""
        return m.GetGlobalProgram(program_id)

    @call
    def delete_global_program(self, program_id: str) -> m.DeleteGlobalProgram:
        """Delete a global program; a missing one is not an error."""
        return m.DeleteGlobalProgram(program_id)

    # -- variables ----------------------------------------------------------------------

    @call
    def register_variable(
        self,
        session_id: str,
        name: str,
        type: str | VariableType,
        initial_value: Any,
        *,
        constraints: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        description: str | None = None,
        exist_ok: bool = False,
    ) -> m.RegisterVariable:
        """Register a typed variable and return its id (``var_<name>_<n>``).

        The value is validated by its type, then against ``constraints``. A
        taken name raises ``VariableExists``, unless ``exist_ok=True`` and the
        variable of that name has the same type: then its id is returned and
        nothing changes (register-if-absent, safe under concurrency).

        >>> await store.register_variable(
        ...     "s1", "temperature", "float", 0.7, constraints={"min": 0.0, "max": 2.0}
        ... )
        'var_temperature_1'
        """
        limits = self._limits
        return m.RegisterVariable(
            session_id,
            name,
            type,
            copy_value(initial_value, limits),
            copy_mapping(constraints, limits, error=InvalidConstraint, what="constraints"),
            copy_mapping(metadata, limits),
            copy_text(description, limits, "description"),
            exist_ok,
        )

    @call
    def get_variable(self, session_id: str, identifier: str) -> m.GetVariable:
        """The variable with this id or name (an id wins over a name), as a frozen ``Variable``.

        >>> variable = await store.get_variable("s1", "temperature")
        >>> variable.value, variable.version
        (0.7, 0)
        """
        return m.GetVariable(session_id, identifier)

    @call
    def get_variable_value(
        self, session_id: str, identifier: str, default: Any = None
    ) -> m.GetVariableValue:
        """The variable's value, or ``default`` if the session or the variable is missing."""
        return m.GetVariableValue(session_id, identifier, default)

    @call
    def update_variable(
        self,
        session_id: str,
        identifier: str,
        value: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        optimizer_id: str | None = None,
    ) -> m.UpdateVariable:
        """Validate and set a new value; returns the new snapshot (``version`` + 1).

        ``expected_version`` makes it a compare-and-swap (``VersionConflict`` if
        the variable moved on); ``optimizer_id`` is the lock holder's id when an
        optimizer holds the variable. A failed update changes nothing.

        >>> (await store.update_variable("s1", "temperature", 0.9)).version
        1
        """
        if type(value) is not float or metadata is not None:
            limits = self._limits
            value = copy_value(value, limits)
            metadata = copy_mapping(metadata, limits)  # type: ignore[assignment]
        return m.UpdateVariable(
            session_id, identifier, value, metadata, expected_version, optimizer_id
        )

    @call
    def list_variables(self, session_id: str, pattern: str | None = None) -> m.ListVariables:
        """Variables in registration order; with ``pattern``, those whose whole name matches
        the glob (``*`` any run of characters, ``?`` exactly one).

        >>> [v.name for v in await store.list_variables("s1", "temp_*")]
        ['temp_cpu', 'temp_gpu']
        """
        return m.ListVariables(session_id, pattern)

    @call
    def delete_variable(
        self, session_id: str, identifier: str, *, optimizer_id: str | None = None
    ) -> m.DeleteVariable:
        """Delete a variable; ``VariableNotFound`` if it does not exist."""
        return m.DeleteVariable(session_id, identifier, optimizer_id)

    @call
    def has_variable(self, session_id: str, identifier: str) -> m.HasVariable:
        """Whether the variable exists (False also when the session is missing)."""
        return m.HasVariable(session_id, identifier)

    @call
    def get_variables(self, session_id: str, identifiers: Iterable[str]) -> m.GetVariables:
        """Many variables in one call: ``found`` by identifier as given, and ``missing`` in order.

        >>> batch = await store.get_variables("s1", ["temperature", "nope"])
        >>> list(batch.found), batch.missing
        (['temperature'], ['nope'])
        """
        return m.GetVariables(session_id, copy_identifiers(identifiers, self._limits))

    @call
    def update_variables(
        self,
        session_id: str,
        updates: Mapping[str, Any],
        *,
        atomic: bool = False,
        metadata: Mapping[str, Any] | None = None,
        expected_versions: Mapping[str, int] | None = None,
        optimizer_id: str | None = None,
    ) -> m.UpdateVariables:
        """Update many variables in one call.

        Not atomic: each update stands alone, and the result maps each key to
        its new ``Variable`` or to its error. ``atomic=True``: all or nothing,
        like a transaction; any failure raises ``AtomicUpdateError`` (its
        ``errors`` say which keys failed and why) and changes nothing.
        ``expected_versions`` maps keys to versions for compare-and-swap.
        """
        limits = self._limits
        return m.UpdateVariables(
            session_id,
            copy_updates(updates, limits),
            atomic,
            copy_mapping(metadata, limits),
            copy_mapping(expected_versions, limits),
            optimizer_id,
        )

    @call
    def export_variables(self, session_id: str) -> m.ExportVariables:
        """Every variable as a JSON-ready dict, in registration order.

        ``json.dumps(exported, allow_nan=False)`` accepts the result (special
        floats become ``"NaN"``, ``"Infinity"``, ``"-Infinity"``).
        """
        return m.ExportVariables(session_id)

    @call
    def import_variables(
        self, session_id: str, exported: Sequence[Mapping[str, Any]]
    ) -> m.ImportVariables:
        """Import what ``export_variables`` gave (also after a JSON round trip); returns
        how many variables were imported.

        Every entry is checked in full before any is applied; any fault raises
        ``InvalidImport`` (its ``errors`` are keyed by entry index) and the
        session is unchanged. Ids, versions and timestamps are kept.
        """
        checked = prepare_import(
            exported, self._types, self._limits, in_steps=self._checks_in_steps
        )
        return m.ImportVariables(session_id, checked)

    # -- the whole store ---------------------------------------------------------------

    @call
    def export_store(self) -> m.ExportStore:
        """Every live session (ttl, metadata, timestamps, worker, programs, variables)
        and the global programs, as JSON-ready data.

        ``json.dumps(data, allow_nan=False)`` accepts it, and ``import_store`` loads it
        into another store. Program data must be JSON-like to be exported
        (``InvalidArgument`` names a program that is not).

        >>> data = await store.export_store()
        >>> json.dump(data, open("store.json", "w"), allow_nan=False)
        """
        return m.ExportStore()

    @call
    def import_store(self, data: Mapping[str, Any]) -> m.ImportStore:
        """Load what ``export_store`` gave (also after a JSON round trip): sessions with
        their programs and variables (ids, versions and timestamps kept; revisions
        new), and the global programs. Returns how many sessions were imported.

        All or nothing: every part is checked before anything is applied, and a
        session that already exists here is a fault; any fault raises
        ``InvalidImport`` (its ``errors`` are keyed by the session's index, -1 for
        the global programs) and nothing changes.
        """
        checked = prepare_store_import(
            data, self._types, self._limits, in_steps=self._checks_in_steps
        )
        return m.ImportStore(checked)

    # -- optimization locks ---------------------------------------------------------------

    @call
    def start_optimization(
        self, session_id: str, identifier: str, optimizer_id: str, *, lease: float | None = None
    ) -> m.StartOptimization:
        """Lock a variable for one optimizer. While locked, updates and deletes need its
        ``optimizer_id``; ``lease`` seconds release the lock by themselves."""
        return m.StartOptimization(session_id, identifier, optimizer_id, lease)

    @call
    def end_optimization(
        self, session_id: str, identifier: str, optimizer_id: str
    ) -> m.EndOptimization:
        """Release the optimizer's lock on a variable (``VariableLocked`` if another holds it)."""
        return m.EndOptimization(session_id, identifier, optimizer_id)
