"""Turn one run's measurements into results.json, results.md, results.png and target checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import LIST_MATCHES, LIST_SIZE
from .remote import checks as remote_checks
from .remote import curve_summary, describe
from .remote import tables as remote_tables
from .targets import Check
from .workloads import WORKLOADS

__all__ = ["Check", "compute_checks", "write_reports"]

BACKENDS = ("store", "nowait", "floor", "direct", "naive", "redis", "pykka")
BASELINES = BACKENDS[2:]  # "nowait" is the store too: its reads skip the mailbox
CALLERS = (1, 100)
# The durability section: the store in memory and with a database, Redis without and with
# an append-only file; update also runs with WIDE_CALLERS for some of them.
DURABLE = ("store", "store-normal", "store-full", "redis", "redis-everysec", "redis-always")
DURABLE_RATIOS = (  # (mine, theirs)
    ("store-normal", "store"),
    ("store-full", "store"),
    ("store-full", "redis-always"),
    ("store-normal", "redis-everysec"),
)
WIDE_CALLERS = 1_000
TITLES = {w.key: w.title for w in WORKLOADS}
PER_CALL = {w.key: w.ops_per_call for w in WORKLOADS}
PYKKA_SWING = "swings about 2x between runs on 2 cores (see the pykka note)"
PYKKA_NOTE = (
    "**The pykka ratio** swings about 2x from one run to the next on this 2-core machine: "
    "pykka's actor is a thread of its own, which competes with the event loop's thread for "
    "the cores (and for the GIL), so its rate depends on how the scheduler happens to share "
    "them while the other machine's programs run. How it is called: asyncio `tell`s the "
    "`pykka.ThreadingActor` (holding the naive dicts) a message that carries the caller's "
    "asyncio future, and the actor thread resolves it with `loop.call_soon_threadsafe`; "
    "measured side by side, this was faster than awaiting a `concurrent.futures.Future` "
    "through `asyncio.wrap_future` and than `run_in_executor` around the blocking `ask` "
    "(`baselines.py`, pykka). Read the pykka target across several runs."
)


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


def _durable_checks(c: _Cells, loop: str) -> list[Check]:
    """The store with a database against itself in memory and against Redis with an AOF."""
    wide = f"{WIDE_CALLERS:,}"
    return [
        Check("update_variable, 100 callers: store-normal ≥ 0.6 x store", loop,
              c.ratio(loop, "update", "store", 100, mine_of="store-normal"), ">=", 0.6,
              "store-normal / store (in memory) calls/s"),
        Check("update_variable, 100 callers: store-full ≥ 0.25 x store", loop,
              c.ratio(loop, "update", "store", 100, mine_of="store-full"), ">=", 0.25,
              "store-full / store (in memory) calls/s"),
        Check(f"update_variable, {wide} callers: store-full ≥ 0.5 x store", loop,
              c.ratio(loop, "update", "store", WIDE_CALLERS, mine_of="store-full"), ">=", 0.5,
              "store-full / store (in memory) calls/s"),
        Check("get_variable, 100 callers: store-normal ≥ 0.95 x store", loop,
              c.ratio(loop, "get", "store", 100, mine_of="store-normal"), ">=", 0.95,
              "store-normal / store (in memory) calls/s"),
        Check("get_variable, 100 callers: store-full ≥ 0.95 x store", loop,
              c.ratio(loop, "get", "store", 100, mine_of="store-full"), ">=", 0.95,
              "store-full / store (in memory) calls/s"),
        Check("update_variable, 100 callers: store-full ≥ 3 x redis-always", loop,
              c.ratio(loop, "update", "redis-always", 100, mine_of="store-full"), ">=", 3.0,
              "store-full / redis-always calls/s"),
        Check(f"update_variable, {wide} callers: store-full ≥ 3 x redis-always", loop,
              c.ratio(loop, "update", "redis-always", WIDE_CALLERS, mine_of="store-full"), ">=",
              3.0, "store-full / redis-always calls/s"),
    ]  # fmt: skip


def _open_check(durability: dict[str, Any]) -> Check:
    opened = durability.get("open")
    if opened is None:
        error = durability.get("error", "not run")
        return Check("open a database of 1,000,000 variables ≤ 10 s", "", None, "<=", 10.0,
                     str(error), unit="s")  # fmt: skip
    size = f"{opened['variables']:,}"
    detail = (
        f"median of {len(opened['seconds'])} opens (`async with SessionStore(database=...)` "
        f"entering), {opened['sessions']:,} sessions"
    )
    label = size
    if opened["variables"] != 1_000_000:
        label = f"{size} (quick; full: 1,000,000)"
        linear = opened["median_seconds"] / opened["variables"] * 1_000_000
        detail += f"; at this rate per variable, 1,000,000 would take {linear:.0f} s"
    return Check(f"open a database of {label} variables ≤ 10 s", "", opened["median_seconds"],
                 "<=", 10.0, detail, unit="s")  # fmt: skip


def _head_of_line_check(head_of_line: dict[str, Any]) -> Check:
    busy = next(
        (row for row in head_of_line.get("phases", ()) if row["phase"] == "export+list"), None
    )
    detail = (
        str(head_of_line.get("error", "not run"))
        if busy is None
        else f"1 caller's get_variable while export_variables + list_variables of "
        f"100,000 run, {head_of_line['seconds_per_phase']:.0f} s"
    )
    measured = None if busy is None else float(busy["p99_ms"])
    return Check("p99 of gets while export+list run ≤ 20 ms", "", measured, "<=", 20.0, detail,
                 unit="ms")  # fmt: skip


def compute_checks(
    loops: list[str],
    cells: dict[str, Any],
    memory: dict[str, Any],
    sweep: dict[str, Any],
    durability: dict[str, Any] | None = None,
    head_of_line: dict[str, Any] | None = None,
    remote: dict[str, Any] | None = None,
) -> list[Check]:
    c = _Cells(cells)
    checks: list[Check] = []
    for loop in loops:
        checks.append(
            Check("get_variable, 100 callers ≥ 0.85 x floor", loop,
                  c.ratio(loop, "get", "floor", 100), ">=", 0.85,
                  f"store / floor calls/s, both on {loop}")
        )  # fmt: skip
        checks.append(
            Check("update_variable (float, min/max), 100 callers ≥ 0.65 x floor", loop,
                  c.ratio(loop, "update", "floor", 100), ">=", 0.65,
                  f"store / floor calls/s, both on {loop}")
        )  # fmt: skip
        checks.append(
            Check("mixed 80/20, 100 callers ≥ 12 x Redis", loop,
                  c.ratio(loop, "mixed", "redis", 100), ">=", 12.0, "store / redis calls/s")
        )  # fmt: skip
        checks.append(
            Check("mixed 80/20, 100 callers ≥ 3 x pykka", loop,
                  c.ratio(loop, "mixed", "pykka", 100), ">=", 3.0,
                  f"store / pykka calls/s; {PYKKA_SWING}")
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
        checks += _durable_checks(c, loop)
    store_memory = memory.get("store", {})
    bpv = store_memory.get("bytes_per_variable")
    checks.append(
        Check("≤ 700 bytes per variable", "", bpv, "<=", 700.0,
              f"RSS growth / variables, {store_memory.get('sessions', 0):,} sessions x 100"
              if bpv is not None else str(store_memory.get("error", "not run")), unit="B")
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
            large_label = f"{int(sizes[1]):,} (quick; full: 1,000,000)"
    elif sizes:
        detail = "; ".join(str(sweep[s].get("error")) for s in sizes if "error" in sweep[s])
    checks.append(
        Check(f"sweep 1,000 expired among {large_label} < 3 x among 10,000", "", measured_sweep,
              "<", 3.0, detail)
    )  # fmt: skip
    checks.append(_open_check(durability or {}))
    checks.append(_head_of_line_check(head_of_line or {}))
    checks += remote_checks(remote or {})
    return checks


def _durable_tables(c: _Cells, loop: str) -> list[str]:
    """Throughput, ratios and 1-caller latency of the store with and without a database,
    and of Redis with and without an append-only file, on one loop."""
    rows = [
        (w, callers)
        for w in WORKLOADS
        for callers in (*CALLERS, WIDE_CALLERS)
        if any(c.rate(loop, w.key, b, callers) is not None for b in DURABLE[1:3] + DURABLE[4:])
    ]
    if not rows:
        return []
    lines = [
        f"### Throughput on {loop} (calls/s)",
        "",
        "| workload | callers | " + " | ".join(DURABLE) + " |",
        "|---|---:|" + "---:|" * len(DURABLE),
    ]
    for w, callers in rows:
        cells = [_fmt_rate(c.rate(loop, w.key, b, callers)) for b in DURABLE]
        lines.append(f"| {w.title} | {callers:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"### Ratios on {loop} (above 1: the first is faster)",
        "",
        "| workload | callers | " + " | ".join(f"{a} / {b}" for a, b in DURABLE_RATIOS) + " |",
        "|---|---:|" + "---:|" * len(DURABLE_RATIOS),
    ]
    for w, callers in rows:
        ratios = [
            _fmt_ratio(c.ratio(loop, w.key, theirs, callers, mine_of=mine))
            for mine, theirs in DURABLE_RATIOS
        ]
        lines.append(f"| {w.title} | {callers:,} | " + " | ".join(ratios) + " |")
    lines += [
        "",
        f"### Latency per call on {loop}, 1 caller (µs: p50 / p99 / p99.9)",
        "",
        "| workload | " + " | ".join(DURABLE) + " |",
        "|---|" + "---:|" * len(DURABLE),
    ]
    for w, callers in rows:
        if callers != 1:
            continue
        latencies = []
        for b in DURABLE:
            cell = c.get(loop, w.key, b, 1)
            latencies.append(
                "-" if cell is None or "p50_us" not in cell
                else f"{cell['p50_us']:.1f} / {cell['p99_us']:.1f} / {cell['p999_us']:.1f}"
            )  # fmt: skip
        lines.append(f"| {w.title} | " + " | ".join(latencies) + " |")
    lines.append("")
    return lines


def _fmt_optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _durability_facts(durability: dict[str, Any]) -> list[str]:
    lines = ["### Group commit, time to open, size (fresh process)", ""]
    if "error" in durability or not durability:
        return [*lines, f"Not measured: {durability.get('error', 'not run')}.", ""]
    runs = durability["group_commit"]
    lines += [
        "Callers updating the hot session's 100 floats (caller *i*, variable *i* mod 100) for "
        f"{runs[0]['seconds']:.1f} s, each run on a fresh database, one after the other. A "
        "turn is one pass of the actor over its mailbox (up to 512 calls); its changes are one "
        "submission to the writer thread, which commits whatever turns have queued in one "
        "transaction. Counted by wrapping `Database.submit` and the `on_commit` callback in "
        "that process.",
        "",
        "| synchronous | callers | updates/s | commits/s | turns/s | turns per commit "
        "| records per commit | updates per commit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run['synchronous']} | {run['callers']:,} | {_fmt_rate(run['updates_per_second'])} "
            f"| {run['commits_per_second']:,.0f} | {run['turns_per_second']:,.0f} "
            f"| {_fmt_optional(run['turns_per_commit'], '.2f')} "
            f"| {_fmt_optional(run['records_per_commit'], '.1f')} "
            f"| {_fmt_optional(run['updates_per_commit'], '.1f')} |"
        )
    opened, size = durability["open"], durability["size"]
    opens = ", ".join(f"{seconds:.2f} s" for seconds in opened["seconds"])
    files = " + ".join(f"{name} {count:,}" for name, count in size["files"].items())
    lines += [
        "",
        "| database | variables | time to open: median (each) | bytes per variable | file bytes |",
        "|---|---:|---:|---:|---|",
        f"| {opened['sessions']:,} sessions x {opened['variables_per_session']} floats "
        f"| {opened['variables']:,} | {opened['median_seconds']:.2f} s ({opens}) "
        f"| {size['bytes_per_variable']:.0f} | {files} |",
        "",
        "The database is built once (`create_session` + `import_variables` of the same 100 "
        f'exported floats per session, `synchronous="off"`, {opened["build_seconds"]:.1f} s, '
        "not part of the figures) and closed cleanly. The time to open is "
        "`await store.__aenter__()` of `SessionStore(database=path)`, what "
        "`async with` waits for before its body runs: the file checked, every row read and "
        "the state rebuilt; the store is closed before the next open. Bytes per variable: the "
        "database file plus its write-ahead log (none is left after a clean close) over the "
        "number of variables.",
        "",
    ]
    return lines


def _head_of_line_table(head_of_line: dict[str, Any]) -> list[str]:
    lines = ["## Head-of-line: small calls while large ones run", ""]
    if "phases" not in head_of_line:
        return [*lines, f"Not measured: {head_of_line.get('error', 'not run')}.", ""]
    lines += [
        "`python -m benchmarks.head_of_line` in a fresh process, "
        f"{head_of_line['seconds_per_phase']:.0f} s per phase: one caller times "
        "`get_variable` on a session of one variable while background tasks loop over a "
        "session of 100,000 floats. Target: p99 of gets while export+list run ≤ "
        f"{head_of_line['target_p99_ms']:.0f} ms.",
        "",
        "| phase | gets | large calls done | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in head_of_line["phases"]:
        lines.append(
            f"| {row['phase']} | {row['calls']:,} | {row['large_calls']:,} "
            f"| {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['max_ms']:.3f} |"
        )
    lines += [
        "",
        "- `quiet`: nothing in the background (the reference);",
        "- `export+list`: one task looping `export_variables`, one `list_variables(big, 'v1*')`;",
        "- `import`: one task importing 100,000 variables into a fresh session, again and again;",
        "- `stats+sweep`: `get_stats` in a loop while the sweep removes 1,000 expired sessions "
        "and one expired session of 100,000 variables.",
        "",
    ]
    return lines


def _remote_section(remote: dict[str, Any]) -> list[str]:
    lines = ["## Over a connection: the store against redis-py + hiredis", ""]
    if "calls" not in remote:
        return [*lines, f"Not measured: {remote.get('error', 'not run')}.", ""]
    meta = remote["meta"]
    return [
        *lines,
        f"`python -m benchmarks.remote --{meta['mode']}` in a fresh process (its own "
        f"`results/remote.md` beside this file): " + describe(meta),
        "",
        *remote_tables(remote, heading="###"),
        *(f"- **Note:** {note}" for note in meta.get("notes", ())),
        *([""] if meta.get("notes") else []),
    ]


def _markdown(
    meta: dict[str, Any],
    cells: dict[str, Any],
    memory: dict[str, Any],
    sweep: dict[str, Any],
    checks: list[Check],
    durability: dict[str, Any],
    head_of_line: dict[str, Any],
    remote: dict[str, Any],
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
        "## Targets",
        "",
        "| target | loop | measured | status | how |",
        "|---|---|---:|:---:|---|",
    ]
    for check in checks:
        loop = check.loop or "n/a"
        lines.append(
            f"| {check.target} | {loop} | {check.formatted()} | **{check.status}** "
            f"| {check.detail} |"
        )
    lines += [
        "",
        f"Over a connection, {curve_summary(remote)} (reported, no line to cross; see *Over a "
        "connection* below).",
        "",
        PYKKA_NOTE,
        "",
    ]

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
        "## Durability: a database, and Redis with an append-only file",
        "",
        "**store-normal** and **store-full** are the store with a database "
        '(`SessionStore(database=..., synchronous="normal" | "full")`, a fresh file each); '
        "**redis-everysec** and **redis-always** are Redis keeping an append-only file "
        "(`appendfsync everysec` / `always`), each its own server. They took their turns in the "
        "same runs as the rest, so the figures compare with the tables above. A store with a "
        "database answers an update only once its transaction is committed (and, with "
        "`full`, fsynced); Redis with `always` fsyncs before it replies.",
        "",
    ]
    for loop in loops:
        lines += _durable_tables(c, loop)
    lines += _durability_facts(durability)
    lines += [
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
        *_head_of_line_table(head_of_line),
        *_remote_section(remote),
        "## Method",
        "",
        "- **store**: `SessionStore()` with its defaults (call timeout 5 s, default telemetry "
        "providers), through the public API.",
        "- **store-normal**, **store-full**: the same store with `database=` a fresh file in a "
        'temporary directory (removed afterwards) and `synchronous="normal"` (a commit '
        'survives a crash of the process) or `"full"` (it survives power loss). They run '
        "the hot session's workloads (get, update, mixed, the batches); update also with "
        f"{WIDE_CALLERS:,} callers for store-full.",
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
        "- **redis-everysec**, **redis-always**: the same client against one more "
        "`redis-server` each, started with `appendonly yes` and `appendfsync everysec` or "
        "`always`; its append-only file is in a temporary directory removed afterwards. With "
        "`always` Redis writes and fsyncs the file once per pass of its event loop, before "
        "that pass's replies go out. They run update, mixed and the batch update; "
        f"redis-always also update with {WIDE_CALLERS:,} callers (redis-py then holds "
        f"{WIDE_CALLERS:,} connections).",
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
        f"- {WIDE_CALLERS:,} callers (update only: store, store-full, redis-always) are "
        f"{WIDE_CALLERS:,} tasks, with runs (and a warm-up) of {meta['config']['wide_duration']} s "
        "so that starting the tasks is a small part of each run.",
        "",
    ]
    return "\n".join(lines)


def _chart(path: Path, meta: dict[str, Any], cells: dict[str, Any], checks: list[Check]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = _Cells(cells)
    loop = meta["loops"][0]
    fig = plt.figure(figsize=(13, 19.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2, 1.9])  # type: ignore[misc]
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
    # Beyond 5x a bar says no more (one check far past its target would squeeze the rest).
    margins = [min(ch.margin or 0.0, 5.0) for ch in shown]
    ax.barh(
        range(len(shown)),
        margins,
        color=["tab:green" if ch.status == "PASS" else "tab:red" for ch in shown],
    )
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(shown)), [ch.target for ch in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("measured / required (right of 1 passes)")
    ax.set_title(f"Targets ({loop}; memory, sweep, open time, head-of-line, remote: any loop)")
    for y, (ch, margin) in enumerate(zip(shown, margins, strict=True)):
        label = ch.formatted("n/a") + (" (bar cut at 5)" if margin == 5.0 else "")
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
    durability: dict[str, Any] | None = None,
    head_of_line: dict[str, Any] | None = None,
    remote: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> bool:
    """Write the three files, print the targets; return whether every checked target passed."""
    out.mkdir(parents=True, exist_ok=True)
    durability = durability or {}
    head_of_line = head_of_line or {}
    remote = remote or {}
    checks = compute_checks(meta["loops"], cells, memory, sweep, durability, head_of_line, remote)
    data = {
        "meta": meta,
        "cells": cells,
        "memory": memory,
        "sweep": sweep,
        "durability": durability,
        "head_of_line": head_of_line,
        "remote": remote,
    }
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "results.md").write_text(
        _markdown(meta, cells, memory, sweep, checks, durability, head_of_line, remote)
    )
    try:
        _chart(out / "results.png", meta, cells, checks)
    except Exception as exc:  # the numbers matter more than the picture
        echo(f"chart not written: {type(exc).__name__}: {exc}")
    echo("")
    echo(f"Targets ({meta['mode']} mode):")
    for check in checks:
        loop = f"[{check.loop}] " if check.loop else ""
        echo(f"  {check.status:4}  {loop}{check.target}: {check.formatted('n/a')} ({check.detail})")
    echo(f"  info  remote, {curve_summary(remote)} (reported, no line)")
    for note in meta["notes"]:
        echo(f"  note: {note}")
    echo(f"Wrote {out / 'results.md'}, {out / 'results.png'}, {out / 'results.json'}")
    return all(ch.status != "FAIL" for ch in checks)
