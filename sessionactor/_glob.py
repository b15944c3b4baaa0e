"""Glob patterns over variable names, matched in time linear in the name.

A pattern is matched against the whole name: ``*`` is any run of characters,
``?`` exactly one, every other character is literal. A naive translation into
a regular expression (``*`` → ``.*``) backtracks: ``*a*a*a*a*ab`` against a name
of 128 ``a`` takes seconds, and the actor would hold every caller meanwhile.

Splitting the pattern at its stars gives literal segments (``?`` inside a
segment is still one character). A name matches when it starts with the first
segment, ends with the last, and holds the middle ones in order in between.
Taking each middle segment at its leftmost place is always right (any later
place leaves less room for the rest), so no choice is ever undone. The regular
expression below says exactly that: each middle segment sits in an atomic
group, which the engine never re-enters once it matched. Matching a name of
length n then costs at most O(n · len(pattern)) steps, and patterns are bounded.
"""

from __future__ import annotations

import functools
import re
from typing import Final

import attrs

from .errors import InvalidArgument, describe

__all__ = ["MAX_PATTERN_LENGTH", "Glob", "compile_glob"]

MAX_PATTERN_LENGTH: Final = 1024
"""Longest pattern accepted. Names have at most 128 characters, so a longer
pattern could only add stars."""


@attrs.frozen(weakref_slot=False)
class Glob:
    """A compiled pattern: ``matches(name)`` and the literal ``prefix`` every match starts with."""

    pattern: str
    prefix: str
    _regex: re.Pattern[str]

    def matches(self, name: str) -> bool:
        return self._regex.fullmatch(name) is not None


def _segment(text: str) -> str:
    return "".join("." if char == "?" else re.escape(char) for char in text)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> Glob:
    parts = pattern.split("*")
    if len(parts) == 1:
        regex = _segment(pattern)
    else:
        first, *middle, last = parts
        pieces = [_segment(first)]
        pieces.extend(f"(?>.*?{_segment(part)})" for part in middle if part)
        pieces.append(f".*{_segment(last)}")
        regex = "".join(pieces)
    cut = min((i for i, char in enumerate(pattern) if char in "*?"), default=len(pattern))
    return Glob(pattern, pattern[:cut], re.compile(regex, re.DOTALL))


def compile_glob(pattern: object) -> Glob:
    """The compiled form of a glob; ``InvalidArgument`` for a non-str or too long pattern.

    >>> compile_glob("temp_*").matches("temp_cpu"), compile_glob("temp_*").matches("my_temp_x")
    (True, False)
    """
    if type(pattern) is not str:
        raise InvalidArgument(f"pattern must be a str, got {describe(pattern)}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidArgument(
            f"pattern must be at most {MAX_PATTERN_LENGTH} characters, got {len(pattern)}"
        )
    return _compile(pattern)
