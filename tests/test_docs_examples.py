"""The installed package type-checks as a user's own file would see it.

The type check runs this environment's ``mypy --strict`` in a directory outside
the repository, as a user would on their own program: it passes only if mypy
finds the installed ``sessionactor`` and its types (an editable install through
an import hook would hide it from mypy).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_readme import ROOT, TIMEOUT


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


def test_mypy_strict_sees_the_package_types_from_outside(tmp_path: Path) -> None:
    """mypy must find sessionactor and check calls against its types, not merely not fail."""
    assert not tmp_path.is_relative_to(ROOT)
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
