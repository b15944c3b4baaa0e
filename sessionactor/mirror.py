"""Mirrors: a session's variables as a mapping you read without awaiting, kept current.

A :class:`Mirror` is a read-only ``dict`` of a session's variables by name,
filled from a watch and updated as changes are committed, so a hot read costs
one dict lookup and no message to the actor. It follows the session in
revision order, and it never lags behind a write that a call of the same store
object has returned:

* on a local store the watch is drained in the actor's own turn, before any
  caller of that turn resumes, so every write is visible in the mirror by the
  time any call that made it returns;
* through a connection, the server sends a turn's changes before that turn's
  replies, and the client applies them as they arrive, before it resolves the
  calls whose replies come after them.

If the watch behind it overflows (a remote consumer fell behind), the mirror
lists the session again by itself. It ends when its session is deleted or
expires (``closed`` becomes True and it empties) or when the store or the
connection goes away (``error`` says why; it empties then too, so a stale value
is never read as current).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Final, NoReturn, Protocol, TypeVar

from ._watch import GuidedContext
from .errors import SessionStoreError, WatchOverflow
from .model import Variable, VariableChange

__all__ = ["Mirror", "MirrorContext", "Mirroring"]

H = TypeVar("H")

_HOW_TO_MIRROR: Final = (
    "`async with store.mirror(...) as variables:` and then read `variables[name].value`"
)


class _Source(Protocol[H]):
    """What a mirror needs of a store: a watch drained by a callback, and its end."""

    async def _subscribe(
        self,
        session_id: str,
        identifiers: None,
        pattern: str | None,
        include_initial: bool,
        buffer: int,
        on_ready: Callable[[H], None] | None = None,
    ) -> H: ...

    def _unsubscribe(self, watch: H) -> None: ...


def _read_only(*args: object, **kwargs: object) -> NoReturn:
    raise TypeError("a Mirror is read-only: change variables through the store")


class Mirror(dict[str, Variable]):
    """A read-only mapping of one session's variables by name, kept current by a watch.

    Reading is a plain dict lookup: ``mirror["temperature"].value``.
    ``revision`` is the store revision of the last change applied; ``closed``
    says whether it has ended, and ``error`` why, if not because its session
    went away.

    >>> async with store.mirror("s1") as variables:  # doctest: +SKIP
    ...     variables["temperature"].value
    0.7
    """

    __slots__ = ("closed", "error", "pattern", "revision", "session_id")

    def __init__(self, session_id: str, pattern: str | None = None) -> None:
        super().__init__()
        self.session_id = session_id
        self.pattern = pattern
        self.revision = 0
        self.closed = False
        self.error: SessionStoreError | None = None

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"revision {self.revision}"
        return f"<Mirror of session {self.session_id!r}, {len(self)} variables, {state}>"

    def __reduce__(self) -> tuple[type[dict[str, Variable]], tuple[dict[str, Variable]]]:
        return (dict, (dict(self),))

    # -- fed by the watch ---------------------------------------------------------------

    def _apply(self, changes: Iterable[VariableChange]) -> None:
        put = dict.__setitem__
        for change in changes:
            kind = change.kind
            if kind == "deleted":
                if change.name is not None:
                    dict.pop(self, change.name, None)
            elif kind == "session_closed":
                self._end(None)
            elif change.variable is not None:
                put(self, change.variable.name, change.variable)
            if change.revision > self.revision:
                self.revision = change.revision

    def _reset(self) -> None:
        dict.clear(self)

    def _end(self, error: SessionStoreError | None) -> None:
        dict.clear(self)
        self.closed = True
        if error is not None and self.error is None:
            self.error = error


class Mirroring:
    """Gives a store ``mirror()``, on top of its ``_subscribe``/``_unsubscribe`` watch."""

    def mirror(self, session_id: str, *, pattern: str | None = None) -> MirrorContext:
        """A :class:`Mirror` of the session's variables (those whose name matches
        ``pattern``, if given), for the ``async with`` block.

        >>> async with store.mirror("s1") as variables:  # doctest: +SKIP
        ...     while variables["temperature"].value < 1.0:
        ...         await asyncio.sleep(0.1)
        """
        return MirrorContext(self._mirror(session_id, pattern))

    @contextlib.asynccontextmanager
    async def _mirror(self, session_id: str, pattern: str | None) -> AsyncIterator[Mirror]:
        feed = _Feed(self, Mirror(session_id, pattern))  # type: ignore[arg-type]
        await feed.subscribe()
        try:
            yield feed.mirror
        finally:
            feed.close()


class _Feed:
    """Keeps one mirror current: its watch, drained as changes come, and a new watch
    (the session listed again) when that one overflows."""

    def __init__(self, source: _Source[Any], mirror: Mirror) -> None:
        self.source = source
        self.mirror = mirror
        self.watch: Any = None
        self.fresh = True  # the next batch is a new watch's snapshot: it replaces the contents
        self.relisting: set[asyncio.Task[None]] = set()

    async def subscribe(self) -> None:
        self.watch = None
        self.fresh = True
        mirror = self.mirror
        self.watch = await self.source._subscribe(
            mirror.session_id, None, mirror.pattern, True, sys.maxsize, on_ready=self.drain
        )
        self.drain(self.watch)

    def drain(self, watch: Any) -> None:
        if self.watch is not None and watch is not self.watch:
            return  # an earlier watch, ended by an overflow
        events, ending = watch.take()
        mirror = self.mirror
        if self.fresh:  # the first batch of a watch is its whole snapshot
            self.fresh = False
            mirror._reset()
        mirror._apply(events)
        if isinstance(ending, WatchOverflow) and not mirror.closed:
            task = asyncio.get_running_loop().create_task(self.relist())
            self.relisting.add(task)
            task.add_done_callback(self.relisting.discard)
        elif isinstance(ending, SessionStoreError):
            mirror._end(ending)
        elif ending is not None:
            mirror._end(None)

    async def relist(self) -> None:
        try:
            await self.subscribe()
        except SessionStoreError as error:
            self.mirror._end(error)

    def close(self) -> None:
        for task in self.relisting:
            task.cancel()
        if self.watch is not None:
            self.source._unsubscribe(self.watch)
        if not self.mirror.closed:
            self.mirror._end(None)


class MirrorContext(GuidedContext[Mirror]):
    """What ``mirror()`` returns: enter it with ``async with`` to get the :class:`Mirror`."""

    __slots__ = ()
    call = "mirror"
    gives = "the variables"
    how_to = _HOW_TO_MIRROR
