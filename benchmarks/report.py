"""Turn one run's measurements into results.json, results.md, results.png and target checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import LIST_MATCHES, LIST_SIZE
from .workloads import WORKLOADS

__all__ = ["Check", "compute_checks", "write_reports"]

BACKENDS = ("store", "nowait", "floor", "direct", "naive", "redis", "pykka")
BASELINES = BACKENDS[2:]  # "nowait" is the store too: its reads skip the mailbox
CALLERS = (1, 100)
TITLES = {w.key: w.title for w in WORKLOADS}
PER_CALL = {w.key: w.ops_per_call for w in WORKLOADS}


@dataclass(frozen=True)
class Check:
    target: str
    loop: str  # "" when the check does not depend on the event loop
    measured: float | None
    op: str  # ">=", "<=" or "<"
    threshold: float
    detail: str

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


class _Cells:
    def __init__(self, cells: dict[str, Any]) -> None:
        self.cells = cells

    def get(self, loop: str, workload: str, backend: str, callers: int) -> dict[str, Any] | None:
        cell = self.cells.get(f"{loop}/{workload}/{backend}/{callers}")
        if cell is None or "error" in cell:
            return None
        return dict(cell)

    def rate(self, loop: str, workload: str, backend: str, callers: int) -> float | None:
        cell = self.get(loop, workload, backend, callers)
        return None if cell is None else float(cell["rate"])

    def ratio(
        self, loop: str, workload: str, other: str, callers: int, mine_of: str = "store"
    ) -> float | None:
        mine = self.rate(loop, workload, mine_of, callers)
        theirs = self.rate(loop, workload, other, callers)
        if mine is None or not theirs:
            return None
        return mine / theirs


def _fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def compute_checks(
    loops: list[str], cells: dict[str, Any], memory: dict[str, Any], sweep: dict[str, Any]
) -> list[Check]:
    c = _Cells(cells)
    checks: list[Check] = []
    for loop in loops:
        checks.append(
            Check("get_variable, 100 callers ≥ 0.75 x floor", loop,
                  c.ratio(loop, "get", "floor", 100), ">=", 0.75, "store / floor calls/s")
        )  # fmt: skip
        checks.append(
            Check("update_variable, 100 callers ≥ 0.6 x floor", loop,
                  c.ratio(loop, "update", "floor", 100), ">=", 0.6, "store / floor calls/s")
        )  # fmt: skip
        checks.append(
            Check("mixed 80/20, 100 callers ≥ 12 x Redis", loop,
                  c.ratio(loop, "mixed", "redis", 100), ">=", 12.0, "store / redis calls/s")
        )  # fmt: skip
        checks.append(
            Check("mixed 80/20, 100 callers ≥ 5 x pykka", loop,
                  c.ratio(loop, "mixed", "pykka", 100), ">=", 5.0, "store / pykka calls/s")
        )  # fmt: skip
        batch = c.get(loop, "get_many", "store", 100)
        single = c.rate(loop, "get", "store", 100)
        checks.append(
            Check("get_variables of 100, 100 callers: variables/s ≥ 10 x get_variable calls/s",
                  loop, None if batch is None or not single else batch["items_rate"] / single,
                  ">=", 10.0, "store, 100 x batch calls/s / single calls/s")
        )  # fmt: skip
        for key in ("get", "update"):
            cell = c.get(loop, key, "store", 1)
            measured = (
                None if cell is None or "p50_us" not in cell else cell["p99_us"] / cell["p50_us"]
            )
            checks.append(
                Check(f"{TITLES[key].split(' ')[0]}, 1 caller: p99 ≤ 3 x p50", loop, measured,
                      "<=", 3.0, "store p99 / p50")
            )  # fmt: skip
    store_memory = memory.get("store", {})
    bpv = store_memory.get("bytes_per_variable")
    checks.append(
        Check("≤ 700 bytes per variable", "", bpv, "<=", 700.0,
              f"RSS growth / variables, {store_memory.get('sessions', 0):,} sessions x 100"
              if bpv is not None else str(store_memory.get("error", "not run")))
    )  # fmt: skip
    sizes = sorted(sweep, key=int)
    measured_sweep = None
    detail = "not run"
    large_label = "1,000,000"
    if len(sizes) == 2 and all("median_seconds" in sweep[s] for s in sizes):
        small, large = (sweep[s]["median_seconds"] for s in sizes)
        measured_sweep = large / small
        detail = "median sweep time, larger / smaller"
        if int(sizes[1]) != 1_000_000:
            large_label = f"{int(sizes[1]):,} (quick; issue: 1,000,000)"
    elif sizes:
        detail = "; ".join(str(sweep[s].get("error")) for s in sizes if "error" in sweep[s])
    checks.append(
        Check(f"sweep 1,000 expired among {large_label} < 3 x among 10,000", "", measured_sweep,
              "<", 3.0, detail)
    )  # fmt: skip
    return checks


def _markdown(
    meta: dict[str, Any],
    cells: dict[str, Any],
    memory: dict[str, Any],
    sweep: dict[str, Any],
    checks: list[Check],
) -> str:
    c = _Cells(cells)
    loops: list[str] = meta["loops"]
    cfg = meta["config"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# sessionactor benchmarks",
        "",
        f"`make bench{'-full' if meta['mode'] == 'full' else ''}` ({meta['mode']} mode), "
        f"{meta['date']}, {meta['machine']}; {versions}"
        + (f"; {meta['redis_server'].split(' sha=')[0]}" if meta["redis_server"] else "")
        + f". Took {meta['seconds']} s ("
        + ", ".join(f"{k} {v} s" for k, v in meta.get("phases", {}).items())
        + ").",
        "",
        f"Throughput is the median of {cfg['repeats']} timed runs of {cfg['duration']} s "
        f"(after a {cfg['warmup']} s warm-up); latencies are every call of the 1-caller runs. "
        "All baselines ran in this same process and run, so the ratios are what to compare.",
        "",
    ]
    if meta["notes"]:
        lines += [*(f"- **Note:** {note}" for note in meta["notes"]), ""]

    lines += [
        "## Targets (issue 5)",
        "",
        "| target | loop | measured | status | how |",
        "|---|---|---:|:---:|---|",
    ]
    for check in checks:
        measured = "-" if check.measured is None else (
            f"{check.measured:.0f} B" if "bytes" in check.target else f"{check.measured:.2f}x"
        )  # fmt: skip
        loop = check.loop or "n/a"
        lines.append(
            f"| {check.target} | {loop} | {measured} | **{check.status}** | {check.detail} |"
        )
    lines.append("")

    for loop in loops:
        lines += [
            f"## Throughput on {loop} (calls/s)",
            "",
            "Batch rows count calls; multiply by 100 for variables/s.",
            "",
            "| workload | callers | " + " | ".join(BACKENDS) + " |",
            "|---|---:|" + "---:|" * len(BACKENDS),
        ]
        for w in WORKLOADS:
            for callers in CALLERS:
                row = [_fmt_rate(c.rate(loop, w.key, b, callers)) for b in BACKENDS]
                lines.append(f"| {w.title} | {callers} | " + " | ".join(row) + " |")
        lines += [
            "",
            f"### Store / baseline on {loop} (above 1: the store is faster)",
            "",
            "| workload | callers | " + " | ".join(BASELINES) + " |",
            "|---|---:|" + "---:|" * len(BASELINES),
        ]
        for w in WORKLOADS:
            for callers in CALLERS:
                row = [_fmt_ratio(c.ratio(loop, w.key, b, callers)) for b in BASELINES]
                lines.append(f"| {w.title} | {callers} | " + " | ".join(row) + " |")
        lines += [
            "",
            f"### Latency per call on {loop}, 1 caller (µs: p50 / p99 / p99.9)",
            "",
            "| workload | " + " | ".join(BACKENDS) + " |",
            "|---|" + "---:|" * len(BACKENDS),
        ]
        for w in WORKLOADS:
            row = []
            for b in BACKENDS:
                cell = c.get(loop, w.key, b, 1)
                row.append(
                    "-" if cell is None or "p50_us" not in cell
                    else f"{cell['p50_us']:.1f} / {cell['p99_us']:.1f} / {cell['p999_us']:.1f}"
                )  # fmt: skip
            lines.append(f"| {w.title} | " + " | ".join(row) + " |")
        lines.append("")

    errors = {k: v["error"] for k, v in cells.items() if "error" in v}
    if errors:
        lines += [
            "### Runs that failed",
            "",
            *(f"- `{k}`: {v}" for k, v in sorted(errors.items())),
            "",
        ]

    lines += [
        "## Reads that skip the mailbox (`*_nowait`, opt-in)",
        "",
        "The `nowait` column is the same store whose reads call the read handler directly",
        "on the loop's thread (`get_variable_nowait`, `get_variables_nowait`,",
        "`list_variables_nowait`); its writes still go through the mailbox. Against",
        "**direct**, the bare state operation with no actor:",
        "",
        "| loop | workload | callers | nowait / direct | nowait / store |",
        "|---|---|---:|---:|---:|",
    ]
    for loop in loops:
        for key in ("get", "get_many", "mixed"):
            for callers in CALLERS:
                vs_direct = c.ratio(loop, key, "direct", callers, mine_of="nowait")
                vs_store = c.ratio(loop, key, "store", callers, mine_of="nowait")
                if vs_direct is not None and vs_store is not None:
                    lines.append(
                        f"| {loop} | {TITLES[key]} | {callers} | "
                        f"{vs_direct:.2f}x | {vs_store:.2f}x |"
                    )
    lines += [
        "",
        "## Memory",
        "",
        "| backend | sessions x variables | RSS growth | bytes per variable |",
        "|---|---:|---:|---:|",
    ]
    for backend, result in memory.items():
        if "error" in result:
            lines.append(f"| {backend} | - | - | {result['error']} |")
        else:
            growth = (result["after"] - result["before"]) / 2**20
            lines.append(
                f"| {backend} | {result['sessions']:,} x {result['variables_per_session']} | "
                f"{growth:.1f} MiB | {result['bytes_per_variable']:.0f} |"
            )
    lines += [
        "",
        "Float variables with `{min: 0.0, max: 1.0}` and default metadata, registered through "
        "the public API in a fresh process; RSS after `gc.collect()`. The naive row is the same "
        "data in plain dicts and slotted objects, for scale.",
        "",
        "## Sweep scaling",
        "",
        "| live sessions | sweep of 1,000 expired: median | min | rounds |",
        "|---:|---:|---:|---:|",
    ]
    for live in sorted(sweep, key=int):
        result = sweep[live]
        if "error" in result:
            lines.append(f"| {int(live):,} | {result['error']} | - | - |")
        else:
            lines.append(
                f"| {int(live):,} | {result['median_seconds'] * 1e3:.2f} ms | "
                f"{result['min_seconds'] * 1e3:.2f} ms | {result['rounds']} |"
            )
    lines += [
        "",
        "One store per size in one fresh process, taking turns round by round. Each round adds "
        "1,000 sessions with a 10 s ttl, moves that store's fake clock (`SessionStore(clock=...)`) "
        "11 s on and times `await store.cleanup_expired_sessions()`; the automatic sweep is off. "
        "The live sessions are frozen out of the collector's sight (`gc.freeze()`) after the fill.",
        "",
        "## Method",
        "",
        "- **store**: `SessionStore()` with its defaults (call timeout 5 s, default telemetry "
        "providers), through the public API.",
        "- **floor**: a bare actor, an `asyncio.Queue` of `(command, future)` drained by one task "
        "with a trivial handler: the cost of messaging alone (one message per call whatever the "
        "workload, so it runs only get, update and mixed).",
        "- **direct**: `sessionactor.state.StoreState.handle(command)` with the store's own "
        "command messages, no actor: the work itself.",
        "- **naive**: dicts behind one `asyncio.Lock`, same float/min/max validation, version "
        "bump, timestamps and session touch; returns a tuple snapshot.",
        "- **redis**: `redis-server` on 127.0.0.1 (no persistence) via `redis.asyncio` with the "
        "`hiredis` parser (what redis-py recommends for speed); value and "
        "version are two keys. Read: one `MGET`. Update: validate client-side, then `SET` + `INCR` "
        "in one MULTI/EXEC **pipeline** (one round trip; also in the mixed workload). Batches: one "
        "`MGET` / one MULTI/EXEC pipeline; listing: `KEYS` glob + `MGET`.",
        "- **pykka**: `pykka.ThreadingActor` over the naive dicts; asyncio `tell`s it a message "
        "carrying the caller's asyncio future, which the actor thread resolves with "
        "`loop.call_soon_threadsafe` (faster here than `asyncio.wrap_future` of a "
        "`concurrent.futures.Future`, and than `run_in_executor` around `ask`).",
        "- Workloads: the hot session has 100 float variables; caller *i* uses variable *i* mod "
        f"100. Listing runs over {LIST_SIZE:,} variables of which {LIST_MATCHES} match `temp_*` "
        "(the rest are `x_temp_NNNN`, which an anchored glob must reject). `register_variable` "
        "registers fresh names in a fresh session per timed run.",
        "- All backends of a loop are set up side by side, then every workload takes turns: "
        "each timed run of one backend is followed by one of the next (order rotated per "
        "repeat), so a busy machine slows them alike. What the set-up created is frozen out of "
        "the collector (`gc.freeze()`) and `gc.collect()` runs before each timed run.",
        "- 100 callers are 100 tasks looping until one deadline. A backend that never suspends "
        "(direct, naive with a free lock) runs them one after another; its rate is still the "
        "total over the wall time.",
        "",
    ]
    return "\n".join(lines)


def _chart(path: Path, meta: dict[str, Any], cells: dict[str, Any], checks: list[Check]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = _Cells(cells)
    loop = meta["loops"][0]
    fig = plt.figure(figsize=(13, 14), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2, 1])  # type: ignore[misc]
    axes = top.subplots(2, 1)
    colours = {b: f"C{i}" for i, b in enumerate(BACKENDS)}
    width = 0.8 / len(BACKENDS)
    for ax, callers in zip(axes, CALLERS, strict=True):
        for i, backend in enumerate(BACKENDS):
            xs, ys = [], []
            for j, w in enumerate(WORKLOADS):
                rate = c.rate(loop, w.key, backend, callers)
                if rate is not None:
                    xs.append(j + (i - (len(BACKENDS) - 1) / 2) * width)
                    ys.append(rate)
            ax.bar(xs, ys, width, label=backend, color=colours[backend])
        ax.set_yscale("log")
        ax.set_xticks(range(len(WORKLOADS)), [w.short for w in WORKLOADS], fontsize=9)
        ax.set_ylabel("calls/s (log)")
        ax.set_title(f"Throughput on {loop}, {callers} caller{'s' if callers > 1 else ''}")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(ncol=len(BACKENDS), fontsize=8)
    ax = bottom.subplots()
    shown = [ch for ch in checks if ch.loop in ("", loop)]
    margins = [ch.margin or 0.0 for ch in shown]
    ax.barh(
        range(len(shown)),
        margins,
        color=["tab:green" if ch.status == "PASS" else "tab:red" for ch in shown],
    )
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(shown)), [ch.target for ch in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("measured / required (right of 1 passes)")
    ax.set_title(f"Issue 5 targets ({loop}; memory and sweep are loop-independent)")
    for y, (ch, margin) in enumerate(zip(shown, margins, strict=True)):
        label = "n/a" if ch.measured is None else f"{ch.measured:.2f}"
        ax.text(margin, y, f"  {label}", va="center", fontsize=8)
    fig.suptitle(f"sessionactor benchmarks ({meta['mode']} mode, {meta['machine']})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(
    out: Path,
    meta: dict[str, Any],
    cells: dict[str, Any],
    memory: dict[str, Any],
    sweep: dict[str, Any],
    *,
    echo: Callable[[str], None] = print,
) -> bool:
    """Write the three files, print the targets; return whether every checked target passed."""
    out.mkdir(parents=True, exist_ok=True)
    checks = compute_checks(meta["loops"], cells, memory, sweep)
    data = {"meta": meta, "cells": cells, "memory": memory, "sweep": sweep}
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "results.md").write_text(_markdown(meta, cells, memory, sweep, checks))
    try:
        _chart(out / "results.png", meta, cells, checks)
    except Exception as exc:  # the numbers matter more than the picture
        echo(f"chart not written: {type(exc).__name__}: {exc}")
    echo("")
    echo(f"Targets of issue 5 ({meta['mode']} mode):")
    for check in checks:
        measured = "n/a" if check.measured is None else f"{check.measured:.2f}"
        loop = f"[{check.loop}] " if check.loop else ""
        echo(f"  {check.status:4}  {loop}{check.target}: {measured} ({check.detail})")
    for note in meta["notes"]:
        echo(f"  note: {note}")
    echo(f"Wrote {out / 'results.md'}, {out / 'results.png'}, {out / 'results.json'}")
    return all(ch.status != "FAIL" for ch in checks)
