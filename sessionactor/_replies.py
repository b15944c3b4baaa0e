"""Replies finished outside the actor.

Some replies are large: every variable of a session, exported to JSON-ready
dicts, or filtered by a pattern; a program's data, deep-copied. The actor's
share is to take an immutable snapshot, which costs little; turning it into
what the caller gets is done by whoever waits for the reply (the caller's own
task, or a server's connection task), a chunk at a time, so other callers are
served in between.

A :class:`Deferred` is that snapshot with the work still to do. ``run()`` is a
generator: it does the work in chunks, yields between them, and returns the
reply. The shell decides what to do at each yield (an asyncio caller gives the
loop a turn); :func:`finish_now` runs it to the end at once, for callers of the
functional core that want the reply in one step.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Generator, Mapping
from typing import Final, Generic, TypeVar

from ._frozen import encode_float, freeze, thaw
from ._glob import Glob
from ._steps import run_now
from .errors import InvalidArgument
from .model import Variable
from .types import TypeSpec

__all__ = [
    "CHUNK",
    "Deferred",
    "ExportReply",
    "StoreExportReply",
    "ListReply",
    "Pickled",
    "ProgramReply",
    "finish_now",
]

R = TypeVar("R")

CHUNK: Final = 128
"""Items handled between two yields: about half a millisecond of work at most."""


class Deferred(Generic[R]):
    """A reply still to be finished; see the module docstring."""

    __slots__ = ()

    def run(self) -> Generator[None, None, R]:
        raise NotImplementedError


def finish_now(reply: object) -> object:
    """``reply`` itself, or a deferred reply run to its end."""
    if not isinstance(reply, Deferred):
        return reply
    return run_now(reply.run())


class ListReply(Deferred[list[Variable]]):
    """``list_variables``: a fresh list of the snapshot's variables that match the glob."""

    __slots__ = ("glob", "variables")

    def __init__(self, variables: tuple[Variable, ...], glob: Glob | None) -> None:
        self.variables = variables
        self.glob = glob

    def run(self) -> Generator[None, None, list[Variable]]:
        variables = self.variables
        if self.glob is None:
            return list(variables)
        matches = self.glob.matches
        prefix = self.glob.prefix
        found: list[Variable] = []
        for start in range(0, len(variables), CHUNK):
            if start:
                yield
            found.extend(
                v
                for v in variables[start : start + CHUNK]
                if v.name.startswith(prefix) and matches(v.name)
            )
        return found


class ExportReply(Deferred[list[dict[str, object]]]):
    """``export_variables``: JSON-ready dicts of the snapshot's variables."""

    __slots__ = ("specs", "variables")

    def __init__(self, variables: tuple[Variable, ...], specs: Mapping[str, TypeSpec]) -> None:
        self.variables = variables
        self.specs = specs

    def run(self) -> Generator[None, None, list[dict[str, object]]]:
        specs = self.specs
        exported: list[dict[str, object]] = []
        variables = self.variables
        for start in range(0, len(variables), CHUNK):
            if start:
                yield
            exported.extend(
                {
                    "id": variable.id,
                    "name": variable.name,
                    "type": variable.type,
                    "value": specs[variable.type].to_json(variable.value),
                    "constraints": thaw(variable.constraints),
                    "metadata": thaw(variable.metadata),
                    "version": variable.version,
                    "created_at": variable.created_at,
                    "updated_at": variable.updated_at,
                }
                for variable in variables[start : start + CHUNK]
            )
        return exported


class Pickled:
    """Program data of a store with a database: kept pickled, a private copy in the
    form the database holds. A reader gets a fresh copy by unpickling."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class ProgramReply(Deferred[object]):
    """``get_program``: a copy of the stored data (the store never changes its own):
    deep-copied, or unpickled afresh."""

    __slots__ = ("data",)

    def __init__(self, data: object) -> None:
        self.data = data

    def run(self) -> Generator[None, None, object]:
        data = self.data
        if type(data) is Pickled:
            return pickle.loads(data.data)
        return copy.deepcopy(data)
        yield  # a generator, like every run()


class StoreExportReply(Deferred[dict[str, object]]):
    """``export_store``: every live session with its programs and variables, and the
    global programs, as JSON-ready data (programs must be JSON-like to be exported)."""

    __slots__ = ("global_programs", "sessions", "specs")

    def __init__(
        self,
        sessions: tuple[tuple[object, ...], ...],
        global_programs: tuple[tuple[str, object], ...],
        specs: Mapping[str, TypeSpec],
    ) -> None:
        self.sessions = sessions
        self.global_programs = global_programs
        self.specs = specs

    def run(self) -> Generator[None, None, dict[str, object]]:
        from ._imports import STORE_FORMAT, STORE_FORMAT_VERSION

        sessions: list[dict[str, object]] = []
        for session in self.sessions:
            session_id, ttl, metadata, created_at, last_accessed, worker, programs, variables = (
                session
            )
            exported = yield from ExportReply(variables, self.specs).run()  # type: ignore[arg-type]
            sessions.append(
                {
                    "id": session_id,
                    "ttl": encode_float(ttl),  # type: ignore[arg-type]
                    "metadata": thaw(metadata),
                    "created_at": created_at,
                    "last_accessed": last_accessed,
                    "last_worker_id": worker,
                    "programs": {
                        program_id: _json_program(
                            f"program {program_id!r} of session {session_id!r}", data
                        )
                        for program_id, data in programs  # type: ignore[attr-defined]
                    },
                    "variables": exported,
                }
            )
            yield
        return {
            "format": STORE_FORMAT,
            "version": STORE_FORMAT_VERSION,
            "sessions": sessions,
            "global_programs": {
                program_id: _json_program(f"global program {program_id!r}", data)
                for program_id, data in self.global_programs
            },
        }


def _json_program(what: str, data: object) -> object:
    """Program data as JSON-ready data; ``InvalidArgument`` if it is not JSON-like."""
    if type(data) is Pickled:
        data = pickle.loads(data.data)  # the store pickled it itself
    try:
        return thaw(freeze(data))
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"{what} cannot be exported, it is not JSON-like: {error}") from None
