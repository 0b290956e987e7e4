"""The one place that renders: rich tables for info, export, verify, bench and evaluate results."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from alexbench.bench.compare import Comparison, Verdict, cell_key, key_label
from alexbench.bench.stats import MIN_ITERS_FOR_PERCENTILE
from alexbench.runs import RunSummary
from alexbench.tables import Column, Entry, TableData, Tone

if TYPE_CHECKING:
    from alexbench.evaluate import EvalReport
    from alexbench.verify import VerifyReport

# The verify and evaluate renderers import their torch-side names inside: report, results and
# compare render through this module and start without torch.

TONE_STYLE = {
    Tone.PLAIN: "",
    Tone.GOOD: "green",
    Tone.BAD: "bold red",
    Tone.BEST: "bold green",
    Tone.WARN: "bold yellow",
    Tone.DIM: "dim",
    Tone.VOID: "dim strike",
}


def draw(console: Console, t: TableData, wide: bool = False) -> None:
    """Draw a table in the terminal: the columns that fit the console's width (essential ones
    always, never cut short), or every column with `wide`; then its notes."""
    shown = t.fitting_columns(None if wide else console.width)
    natural = t.column_widths()
    table = Table(title=Text(t.title), title_justify="left")  # text, never markup
    for i in shown:
        col = t.columns[i]
        justify = "right" if col.right else "left"
        table.add_column(col.name, justify=justify, no_wrap=True, min_width=natural[i])
    for row in t.rows:
        table.add_row(*(Text(row[i].text, TONE_STYLE[row[i].tone]) for i in shown))
    needed = 1 + sum(natural[i] + 3 for i in shown)
    width = console.width
    if wide and needed > width:
        console.width = needed  # --wide: the reader asked for every column, even past the edge
    try:
        console.print(table)
    finally:
        console.width = width
    for note in t.notes:
        console.print(f"  {note}", style="dim", markup=False, highlight=False)
    hidden = [c.name for i, c in enumerate(t.columns) if i not in shown]
    if hidden:
        console.print(
            f"  not shown at {width} columns: {', '.join(hidden)} (--wide shows every column)",
            style="dim",
            markup=False,
            highlight=False,
        )


def fmt_ms(v: float) -> str:
    """Milliseconds to 10 us below 1 ms, where CUDA calls at batch 1 lie (two decimals would
    print a 5% difference at 0.1 ms as none), else to hundredths."""
    return f"{v:.3f}" if v < 0.9995 else f"{v:.2f}"  # 0.9996 reads 1.00, not 1.000


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def variables_text(variables: dict[str, str] | None) -> str:
    """The recorded thread, device and allocator variables (`environment.env`): they change the
    timings without changing any code."""
    return " ".join(f"{k}={v}" for k, v in (variables or {}).items()) or "-"


def render_info(console: Console, env: dict[str, Any]) -> None:
    table = Table(title="alexbench environment", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for name, version in env["versions"].items():
        table.add_row(name, str(version or "not installed"))
    cpu = env["cpu"]
    table.add_row("cpu", f"{cpu['model']} ({cpu['logical_cores']} logical cores)")
    table.add_row("cpu flags", ", ".join(cpu["flags"]) or "-")
    table.add_row("torch threads", str(env["torch_threads"]))
    table.add_row("variables", variables_text(env["env"]))
    gpu = env["gpu"]
    if gpu:
        gpu_desc = f"{gpu['name']} ({gpu['memory_gib']} GiB, sm {gpu['capability']})"
        table.add_row("gpu", gpu_desc)
        table.add_row("cuda / cudnn / driver", f"{gpu['cuda']} / {gpu['cudnn']} / {gpu['driver']}")
    else:
        table.add_row("gpu", "none (torch.cuda.is_available() is False)")
    table.add_row("devices", ", ".join(env["devices"]))
    table.add_row("onnxruntime providers", ", ".join(env["onnxruntime_providers"]) or "-")
    table.add_row("git commit", str(env["git_commit"] or "-"))
    console.print(table)


def render_export(console: Console, directory: str, outcomes: Sequence[tuple]) -> None:
    table = Table(title=f"Artifacts in {directory}", title_justify="left")
    for col in ("format", "file", "size", "sha256", "exporter", "status"):
        table.add_column(col)
    for fmt, rec, state in outcomes:
        if state == "exported":
            status = Text(f"exported in {rec.export_seconds:.1f}s", "green")
        else:
            status = Text("reused (sha256 match)", "cyan")
        table.add_row(
            fmt.value, rec.path, fmt_bytes(rec.size_bytes), rec.sha256[:12], rec.exporter, status
        )
    console.print(table)


def render_tolerances(console: Console, precisions: Sequence) -> None:
    from alexbench.precision import PRECISIONS

    parts = []
    for p in precisions:
        t = PRECISIONS[p].tolerance
        part = f"{p.value}: |err| <= {t.atol:g} + {t.rtol:g}*max|ref|, cos >= {t.min_cosine:g}"
        if t.max_top1_mismatch:
            part += f", top-1 flips beyond ties <= {t.max_top1_mismatch:.0%}"
        if t.max_top1_changed is not None:
            part += f", all top-1 flips <= {t.max_top1_changed:.0%} + 1"
        parts.append(part)
    console.print("Tolerances  " + "  |  ".join(parts), style="dim")


def verify_table(report: VerifyReport) -> TableData:
    from alexbench.verify import Status

    t = TableData(
        title=f"Parity vs eager fp32 on cpu — inputs: {report.inputs.description}",
        columns=[
            Column("runtime", right=False),
            Column("device", right=False, priority=2),
            Column("prec", right=False),
            Column("abs err"),
            Column("rel err", priority=3),
            Column("cosine"),
            Column("top-1", priority=1),
            Column("dyn. batch", right=False, priority=4),
            Column("result", right=False),
        ],
        row_class="verify",
    )
    for c in report.cells:
        tone = {Status.PASS: Tone.GOOD, Status.UNSUPPORTED: Tone.DIM}.get(c.status, Tone.BAD)
        status = Entry(c.status.value, tone)
        head = [c.backend.value, c.device.value, c.precision.value]
        row_id = "/".join(head)
        if c.message:
            t.notes.append(f"{c.status.value} {row_id}: {c.message}")
        if c.parity is None:
            t.add([*head, *["-"] * 5, status], row_id)
            continue
        p = c.parity
        agree = f"{p.top1_agreement:.1%}" + (f" ({p.near_ties} ties)" if p.near_ties else "")
        dyn = " ".join(f"{b.batch}" + ("" if b.passed else "!") for b in c.batches)
        t.add(
            [*head, f"{p.max_abs_err:.2e}", f"{p.max_rel_err:.2e}", f"{p.min_cosine:.7f}", agree,
             dyn, status],
            row_id,
        )  # fmt: skip
    if any(not b.passed for c in report.cells for b in c.batches):
        t.notes.append("dyn. batch: ! marks a batch size whose output failed parity")
    return t


def render_verify(
    console: Console, report: VerifyReport, precisions: Sequence, wide: bool = False
) -> None:
    draw(console, verify_table(report), wide)
    render_tolerances(console, precisions)


def render_ceilings(console: Console, c: dict[str, Any]) -> None:
    """One machine's measured ceilings: the best GEMM per dtype (and which library reached it)
    and the read bandwidth for each working-set size."""
    table = Table(
        # the machine key's first part: the CPU or GPU name (the rest is its cache identity)
        title=f"Ceilings: {c['device']} ({c['machine'].split('|')[0]}), {c['threads']} thread(s)",
        title_justify="left",
    )
    for col in ("dtype", "GFLOP/s (int8: GOP/s)", "best source"):
        table.add_column(col, justify="right" if col.startswith("GFLOP") else "left")
    for dtype, value in c["gemm_gflops"].items():
        table.add_row(dtype, f"{value:,.0f}", c["gemm_source"].get(dtype, "-"))
    console.print(table)
    sizes = ", ".join(f"{mib} MiB {gbs:,.1f}" for mib, gbs in c["read_bandwidth_by_mib"].items())
    console.print(f"read bandwidth (GB/s) by working set: {sizes}", markup=False)
    console.print(f"{c['method']}", style="dim", markup=False)


# ---------------------------------------------------------------- Python warnings

# matplotlib warns once per missing glyph, naming its code point: one line says it all.
_GLYPH = re.compile(r"Glyph \d+ .* missing from font")


@contextlib.contextmanager
def warnings_as_lines(console: Console) -> Iterator[None]:
    """Python warnings raised while a command runs (numpy's RuntimeWarning, matplotlib's
    UserWarning "Glyph ... missing") printed as `warning: ...` on `console`, one line each and
    each only once, instead of Python's file name, line number and source line. Also a
    decorator. Nothing is hidden: errors are exceptions, not warnings, and pass through."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *_args: Any, **_kw: Any) -> None:
        text = " ".join(str(message).split()) or category.__name__
        if _GLYPH.search(text):
            text = "a character of a plot's labels is not in the font: drawn as a box"
        if text not in seen:
            seen.add(text)
            console.print(f"warning: {text}", style="yellow", markup=False, highlight=False)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


# ---------------------------------------------------------------- bench results (from dicts)
# Rendering works on the results file's dicts, so `alexbench report` re-renders any saved run.

CellDict = dict[str, Any]


def speedup_base(cells: Sequence[CellDict]) -> dict[tuple[str, int], float]:
    """Eager fp32 throughput per (device, batch): the row every speed-up is relative to."""
    return {
        (c["device"], c["batch"]): c["stats"]["throughput"]
        for c in cells
        if c["backend"] == "eager" and c["precision"] == "fp32" and c["status"] == "ok"
    }


def fastest_cells(cells: Sequence[CellDict]) -> dict[tuple[str, int], CellDict]:
    """The fastest cell that passed parity per (device, batch)."""
    best: dict[tuple[str, int], CellDict] = {}
    for c in cells:
        if c["status"] == "ok" and c.get("stats"):
            key = (c["device"], c["batch"])
            if key not in best or c["stats"]["throughput"] > best[key]["stats"]["throughput"]:
                best[key] = c
    return best


STATUS_WORD = {"ok": "PASS", "parity_failed": "FAIL", "error": "ERROR", "skipped": "SKIPPED"}
STATUS_TONE = {"ok": Tone.GOOD, "parity_failed": Tone.BAD, "error": Tone.BAD, "skipped": Tone.DIM}


def cell_id(c: CellDict, run: str | None = None) -> str:
    parts = [c["device"], c["backend"], c["precision"], str(c["batch"])]
    return "/".join([run, *parts] if run else parts)


def bench_tables(
    cells: Sequence[CellDict], title: str = "", run: str | None = None, skipped_rows: bool = False
) -> list[TableData]:
    """One table per device. Skipped cells become rows with `skipped_rows` (the HTML page holds
    every cell), else one note per reason (the terminal)."""
    base, best = speedup_base(cells), fastest_cells(cells)
    tables = []
    for device in dict.fromkeys(c["device"] for c in cells):
        # wall img/s: the throughput loop's wall clock (on CPU the latency loop itself: the
        # rate with every slow call counted, where images/s is the typical call's); device
        # time on CUDA only.
        pipelined = device == "cuda"
        columns = [
            Column("backend", right=False),
            Column("prec", right=False),
            Column("batch"),
            Column("p50 ms"),
            Column("95% CI ms", priority=4),
            Column("p90 ms", priority=6),
            Column("p99 ms", priority=5),
            Column("images/s"),
            Column("wall img/s", priority=2),
            *([Column("device ms", priority=3)] * pipelined),
            Column("vs eager", priority=1),
            Column("% ceiling", priority=7),
            Column("mem res/peak", priority=8),
            Column("cold start", priority=9),
            Column("status", right=False),
        ]
        t = TableData(f"{title} — {device}".strip(" —"), columns, row_class="cell")
        rows = [
            c for c in cells if c["device"] == device and (skipped_rows or c["status"] != "skipped")
        ]
        rows.sort(key=lambda c: (c["batch"], c["backend"], c["precision"]))
        for c in rows:
            t.add(_bench_row(c, base, best, pipelined), cell_id(c, run))
            if c["status"] in ("error", "skipped") and skipped_rows:
                t.notes.append(f"{STATUS_WORD[c['status']]} {cell_id(c)}: {c['reason']}")
        if not skipped_rows:
            reasons: dict[str, list[str]] = {}
            for c in cells:
                if c["device"] == device and c["status"] == "skipped":
                    reasons.setdefault(c["reason"], []).append(f"{c['backend']}/{c['precision']}")
            for reason, names in reasons.items():
                t.notes.append(f"skipped {', '.join(dict.fromkeys(names))}: {reason}")
            t.notes += [
                f"ERROR {cell_id(c)}: {c['reason']}" for c in rows if c["status"] == "error"
            ]
        tables.append(t)
    return tables


BENCH_LEGEND = (
    "images/s = batch / median latency (wall img/s: every call counted); vs eager = images/s "
    "over eager fp32's at the same device and batch (- where the run has none); the median and "
    "its 95% CI: {centre}; ~ marks a median whose CI is wider than 5% of it (or missing); "
    "FAIL rows failed parity and their speed must not be quoted; p90/p99 need 10/100 "
    "samples; ! marks a roofline share above 100% (a measurement problem); mem = the cell's "
    "resident / peak memory above its pre-load baseline; cold start = session creation + "
    "first call (first batch size), +first call at each later batch size."
)


def render_bench(
    console: Console, cells: Sequence[CellDict], title: str = "", wide: bool = False
) -> None:
    for table in bench_tables(cells, title):
        draw(console, table, wide)
    console.print("  " + bench_legend(cells), style="dim")
    if load := load_table(cells, title):
        draw(console, load, wide)
        console.print("  " + LOAD_LEGEND, style="dim")


# Past these, a level's figures describe something else than the cell at the load asked.
SATURATED_BUSY = 0.95  # the server never idles: the queue grows through the level
SLOWER_SERVICE = 1.5  # calls this much slower under load than unloaded (another process?)
OFF_RATE = 0.15  # arrivals this far off the rate asked (a short level's random gaps)


def _load_warnings(level: dict[str, Any], unloaded_p50: float | None) -> list[str]:
    """Why a level's figures do not describe the cell at the load asked, one phrase each."""
    out = []
    busy = level.get("busy_share")
    if (busy is not None and busy >= SATURATED_BUSY) or level.get(
        "queue_mean_expected_ms", 0
    ) is None:
        shown = f" (busy {busy:.0%})" if busy is not None else ""
        out.append(
            f"saturated{shown}: the queue grew through the level, so its latencies grow with "
            "--min-time, not only with the runtime"
        )
    service = level.get("service_p50_ms")
    if service and unloaded_p50 and service > SLOWER_SERVICE * unloaded_p50:
        out.append(
            f"its calls took {service / unloaded_p50:.1f}x their unloaded p50 under load (another "
            "process on the machine?): the load applied was not the load asked"
        )
    nominal, offered = level.get("nominal_per_s"), level.get("offered_per_s")
    if nominal and offered and abs(offered / nominal - 1) > OFF_RATE:
        out.append(
            f"requests arrived at {offered / nominal:.2f}x the rate asked (few random gaps; a "
            "longer --min-time or another --seed averages them out)"
        )
    return out


def _service_text(level: dict[str, Any]) -> str:
    service = level.get("service_p50_ms")
    return "-" if service is None else fmt_ms(service)


def _wait_text(level: dict[str, Any]) -> str:
    """'2.31 (2.05)': the measured mean wait, and the Pollaczek-Khinchine prediction from the
    level's service times (files before it: the measured one alone)."""
    mean, expected = level.get("queue_mean_ms"), level.get("queue_mean_expected_ms")
    if mean is None:
        return "-"
    return fmt_ms(mean) + ("" if expected is None else f" ({fmt_ms(expected)})")


LOAD_LEGEND = (
    "Under load (bench --load): requests arrive open-loop (Poisson) at the load x the rate the "
    "cell serves one at a time (1 / its mean latency), served in arrival order; latency runs "
    "from a request's arrival to its result, its wait in the queue included; busy = the share "
    "of the time spent serving (the load really applied); mean wait (P-K) = the mean wait in the "
    "queue, and in brackets what Poisson arrivals give for the measured service times "
    "(Pollaczek-Khinchine; none where the server was busy all the time); offered = as the "
    "requests arrived; p90/p99 need 10/100 requests (raise --min-time for more)."
)


def load_table(
    cells: Sequence[CellDict], title: str = "", run: str | None = None
) -> TableData | None:
    """Latency under load of every cell timed at a load (`bench --load`), or None."""
    # ok cells only: bench keeps none for a failed cell, and a file edited to hold some for one
    # must not quote the speed of a wrong answer either
    rows = [c for c in cells if c.get("load") and c["status"] == "ok"]
    if not rows:
        return None
    columns = [
        Column("device", right=False),
        Column("backend", right=False),
        Column("prec", right=False),
        Column("batch"),
        Column("load"),
        Column("offered req/s", priority=2),
        Column("served req/s", priority=3),
        Column("busy", priority=4),
        Column("p50 ms"),
        Column("p90 ms", priority=5),
        Column("p99 ms"),
        Column("queue p99 ms", priority=1),
        Column("mean wait ms (P-K)", priority=7),
        Column("vs unloaded p50", priority=6),
        Column("service p50 ms", priority=8),
    ]
    t = TableData(f"{title} — under load".strip(" —"), columns, row_class="load")
    rows.sort(key=lambda c: (c["device"], c["batch"], c["backend"], c["precision"]))
    for c in rows:
        unloaded = (c.get("stats") or {}).get("p50_ms")
        for level in c["load"]:
            n = level["requests"]

            def pct(q: int, level: dict[str, Any] = level, n: int = n) -> Entry:
                if n < MIN_ITERS_FOR_PERCENTILE[q]:
                    return Entry("-", Tone.DIM)
                return Entry(fmt_ms(level[f"p{q}_ms"]))

            busy, served = level.get("busy_share"), level.get("served_per_s")
            warnings = _load_warnings(level, unloaded)
            t.notes += [f"{cell_id(c)} at load {level['load']:g}: {w}" for w in warnings]
            flag = Tone.WARN if warnings else Tone.PLAIN  # the busy share: the load applied
            t.add(
                [
                    c["device"], c["backend"], c["precision"], str(c["batch"]),
                    f"{level['load']:g}",
                    f"{level['offered_per_s']:,.1f}",
                    "-" if served is None else f"{served:,.1f}",
                    Entry("-" if busy is None else f"{busy:.0%}", flag),
                    fmt_ms(level["p50_ms"]),
                    pct(90),
                    pct(99),
                    pct(99) if n < MIN_ITERS_FOR_PERCENTILE[99] else fmt_ms(level["queue_p99_ms"]),
                    _wait_text(level),
                    f"{level['p50_ms'] / unloaded:.2f}x" if unloaded else "-",
                    _service_text(level),
                ],
                cell_id(c, run),
            )  # fmt: skip
            late = level.get("harness_late_p99_ms")
            if late is not None and late > 0.1 * level.get("service_p50_ms", float("inf")):
                t.notes.append(
                    f"{cell_id(c)} at load {level['load']:g}: the harness started 1% of its "
                    f"requests {fmt_ms(late)} ms or more late (a sleep's overshoot on a busy "
                    "machine), counted as queue wait"
                )
    return t


def bench_legend(cells: Sequence[CellDict]) -> str:
    """BENCH_LEGEND, saying how these cells' medians and CIs were computed (older files' pooled
    statistics are recentred on their repeats when read: `results.load_results`)."""
    timed = [c for c in cells if c.get("stats")]
    single = [c for c in timed if (c["stats"].get("repeats") or 1) < 2]
    samples = "over the samples, from order statistics (- below 6 samples)"
    if len(single) == len(timed):
        return BENCH_LEGEND.format(centre=samples)
    centre = "over the repeats' medians (geometric mean, t interval)"
    if single:  # a run stopped during a later repeat: say which rows are single-repeat
        names = [key_label(cell_key(c)) for c in single]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        centre += f"; {samples} for the cells timed in one repeat only ({shown})"
    return BENCH_LEGEND.format(centre=centre)


def _percentile(s: dict[str, Any], q: int, tone: Tone) -> Entry:
    if s["iterations"] < MIN_ITERS_FOR_PERCENTILE[q]:
        return Entry("-", Tone.DIM)
    return Entry(fmt_ms(s[f"p{q}_ms"]), tone)


def _roofline_text(roof: dict[str, Any] | None) -> Entry:
    if not roof:
        return Entry("-")
    text = f"{roof['pct_of_ceiling']:.0f}% {roof['bound'][:3]}"
    if roof.get("exceeds_ceiling", roof["pct_of_ceiling"] > 100):
        # Above a measured bound: the ceiling or the timing is wrong, not the runtime heroic.
        return Entry("!" + text, Tone.WARN)
    return Entry(text)


def _memory_text(mem: dict[str, Any]) -> str:
    if "resident_bytes" not in mem:  # a results file from before per-cell baselines
        peak = mem.get("cuda_max_allocated_bytes") or mem.get("rss_peak_bytes")
        return f"({fmt_bytes(peak)})" if peak else "-"
    res, peak = mem.get("resident_bytes"), mem.get("peak_bytes")
    mib = [("-" if v is None else f"{v / 2**20:.0f}") for v in (res, peak)]
    return f"{mib[0]}/{mib[1]} MiB"


def _cold_text(cold: dict[str, Any]) -> str:
    first = cold.get("first_inference_ms")
    if first is None:
        return "-"
    if cold.get("session_create_s") is None:  # a later batch size: first call at this shape
        return f"+{first:.0f}ms"
    return f"{cold['session_create_s']:.2f}s+{first:.0f}ms"


def _pipelined_cells(c: CellDict, tone: Tone = Tone.PLAIN) -> list[Entry | str]:
    """wall img/s (throughput loop) and median device time (CUDA events; CUDA tables), in
    the row's tone (struck through on a FAIL row, like its other speeds)."""
    s, dev = c.get("stats"), c.get("device_time")
    if c["status"] == "error" or not s:
        return ["-", "-"]
    wall = "-" if s.get("wall_throughput") is None else f"{s['wall_throughput']:,.1f}"
    return [Entry(wall, tone), Entry("-" if not dev else f"{dev['p50_ms']:.3f}", tone)]


def _bench_row(c: CellDict, base: dict, best: dict, pipelined: bool) -> list[Entry | str]:
    head: list[Entry | str] = [c["backend"], c["precision"], str(c["batch"])]
    status = Entry(STATUS_WORD[c["status"]], STATUS_TONE[c["status"]])
    s = c.get("stats")
    if c["status"] in ("error", "skipped") or not s:
        return [*head, *["-"] * (11 if pipelined else 10), status]
    ok = c["status"] == "ok"
    tone = Tone.PLAIN if ok else Tone.VOID
    p50 = ("~" if s["unstable"] else "") + fmt_ms(s["p50_ms"])
    low, high = s["p50_ci_low_ms"], s["p50_ci_high_ms"]
    ci = "-" if low is None or high is None else f"[{fmt_ms(low)}, {fmt_ms(high)}]"
    key = (c["device"], c["batch"])
    fastest = ok and best.get(key) is c
    tput = Entry(f"{s['throughput']:,.1f}", Tone.BEST if fastest else tone)
    ref = base.get(key)
    speed = f"{s['throughput'] / ref:.2f}x" if ref and ok else "-"
    pct = _roofline_text(c.get("roofline")) if ok else Entry("-")
    return [
        *head,
        Entry(p50, tone),
        Entry(ci, tone),
        _percentile(s, 90, tone),
        _percentile(s, 99, tone),
        tput,
        *_pipelined_cells(c, tone)[: 2 if pipelined else 1],
        speed,
        pct,
        _memory_text(c.get("memory") or {}),
        _cold_text(c.get("cold_start") or {}),
        status,
    ]


VERDICT_TONE = {
    Verdict.FASTER: Tone.GOOD,
    Verdict.SLOWER: Tone.BAD,
    Verdict.SLIGHTLY_FASTER: Tone.DIM,
    Verdict.SLIGHTLY_SLOWER: Tone.DIM,
    Verdict.INCONCLUSIVE: Tone.WARN,
    Verdict.WITHIN_NOISE: Tone.DIM,
    Verdict.NO_INTERVAL: Tone.WARN,
}
_JUDGED = (Verdict.FASTER, Verdict.SLOWER, Verdict.SLIGHTLY_FASTER, Verdict.SLIGHTLY_SLOWER)


def _bound(v: float) -> str:
    """An interval bound: 3 decimals, more when those round a bound that excludes 1 onto 1
    ([1.000, 1.236] beside "faster" reads as touching 1)."""
    for digits in range(3, 7):
        text = f"{v:.{digits}f}"
        if float(text) != 1.0 or v == 1.0:
            return text
    return text


def compare_table(comparison: Comparison, names: tuple[str, str]) -> TableData:
    """Verdict words stay plain text ("faster", "slower", "within noise"; "(weak)" for
    single-run evidence) so they survive piping."""
    t = TableData(
        f"compare: B={names[1]} vs A={names[0]}",
        [
            Column("backend", right=False),
            Column("device", right=False, priority=3),
            Column("prec", right=False),
            Column("batch"),
            Column("repeats A/B", priority=4),
            Column("A p50 ms", priority=2),
            Column("B p50 ms", priority=2),
            Column("B/A images/s"),
            Column("95% interval", priority=1),
            Column("verdict", right=False),
        ],
        row_class="compare",
    )
    for c in comparison.cells:
        weak = c.weak and c.verdict in _JUDGED
        word = c.verdict.value + (" (weak)" if weak else "")
        interval = "-" if c.ci_low is None else f"[{_bound(c.ci_low)}, {_bound(c.ci_high)}]"
        t.add(
            [*c.key[:3], str(c.key[3]), f"{c.a_repeats}/{c.b_repeats}", fmt_ms(c.a_p50_ms),
             fmt_ms(c.b_p50_ms), f"{_bound(c.ratio)}x", interval,
             Entry(word, VERDICT_TONE[c.verdict])],
            key_label(c.key),
        )  # fmt: skip
    return t


def render_compare(
    console: Console, comparison: Comparison, names: tuple[str, str], wide: bool = False
) -> None:
    """Render an `alexbench.bench.compare.Comparison`: the B/A table, what is missing (its
    warnings are the caller's to print, on stderr)."""
    if comparison.cells:
        draw(console, compare_table(comparison, names), wide)
    else:
        console.print("no cells in common (both ok) between the two runs", style="yellow")
    _render_compare_leftovers(console, comparison, key_label)
    if comparison.cells:
        _render_compare_legend(console, comparison)


def _render_compare_leftovers(console: Console, comparison: Comparison, label: Any) -> None:
    for side, keys in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if keys:
            console.print(
                Text(f"only in {side} ({len(keys)}): " + ", ".join(label(k) for k in keys))
            )
    for nc in comparison.not_comparable:
        console.print(Text(f"not comparable: {label(nc.key)}: {nc.why}"))


def _render_compare_legend(console: Console, comparison: Comparison) -> None:
    pct = f"{comparison.threshold * 100:g}%"
    text = (
        f"  B/A images/s > 1: B is faster. faster/slower = the {comparison.confidence:.0%} "
        f"interval excludes 1 and the ratio is beyond 1+{pct} or 1/(1+{pct}) (--threshold)."
    )
    verdicts = {c.verdict for c in comparison.cells}
    if verdicts & {Verdict.SLIGHTLY_FASTER, Verdict.SLIGHTLY_SLOWER}:
        text += f" slightly: the interval excludes 1 but the ratio is within {pct}."
    if Verdict.INCONCLUSIVE in verdicts:
        text += (
            f" inconclusive: the ratio is beyond {pct} but the interval includes 1, so the runs"
            " cannot tell; rerun both with more --repeat (--fail-on-regression counts a slower"
            f" one whose interval stays below 1+{pct})."
        )
    if Verdict.WITHIN_NOISE in verdicts:
        text += f" within noise: the interval includes 1 and the ratio is within {pct}."
    if any(not c.weak for c in comparison.cells):
        text += (
            " Repeated runs: A/B p50 are geometric means of the per-repeat medians, the interval"
            " a Welch t-interval over them."
        )
    if any(c.weak and c.verdict in _JUDGED for c in comparison.cells):
        text += (
            " A side with 1 repeat: block bootstrap over raw latencies, which misses run-to-run"
            " noise, so verdicts are weak; rerun with bench --repeat 3."
        )
    if any(c.verdict is Verdict.NO_INTERVAL for c in comparison.cells):
        text += (
            " no interval: a side with 1 repeat and no raw latencies in its file; the ratio"
            " alone is shown, and --fail-on-regression counts it when beyond the threshold."
        )
    console.print(text, style="dim")


MAX_CONFUSION_CLASSES = 20  # a wider matrix does not fit a terminal; use --plot


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def accuracy_table(doc: dict[str, Any], name: str | None = None) -> TableData:
    """Accuracy per backend x precision from an evaluate document (`EvalReport.to_dict()`, as
    `evaluate --out` saves it), with each cell's top-1 drop against the eager fp32 reference.
    `name`: the saved file's, when several are shown together (report --out)."""
    where = f"{doc.get('split')} ({doc.get('samples')} images, {doc.get('device')})"
    t = TableData(
        f"Accuracy of {name} on {where}" if name else f"Accuracy on {where}",
        [
            Column("backend", right=False),
            Column("prec", right=False),
            Column("top-1"),
            Column("top-5", priority=1),
            Column("top-1 drop vs fp32", priority=2),
            Column("agrees with eager fp32", priority=3),
            Column("time", priority=4),
            Column("status", right=False),
        ],
        row_class="accuracy",
    )
    ref = doc.get("reference") or {}
    key = (ref.get("backend"), ref.get("precision"))
    ref_top1 = next(
        (c.get("top1") for c in doc["cells"] if (c["backend"], c["precision"]) == key), None
    )
    tones = {"ok": Tone.GOOD, "unsupported": Tone.DIM}
    for c in doc["cells"]:
        label = f"{c['backend']}/{c['precision']}"
        top1 = c.get("top1")
        drop = "-" if ref_top1 is None or top1 is None else f"{100 * (ref_top1 - top1):+.2f} pt"
        ok = c["status"] == "ok"
        t.add(
            [c["backend"] + ("" if c.get("requested", True) else " (reference)"), c["precision"],
             _pct(top1), _pct(c.get("top5")), drop, _pct(c.get("agreement")),
             f"{c.get('seconds', 0):.2f} s" if ok else "-",
             Entry(c["status"], tones.get(c["status"], Tone.BAD))],
            f"{name}/{label}" if name else label,
        )  # fmt: skip
        if c.get("reason"):
            t.notes.append(f"{c['status']} {label}: {c['reason']}")
    return t


def render_evaluation(out: Console, report: EvalReport, wide: bool = False) -> None:
    draw(out, accuracy_table(report.to_dict()), wide)
    names = report.class_names
    per_class = Table(title="Per-class accuracy (eager fp32)", title_justify="left")
    per_class.add_column("class")
    per_class.add_column("images", justify="right")
    per_class.add_column("top-1", justify="right")
    for i, name in enumerate(names):
        per_class.add_row(
            name, str(int(report.confusion[i].sum())), _pct(report.per_class_accuracy[i])
        )
    out.print(per_class)
    counts = [int(n) for n in report.confusion.sum(axis=1) if n]
    if report.balanced_top1 is not None and counts and max(counts) > 2 * min(counts):
        out.print(
            f"Classes are imbalanced ({min(counts)}-{max(counts)} images): top-1 above weights "
            f"the large ones; balanced top-1 (each class once) {_pct(report.balanced_top1)}",
            markup=False, highlight=False,
        )  # fmt: skip
    if len(names) > MAX_CONFUSION_CLASSES:
        out.print(f"(confusion matrix of {len(names)} classes: see --plot or --json)")
        return
    cm = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    cm.add_column("true \\ pred")
    for i in range(len(names)):
        cm.add_column(str(i), justify="right")
    for i, name in enumerate(names):
        row = [
            f"[bold]{v}[/]" if j == i else (str(v) if v else "[dim]0[/]")
            for j, v in enumerate(report.confusion[i])
        ]
        cm.add_row(f"{i} {name}", *row)
    out.print(cm)


def runs_table(runs: Sequence[RunSummary]) -> TableData:
    """The stored runs, oldest first: one row per results file (the name holds the date)."""
    t = TableData(
        f"Stored benchmark runs ({len(runs)})",
        [
            Column("file", right=False),
            Column("device", right=False),
            Column("cells ok"),
            Column("status", right=False),
            Column("date (UTC)", right=False, priority=1),
            Column("model", right=False, priority=2),
            Column("cpu / gpu", right=False, priority=3),
            Column("host", right=False, priority=4),
            Column("torch", right=False, priority=5),
            Column("onnxruntime", right=False, priority=6),
        ],
        notes=["cells ok: passed parity / all (skipped too); xN: bench --repeat N."],
        row_class="run",
    )
    for r in runs:
        machine = r.cpu or "-"
        if r.gpu:
            machine = f"{machine} / {r.gpu}"
        repeats = f" x{r.repeat}" if r.repeat > 1 else ""
        state = (
            Entry("complete" + repeats) if r.complete else Entry("incomplete" + repeats, Tone.WARN)
        )
        t.add(
            [r.file, "+".join(r.devices) or "-", f"{r.cells_ok}/{r.cells_total}", state,
             r.created.strftime("%Y-%m-%d %H:%M") if r.created else "-", r.model, machine,
             r.host or "-", r.torch or "-", r.onnxruntime or "-"],
            r.file,
        )  # fmt: skip
    return t


def render_runs(console: Console, runs: Sequence[RunSummary], wide: bool = False) -> None:
    draw(console, runs_table(runs), wide)
