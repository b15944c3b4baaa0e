"""What every backend implements, and the data every workload uses.

A backend is one way to keep session variables: the store itself, or one of
the baselines in :mod:`benchmarks.baselines`. Every backend keeps float
variables with the constraint ``{"min": 0.0, "max": 1.0}``, validates each
update (a number, not a bool, within min/max), bumps a version on each update
and returns something that carries the value and the version.
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "BIG_SESSION",
    "CONSTRAINTS",
    "HOT_NAMES",
    "HOT_SESSION",
    "LIST_MATCHES",
    "LIST_PATTERN",
    "LIST_SIZE",
    "N_HOT",
    "Backend",
    "BenchValueError",
    "big_names",
    "check_float",
]

CONSTRAINTS: dict[str, float] = {"min": 0.0, "max": 1.0}
"""The constraints of every benchmark variable."""

N_HOT = 100
HOT_SESSION = "hot"
HOT_NAMES: list[str] = [f"v{i:03d}" for i in range(N_HOT)]
"""The 100 float variables of the session that get, update, mixed and batch runs use."""

BIG_SESSION = "big"
LIST_SIZE = 10_000
LIST_MATCHES = 100
LIST_PATTERN = "temp_*"


def big_names() -> list[str]:
    """10,000 names: 100 match ``temp_*``; 9,900 are ``x_temp_NNNN`` (anchoring must reject)."""
    return [f"temp_{i:04d}" if i < LIST_MATCHES else f"x_temp_{i:04d}" for i in range(LIST_SIZE)]


class BenchValueError(ValueError):
    """A baseline rejected a value (the store raises its own errors)."""


def check_float(value: object, low: float = 0.0, high: float = 1.0) -> float:
    """The float type and its min/max constraint, checked as the baselines do it."""
    if type(value) is not float and type(value) is not int:  # bool is rejected too
        raise BenchValueError("must be a number")
    number = float(value)
    if not number >= low:  # NaN fails too
        raise BenchValueError(f"value {number} is below minimum {low}")
    if number > high:
        raise BenchValueError(f"value {number} is above maximum {high}")
    return number


class Backend(Protocol):
    """The operations the workloads drive. All are called on the running loop."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create_session(self, session_id: str) -> None: ...

    async def delete_session(self, session_id: str) -> None: ...

    async def register(self, session_id: str, name: str, value: float) -> object: ...

    async def get(self, session_id: str, name: str) -> object: ...

    async def update(self, session_id: str, name: str, value: float) -> object: ...

    async def get_many(self, session_id: str, names: list[str]) -> object: ...

    async def update_many(self, session_id: str, updates: dict[str, float]) -> object: ...

    async def list_matching(self, session_id: str, pattern: str) -> object: ...
