"""The store against a plain-dict model, driven by a hypothesis state machine.

``StoreModel`` is what SPEC §3, §4 and §10 say, written as plainly as possible:
dicts of sessions and variables, a fake clock, a revision counter. The machine
drives the real async store (one event loop per run, ``run_until_complete``)
with random sessions, registrations, updates (valid and invalid), batch updates
(atomic and not), deletes, imports (also after a JSON round trip, also
corrupted), expiry ticks and sweeps, and checks after every step that the store
and the model agree: the values, versions, revisions and registration order of
every variable, which sessions are live, the counters, and every error raised.

Where SPEC does not order two faults of one call (say, a taken name *and* a bad
value), any of the applicable errors is accepted; where only one applies, it
must be exactly that one.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Coroutine, Mapping
from typing import Any, Final

import attrs
from conftest import AnyStore, FakeClock, open_store_of
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sessionactor import (
    AtomicUpdateError,
    ConstraintViolation,
    InvalidArgument,
    InvalidImport,
    SessionNotFound,
    SessionStore,
    SessionStoreError,
    ValidationError,
    Variable,
    VariableExists,
    VariableNotFound,
)

SIDS: Final = ("a", "b", "c")
NAMES: Final = ("x", "y", "z")
DEFAULT_TTL: Final = 20.0
KINDS: Final[dict[str, Mapping[str, object] | None]] = {
    "float": {"min": 0.0, "max": 1.0},
    "integer": {"min": 0, "max": 10},
    "string": {"max_length": 3},
    "boolean": None,
}
SPECIAL_FLOATS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# Values for any kind: each is valid for some kinds and wrong for others.
values = st.one_of(
    st.floats(min_value=-0.5, max_value=1.5),
    st.integers(min_value=-2, max_value=12),
    st.text(alphabet="ab", max_size=5),
    st.booleans(),
    st.sampled_from([None, "NaN", "Infinity", "x", 2.0, 4.5, "3", "true", "false", "yes"]),
)

ErrorClasses = frozenset[type[SessionStoreError]]


class Rejected(Exception):
    """The model's verdict on a failed call: which error classes SPEC allows."""

    def __init__(self, *allowed: type[SessionStoreError]) -> None:
        super().__init__(", ".join(cls.__name__ for cls in allowed))
        self.allowed: ErrorClasses = frozenset(allowed)


def model_validate(kind: str, value: object) -> object:
    """SPEC §5 for the four kinds and constraints of ``KINDS``: the stored value."""
    if kind == "float":
        if isinstance(value, str) and value in SPECIAL_FLOATS:
            number = SPECIAL_FLOATS[value]
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected(ValidationError)
        else:
            number = float(value)
        if not 0.0 <= number <= 1.0:  # NaN fails too
            raise Rejected(ConstraintViolation)
        return number
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected(ValidationError)
        if isinstance(value, float):
            if not value.is_integer():
                raise Rejected(ValidationError)
            value = int(value)
        if not 0 <= value <= 10:
            raise Rejected(ConstraintViolation)
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise Rejected(ValidationError)
        if len(value) > 3:
            raise Rejected(ConstraintViolation)
        return value
    assert kind == "boolean"
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return value == 1
    if value in ("true", "false"):
        return value == "true"
    raise Rejected(ValidationError)


@attrs.define
class ModelVariable:
    id: str
    name: str
    kind: str
    value: object
    version: int
    revision: int


@attrs.define
class ModelSession:
    ttl: float
    expires_at: float
    variables: dict[str, ModelVariable] = attrs.Factory(dict)  # by id, registration order

    def resolve(self, session_id: str, identifier: str) -> ModelVariable:
        """An id wins over a name (SPEC §4)."""
        if identifier in self.variables:
            return self.variables[identifier]
        for variable in self.variables.values():
            if variable.name == identifier:
                return variable
        raise Rejected(VariableNotFound)


@attrs.define
class StoreModel:
    now: float
    sessions: dict[str, ModelSession] = attrs.Factory(dict)  # not yet removed (maybe expired)
    revision: int = 0
    created: int = 0
    deleted: int = 0
    expired: int = 0

    def live(self, session_id: str) -> ModelSession:
        session = self.sessions.get(session_id)
        if session is None or session.expires_at <= self.now:
            raise Rejected(SessionNotFound)
        return session

    def is_live(self, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        return session is not None and session.expires_at > self.now

    def touch(self, session: ModelSession) -> None:
        session.expires_at = self.now + session.ttl

    def remove(self, session_id: str) -> None:
        if self.is_live(session_id):
            self.deleted += 1
        else:
            self.expired += 1
        del self.sessions[session_id]

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision


def outcome(allowed: ErrorClasses, error: SessionStoreError | None) -> None:
    assert error is not None, f"expected one of {sorted(c.__name__ for c in allowed)}"
    assert type(error) in allowed, f"{error!r} is not one of {allowed}"


class StoreMachine(RuleBasedStateMachine):
    kind = "local"  # how the machine reaches the store (see RemoteStoreMachine)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.opened = open_store_of(self.kind, **self.store_options())
        self.store: AnyStore = self.run(self.opened.__aenter__())
        self.model = StoreModel(now=self.clock.now)
        self.issued_ids: set[str] = set()  # every id a registration returned

    def store_options(self) -> dict[str, Any]:
        """The options of the store under test (a subclass may add to them)."""
        return {
            "clock": self.clock,
            "cleanup_interval": None,
            "default_ttl": DEFAULT_TTL,
            "call_timeout": None,
        }

    def teardown(self) -> None:
        try:
            self.run(self.opened.__aexit__(None, None, None))
        finally:
            self.loop.close()

    def run(self, call: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(call)

    def attempt(self, call: Coroutine[Any, Any, Any]) -> tuple[Any, SessionStoreError | None]:
        try:
            return self.run(call), None
        except SessionStoreError as error:
            return None, error

    def identifiers(self) -> list[str]:
        ids = {v.id for s in self.model.sessions.values() for v in s.variables.values()}
        return [*NAMES, *sorted(ids | self.issued_ids), "var_ghost_999"]

    # -- sessions ------------------------------------------------------------------

    @rule(session_id=st.sampled_from(SIDS), ttl=st.sampled_from([None, 5.0, 50.0, math.inf]))
    def create_session(self, session_id: str, ttl: float | None) -> None:
        model = self.model
        session = self.run(self.store.create_session(session_id, ttl=ttl))
        if model.is_live(session_id):  # idempotent: the live one, unchanged but touched
            existing = model.sessions[session_id]
            model.touch(existing)
        else:
            if session_id in model.sessions:  # expired, not swept: gone, never revived
                model.remove(session_id)
            existing = ModelSession(ttl or DEFAULT_TTL, model.now + (ttl or DEFAULT_TTL))
            model.sessions[session_id] = existing
            model.created += 1
        assert (session.id, session.ttl) == (session_id, existing.ttl)
        assert session.variable_count == len(existing.variables)

    @rule(session_id=st.sampled_from(SIDS))
    def delete_session(self, session_id: str) -> None:
        assert self.run(self.store.delete_session(session_id)) is None
        if session_id in self.model.sessions:
            self.model.remove(session_id)

    @rule(seconds=st.sampled_from([1.0, 3.0, 10.0, 60.0]))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.now = self.clock.now

    @rule()
    def cleanup_expired_sessions(self) -> None:
        model = self.model
        expired = [sid for sid in model.sessions if not model.is_live(sid)]
        for session_id in expired:
            model.remove(session_id)
        assert self.run(self.store.cleanup_expired_sessions()) == len(expired)

    # -- variables -------------------------------------------------------------------

    @rule(
        session_id=st.sampled_from(SIDS),
        name=st.sampled_from(NAMES),
        kind=st.sampled_from(sorted(KINDS)),
        value=values,
    )
    def register_variable(self, session_id: str, name: str, kind: str, value: object) -> None:
        model = self.model
        call = self.store.register_variable(session_id, name, kind, value, constraints=KINDS[kind])
        result, error = self.attempt(call)
        try:
            session = model.live(session_id)
            allowed: set[type[SessionStoreError]] = set()
            if any(v.name == name for v in session.variables.values()):
                allowed.add(VariableExists)
            try:
                stored = model_validate(kind, value)
            except Rejected as rejected:
                allowed |= rejected.allowed
            if allowed:
                raise Rejected(*allowed)
        except Rejected as rejected:
            return outcome(rejected.allowed, error)
        assert error is None, repr(error)
        assert re.fullmatch(rf"var_{name}_[1-9]\d*", result), result
        assert result not in self.issued_ids and result not in session.variables
        self.issued_ids.add(result)
        revision = model.next_revision()
        session.variables[result] = ModelVariable(result, name, kind, stored, 0, revision)
        model.touch(session)

    @rule(session_id=st.sampled_from(SIDS), data=st.data(), value=values)
    def update_variable(self, session_id: str, data: st.DataObject, value: object) -> None:
        model = self.model
        identifier = data.draw(st.sampled_from(self.identifiers()), label="identifier")
        result, error = self.attempt(self.store.update_variable(session_id, identifier, value))
        try:
            session = model.live(session_id)
            variable = session.resolve(session_id, identifier)
            stored = model_validate(variable.kind, value)
        except Rejected as rejected:
            return outcome(rejected.allowed, error)
        assert error is None, repr(error)
        variable.value, variable.version = stored, variable.version + 1
        variable.revision = model.next_revision()
        model.touch(session)
        self.assert_same(result, variable)

    @rule(session_id=st.sampled_from(SIDS), data=st.data(), atomic=st.booleans())
    def update_variables(self, session_id: str, data: st.DataObject, atomic: bool) -> None:
        model = self.model
        updates = data.draw(
            st.dictionaries(st.sampled_from(self.identifiers()), values, min_size=1, max_size=4),
            label="updates",
        )
        result, error = self.attempt(
            self.store.update_variables(session_id, updates, atomic=atomic)
        )
        try:
            session = model.live(session_id)
        except Rejected as rejected:
            return outcome(rejected.allowed, error)

        planned: dict[str, tuple[ModelVariable, object]] = {}
        failures: dict[str, ErrorClasses] = {}
        resolved: set[str] = set()
        for key, value in updates.items():
            try:
                variable = session.resolve(session_id, key)
                if variable.id in resolved:  # SPEC: the second key for one variable
                    raise Rejected(InvalidArgument)
                resolved.add(variable.id)
                planned[key] = (variable, model_validate(variable.kind, value))
            except Rejected as rejected:
                failures[key] = rejected.allowed

        if atomic and failures:
            assert isinstance(error, AtomicUpdateError), repr(error)
            assert set(error.errors) == set(failures)
            for key, allowed in failures.items():
                outcome(allowed, error.errors[key])
            return
        assert error is None, repr(error)
        assert list(result) == list(updates)  # every key, in input order
        for key, (variable, stored) in planned.items():
            variable.value, variable.version = stored, variable.version + 1
            variable.revision = model.next_revision()
            self.assert_same(result[key], variable)
        for key, allowed in failures.items():
            outcome(allowed, result[key])
        model.touch(session)

    @rule(session_id=st.sampled_from(SIDS), data=st.data())
    def delete_variable(self, session_id: str, data: st.DataObject) -> None:
        model = self.model
        identifier = data.draw(st.sampled_from(self.identifiers()), label="identifier")
        _, error = self.attempt(self.store.delete_variable(session_id, identifier))
        try:
            session = model.live(session_id)
            variable = session.resolve(session_id, identifier)
        except Rejected as rejected:
            return outcome(rejected.allowed, error)
        assert error is None, repr(error)
        del session.variables[variable.id]
        model.next_revision()
        model.touch(session)

    @rule(
        source=st.sampled_from(SIDS),
        destination=st.sampled_from(SIDS),
        round_trip=st.booleans(),
        fault=st.sampled_from([None, "value", "missing-name", "unknown-key"]),
        data=st.data(),
    )
    def import_variables(
        self,
        source: str,
        destination: str,
        round_trip: bool,
        fault: str | None,
        data: st.DataObject,
    ) -> None:
        model = self.model
        exported, error = self.attempt(self.store.export_variables(source))
        try:
            origin = model.live(source)
        except Rejected as rejected:
            return outcome(rejected.allowed, error)
        assert error is None, repr(error)
        model.touch(origin)
        assert [
            (e["id"], e["name"], e["type"], e["value"], e["version"], e["constraints"])
            for e in exported
        ] == [
            (v.id, v.name, v.kind, v.value, v.version, dict(KINDS[v.kind] or {}))
            for v in origin.variables.values()
        ]
        entries: list[dict[str, Any]] = (
            json.loads(json.dumps(exported, allow_nan=False)) if round_trip else exported
        )
        faulty: set[int] = set()
        if fault is not None and entries:
            index = data.draw(st.integers(0, len(entries) - 1), label="faulty entry")
            faulty.add(index)
            if fault == "value":
                entries[index]["value"] = "not valid for any kind here"
            elif fault == "missing-name":
                del entries[index]["name"]
            else:
                entries[index]["bogus"] = 1

        count, error = self.attempt(self.store.import_variables(destination, entries))
        try:
            session = model.live(destination)
        except Rejected as rejected:
            return outcome(rejected.allowed, error)
        taken = {v.id for v in session.variables.values()} | {
            v.name for v in session.variables.values()
        }
        clashes = {
            i for i, v in enumerate(origin.variables.values()) if v.id in taken or v.name in taken
        }
        if faulty | clashes:
            assert isinstance(error, InvalidImport), repr(error)
            assert set(error.errors) == faulty | clashes
            return
        assert error is None, repr(error)
        assert count == len(entries)
        for variable in origin.variables.values():
            session.variables[variable.id] = attrs.evolve(variable, revision=model.next_revision())
        model.touch(session)

    # -- the check after every step ----------------------------------------------------

    def assert_same(self, actual: object, expected: ModelVariable) -> None:
        assert isinstance(actual, Variable), repr(actual)
        assert (actual.id, actual.name, actual.type) == (expected.id, expected.name, expected.kind)
        assert actual.value == expected.value and type(actual.value) is type(expected.value)
        assert (actual.version, actual.revision) == (expected.version, expected.revision)
        assert dict(actual.constraints) == dict(KINDS[expected.kind] or {})

    @invariant()
    def store_equals_model(self) -> None:
        model, store = self.model, self.store
        live = sorted(sid for sid in model.sessions if model.is_live(sid))
        # reads that do not touch first
        assert sorted(self.run(store.list_sessions())) == live
        for session_id in SIDS:
            assert self.run(store.session_exists(session_id)) == (session_id in live)
        stats = self.run(store.get_stats())
        assert stats.current_sessions == len(live)
        assert stats.current_variables == sum(len(model.sessions[s].variables) for s in live)
        assert (stats.sessions_created, stats.sessions_deleted, stats.sessions_expired) == (
            model.created,
            model.deleted,
            model.expired,
        )
        # then every variable, in registration order (these reads touch: so does the model)
        for session_id in live:
            session = model.sessions[session_id]
            variables = self.run(store.list_variables(session_id))
            assert [v.id for v in variables] == list(session.variables)
            for actual, expected in zip(variables, session.variables.values(), strict=True):
                self.assert_same(actual, expected)
            model.touch(session)

    @precondition(lambda self: bool(self.model.sessions))
    @rule()
    def sessions_report_their_variables(self) -> None:
        model = self.model
        for session_id, session in model.sessions.items():
            if model.is_live(session_id):
                snapshot = self.run(self.store.get_session(session_id))
                assert snapshot.variable_count == len(session.variables)
                assert snapshot.ttl == session.ttl
                model.touch(session)


StoreMachine.TestCase.settings = settings(
    max_examples=800,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreAgainstModel = StoreMachine.TestCase


class RemoteStoreMachine(StoreMachine):
    """The same machine, every call through a tcp connection to a served store: the
    arguments, replies and errors the model expects come back through the wire."""

    kind = "tcp"


RemoteStoreMachine.TestCase.settings = settings(StoreMachine.TestCase.settings, max_examples=150)
TestRemoteStoreAgainstModel = RemoteStoreMachine.TestCase


# --------------------------------------------------------------------------
# Cases the machine found, kept as plain tests


async def test_a_second_key_for_one_variable_is_refused_even_when_the_first_key_failed(
    store: SessionStore,
) -> None:
    await store.create_session("b")
    variable_id = await store.register_variable("b", "x", "integer", 0)
    # SPEC §4: "Two keys that resolve to the same variable: the second is an
    # InvalidArgument for that key", whatever became of the first.
    result = await store.update_variables("b", {"x": 4.5, variable_id: 3})
    assert isinstance(result["x"], ValidationError)
    assert isinstance(result[variable_id], InvalidArgument)
    assert (await store.get_variable("b", "x")).version == 0
