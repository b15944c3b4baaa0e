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

from ._frozen import thaw
from ._glob import Glob
from .model import Variable
from .types import TypeSpec

__all__ = [
    "CHUNK",
    "Deferred",
    "ExportReply",
    "ListReply",
    "Pickled",
    "ProgramReply",
    "finish_now",
]

R = TypeVar("R")

CHUNK: Final = 1024
"""Items handled between two yields: about a millisecond of work at most."""


class Deferred(Generic[R]):
    """A reply still to be finished; see the module docstring."""

    __slots__ = ()

    def run(self) -> Generator[None, None, R]:
        raise NotImplementedError


def finish_now(reply: object) -> object:
    """``reply`` itself, or a deferred reply run to its end."""
    if not isinstance(reply, Deferred):
        return reply
    steps = reply.run()
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


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
