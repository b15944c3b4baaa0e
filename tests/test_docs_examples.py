"""Every ```python block of the guides in docs/ runs, and type-checks as a user's own file.

Blocks run as README.md's do (``test_readme.py``): each alone, in a fresh
interpreter, in an empty temporary directory, bounded by a timeout; exit 0,
nothing on stderr, and the output the block claims.

The type check runs this environment's ``mypy --strict`` on each block in a
directory outside the repository, as a user would on their own program: it
passes only if mypy finds the installed ``sessionactor`` and its types (an
editable install through an import hook would hide it from mypy).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest
from test_readme import ROOT, TIMEOUT, CodeBlock, check_block_runs, python_blocks

DOCS: Final = ROOT / "docs"
DOCS_BLOCKS: Final = [block for page in sorted(DOCS.glob("*.md")) for block in python_blocks(page)]


def test_the_guides_have_python_blocks() -> None:
    pages = {block.path.name for block in DOCS_BLOCKS}
    assert {"index.md", "sessions.md", "variables.md", "concurrency.md"} <= pages
    assert {"threads.md", "telemetry.md", "errors.md"} <= pages


@pytest.mark.parametrize("block", DOCS_BLOCKS, ids=lambda block: block.name)
def test_docs_block_runs(block: CodeBlock) -> None:
    check_block_runs(block)


def mypy_strict(directory: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """This environment's ``mypy --strict`` on ``files`` in ``directory``, with no project
    configuration (``directory`` has an empty one) and a cache of its own."""
    (directory / "mypy.ini").write_text("[mypy]\n", encoding="utf-8")
    try:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini", *files],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 3,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"mypy still ran after {TIMEOUT * 3:g} s") from expired


def test_docs_blocks_pass_mypy_strict_outside_the_repository(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(ROOT)
    files = []
    for number, block in enumerate(b for b in DOCS_BLOCKS if not b.skipped):
        # One module per block: blocks reuse names such as main().
        (tmp_path / f"block_{number}.py").write_text(block.code, encoding="utf-8")
        files.append(f"block_{number}.py")
    result = mypy_strict(tmp_path, *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_sees_the_package_types_from_outside(tmp_path: Path) -> None:
    """mypy must find sessionactor and check calls against its types, not merely not fail."""
    (tmp_path / "user.py").write_text(
        "from sessionactor import SessionStore\n\n\n"
        "async def wrong(store: SessionStore) -> str:\n"
        '    return await store.update_variable("s1", "temperature", 0.9)\n',
        encoding="utf-8",
    )
    result = mypy_strict(tmp_path, "user.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'got "Variable", expected "str"' in result.stdout, result.stdout
    assert "import-not-found" not in result.stdout


# The contract the code is built from lives beside the repository, not in it: what
# users read (README, guides, docstrings, which become the API reference) must stand
# without it.
_INTERNAL_DOCUMENT: Final = re.compile(r"\bSPEC\b")
USER_TEXTS: Final = [
    ROOT / "README.md",
    *sorted(DOCS.glob("*.md")),
    *sorted((ROOT / "sessionactor").glob("*.py")),
]


@pytest.mark.parametrize("path", USER_TEXTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_what_users_read_cites_no_internal_document(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    cited = [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match.group()!r}"
        for match in _INTERNAL_DOCUMENT.finditer(text)
    ]
    assert not cited, f"{path.name} cites a document users do not have; explain instead: {cited}"
