"""Every ```python block of README.md runs as a script and does what its comments claim.

Each block runs on its own, in a fresh interpreter (the project's: the one
running the tests) in an empty temporary directory, bounded by a timeout. It
must exit 0 and print nothing on stderr: no traceback, no warning, no "task was
destroyed" note. A block claims its output in one of two ways, and stdout must
then be exactly that: every ``print(...)`` line ends with a comment that is its
output (``print(variable.version)  # 1``), or the block is followed by a
```text block right below ``<!-- output -->``. A block right below
``<!-- no-test -->`` is not run; keep that for fragments that truly cannot run.

The same machinery checks the guides in docs/ (``test_docs_examples.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

import attrs
import pytest

ROOT: Final = Path(__file__).resolve().parent.parent
README: Final = ROOT / "README.md"
SKIP_MARK: Final = "<!-- no-test -->"
OUTPUT_MARK: Final = "<!-- output -->"
TIMEOUT: Final = 60.0  # seconds for one block; every block here takes well under one
_FENCE: Final = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_CLAIMED_OUTPUT: Final = re.compile(r"^\s*print\(.*\)\s+# (?P<output>.*)$")


@attrs.frozen
class CodeBlock:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    mark: str = ""  # the line right above the block, if it is an HTML comment
    output: str | None = None  # the ```text block right below <!-- output --> after it

    @property
    def skipped(self) -> bool:
        return self.mark == SKIP_MARK

    @property
    def name(self) -> str:
        """``README.md:42``: where the block starts, for test ids and messages."""
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        return f"{where}:{self.line}"

    def claimed_output(self) -> list[str] | None:
        """The lines the block says it prints: its output block, or its print comments.

        None when it claims nothing. A block that comments some of its prints and
        not others claims nothing checkable, which is an error, as is claiming both ways.
        """
        print_lines = [
            line for line in self.code.splitlines() if line.lstrip().startswith("print(")
        ]
        claims = [m["output"] for line in print_lines if (m := _CLAIMED_OUTPUT.match(line))]
        if self.output is not None:
            if claims:
                raise AssertionError(
                    f"{self.name}: claim the output by comments or a block, not both"
                )
            return self.output.splitlines()
        if not claims:
            return None
        if len(claims) != len(print_lines):
            raise AssertionError(
                f"{self.name}: comment every print(...) line with its output, or none"
            )
        return claims


def code_blocks(path: Path) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown file, in order (CommonMark fences)."""
    blocks: list[CodeBlock] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not _closes(lines[index], fence):
            body.append(lines[index])
            index += 1
        index += 1  # past the closing fence
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        blocks.append(
            CodeBlock(
                path=path,
                line=start + 1,
                language=opening["info"].lower(),
                code="\n".join(body) + "\n",
                mark=previous if previous.startswith("<!--") else "",
            )
        )
    return blocks


def _closes(line: str, fence: str) -> bool:
    """A closing fence: only the opening's character, at least as many, nothing else."""
    text = line.strip()
    return len(text) >= len(fence) and set(text) == {fence[0]}


def python_blocks(path: Path) -> list[CodeBlock]:
    """The ```python blocks of a Markdown file, each with the output block that follows it."""
    found: list[CodeBlock] = []
    for block in code_blocks(path):
        if block.language in ("python", "py"):
            found.append(block)
        elif block.mark == OUTPUT_MARK:
            if not found or found[-1].output is not None:
                raise AssertionError(f"{block.name}: an output block follows no python block")
            found[-1] = attrs.evolve(found[-1], output=block.code)
    return found


def run_block(block: CodeBlock) -> subprocess.CompletedProcess[str]:
    """Run the block as a script with this interpreter, in an empty temporary directory."""
    with tempfile.TemporaryDirectory(prefix="sessionactor-block-") as directory:
        script = Path(directory) / "block.py"
        script.write_text(block.code, encoding="utf-8")
        try:
            return subprocess.run(
                [sys.executable, "-W", "error", str(script)],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            raise AssertionError(f"{block.name} still ran after {TIMEOUT:g} s") from expired


def check_block_runs(block: CodeBlock) -> None:
    """The block exits 0, writes nothing to stderr, and prints what it claims."""
    if block.skipped:
        pytest.skip(f"{block.name} is marked {SKIP_MARK}")
    result = run_block(block)
    assert result.returncode == 0, f"{block.name} failed:\n{result.stderr}"
    assert result.stderr == "", f"{block.name} wrote to stderr:\n{result.stderr}"
    claimed = block.claimed_output()
    if claimed is not None:
        assert result.stdout.splitlines() == claimed, f"{block.name} printed other output"


README_BLOCKS: Final = python_blocks(README)


def test_readme_has_python_blocks() -> None:
    assert len(README_BLOCKS) >= 5


@pytest.mark.parametrize("block", README_BLOCKS, ids=lambda block: block.name)
def test_readme_block_runs(block: CodeBlock) -> None:
    check_block_runs(block)


def test_fence_parsing_finds_blocks_and_marks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nprint(1)  # 1\n```\n\n<!-- no-test -->\n\n"
        "```python\nawait fragment\n```\n\n````sh\n```python\nnot a block\n```\n````\n\n"
        "```python\nfor n in (1, 2):\n    print(n)\n```\n\n<!-- output -->\n```text\n1\n2\n```\n",
        encoding="utf-8",
    )
    blocks = code_blocks(page)
    assert [(b.line, b.language, b.skipped) for b in blocks] == [
        (3, "python", False),
        (9, "python", True),
        (13, "sh", False),
        (19, "python", False),
        (25, "text", False),
    ]
    assert blocks[0].code == "print(1)  # 1\n"
    assert blocks[0].claimed_output() == ["1"]
    found = python_blocks(page)
    assert [b.line for b in found] == [3, 9, 19]
    assert found[2].claimed_output() == ["1", "2"]


def test_a_failing_block_fails_its_check(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nraise SystemExit('broken')\n```\n\n```python\nprint(2)  # 3\n```\n\n"
        "```python\nprint(4)\n```\n<!-- output -->\n```text\n5\n```\n\n"
        "```python\nimport warnings\nwarnings.warn('careful')\n```\n",
        encoding="utf-8",
    )
    broken, wrong_comment, wrong_block, warning = python_blocks(page)
    with pytest.raises(AssertionError, match="broken"):
        check_block_runs(broken)
    with pytest.raises(AssertionError, match="printed other output"):
        check_block_runs(wrong_comment)
    with pytest.raises(AssertionError, match="printed other output"):
        check_block_runs(wrong_block)
    with pytest.raises(AssertionError, match="careful"):
        check_block_runs(warning)
