"""One target check: what was measured, the line it must cross, and the verdict.

Its own module so that every phase that checks targets (``report.py`` for the main
harness, ``remote.py`` for the store over a connection) speaks the same type.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Check"]


@dataclass(frozen=True)
class Check:
    target: str
    loop: str  # "" when the check does not depend on the event loop
    measured: float | None
    op: str  # ">=", "<=" or "<"
    threshold: float
    detail: str
    # "x" for a ratio, else what the measured number counts ("B", "s", "ms", "/s")
    unit: str = "x"

    def formatted(self, missing: str = "-") -> str:
        if self.measured is None:
            return missing
        if self.unit == "x":
            return f"{self.measured:.2f}x"
        if self.unit == "B":
            return f"{self.measured:.0f} B"
        if self.unit == "/s":
            return f"{self.measured:,.0f}/s"
        return f"{self.measured:.2f} {self.unit}"

    @property
    def status(self) -> str:
        if self.measured is None:
            return "N/A"
        passed = {
            ">=": self.measured >= self.threshold,
            "<=": self.measured <= self.threshold,
            "<": self.measured < self.threshold,
        }[self.op]
        return "PASS" if passed else "FAIL"

    @property
    def margin(self) -> float | None:
        """Above 1 passes: measured/threshold for >=, threshold/measured for <= and <."""
        if self.measured is None or self.measured == 0:
            return None
        if self.op == ">=":
            return self.measured / self.threshold
        return self.threshold / self.measured
