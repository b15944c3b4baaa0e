"""Glob matching: the rule of ``list_variables`` and ``watch_variables`` patterns, in
time linear in the name, whatever the pattern."""

from __future__ import annotations

import time

import pytest
from conftest import AnyStore
from hypothesis import given
from hypothesis import strategies as st

from sessionactor import InvalidArgument
from sessionactor._glob import MAX_PATTERN_LENGTH, compile_glob


def reference_match(pattern: str, name: str) -> bool:
    """The glob rule by dynamic programming: obviously right, quadratic."""
    rows, cols = len(pattern), len(name)
    table = [[False] * (cols + 1) for _ in range(rows + 1)]
    table[0][0] = True
    for i in range(1, rows + 1):
        char = pattern[i - 1]
        table[i][0] = table[i - 1][0] and char == "*"
        for j in range(1, cols + 1):
            if char == "*":
                table[i][j] = table[i - 1][j] or table[i][j - 1]
            elif char == "?" or char == name[j - 1]:
                table[i][j] = table[i - 1][j - 1]
    return table[rows][cols]


ALPHABET = st.sampled_from("ab*?.\\[]^$\n\udc80")


@given(st.text(ALPHABET, max_size=12), st.text(st.sampled_from("ab.\\[\n\udc80"), max_size=12))
def test_matches_exactly_the_glob_rule(pattern: str, name: str) -> None:
    assert compile_glob(pattern).matches(name) == reference_match(pattern, name)


@given(st.text(st.sampled_from("ab?"), max_size=6), st.text(st.sampled_from("ab"), max_size=20))
def test_star_patterns_match_like_the_rule(core: str, name: str) -> None:
    for pattern in (f"*{core}*", f"{core}*", f"*{core}", f"*{core}*{core}*"):
        assert compile_glob(pattern).matches(name) == reference_match(pattern, name)


def test_literal_prefix_is_what_every_match_starts_with() -> None:
    assert compile_glob("temp_*").prefix == "temp_"
    assert compile_glob("te?p_*").prefix == "te"
    assert compile_glob("*x").prefix == ""
    assert compile_glob("exact").prefix == "exact"


@pytest.mark.parametrize(
    "pattern",
    [
        "*a*a*a*a*ab",
        "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*ab",
        "*" + "a*" * 400 + "b",
        "*" + "?*" * 300 + "b",
        "a" * 100 + "*" + "a" * 100 + "b",
    ],
)
def test_backtracking_patterns_take_no_time(pattern: str) -> None:
    """Each of these takes seconds to minutes with a backtracking regex."""
    glob = compile_glob(pattern)
    names = ["a" * length for length in (64, 127, 128)]
    started = time.process_time()
    for _ in range(100):
        for name in names:
            assert not glob.matches(name)
    # 300 matches; a backtracking matcher needs seconds for the first one alone.
    assert time.process_time() - started < 2.0


def test_pattern_longer_than_the_limit_is_invalid() -> None:
    compile_glob("*" * MAX_PATTERN_LENGTH)
    with pytest.raises(InvalidArgument, match=str(MAX_PATTERN_LENGTH)):
        compile_glob("a" * (MAX_PATTERN_LENGTH + 1))


@pytest.mark.parametrize("pattern", [None, 5, b"temp*", ["temp*"]])
def test_non_str_pattern_is_invalid(pattern: object) -> None:
    with pytest.raises(InvalidArgument):
        compile_glob(pattern)


async def test_store_listing_and_watch_refuse_a_huge_pattern(store: AnyStore) -> None:
    await store.create_session("s")
    await store.register_variable("s", "a" * 128, "integer", 1)
    huge = "*a" * 150_000
    with pytest.raises(InvalidArgument):
        await store.list_variables("s", huge)
    with pytest.raises(InvalidArgument):
        async with store.watch_variables("s", pattern=huge):
            pass
    assert [v.name for v in await store.list_variables("s", "*a*a*a*a*a*a*ab")] == []
    assert [v.name for v in await store.list_variables("s", "*a*a*a*a*a*a*a")] == ["a" * 128]
