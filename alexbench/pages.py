"""The shareable report: one self-contained HTML page and the same content as Markdown.

`build_page` turns saved runs (and `evaluate` reports) into a `Page` of sections holding tables
(`alexbench.tables.TableData`, the same ones the terminal draws) and plots; `to_html` and
`to_markdown` only lay that page out. The HTML embeds every plot as a data: URI and uses no
script, font or style sheet from elsewhere, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import fcntl
import html
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexbench import plots
from alexbench.bench.compare import (
    compare_runs,
    hardware_fields,
    incomplete_description,
    is_complete,
    key_label,
    machine_differences,
    records_cpu_model,
    refusal,
)
from alexbench.errors import InputError
from alexbench.fileio import missing_folders, read_json, remove_empty_folders, write_text
from alexbench.report import (
    LOAD_LEGEND,
    accuracy_table,
    bench_legend,
    bench_tables,
    cell_id,
    compare_table,
    fastest_cells,
    fmt_ms,
    load_table,
    speedup_base,
    variables_text,
)
from alexbench.results import (
    Run,
    collect_runs,
    created_text,
    json_files,
    machine_label,
    model_label,
)
from alexbench.results_shape import EVALUATE_SCHEMA, evaluation_problem
from alexbench.tables import Column, Entry, TableData, Tone


@dataclass(frozen=True)
class Evaluation:
    """One saved `alexbench evaluate --out` report."""

    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Figure:
    file: str  # a PNG beside the Markdown file
    caption: str


@dataclass
class Section:
    title: str
    level: int = 2
    text: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)  # commands, shown verbatim
    tables: list[TableData] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Page:
    title: str
    subtitle: str
    sections: list[Section]


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    images: list[Path]
    runs: int
    evaluations: int


# ---------------------------------------------------------------- inputs


def _evaluation(path: Path) -> Evaluation | None:
    """The evaluate report saved at `path`, or None when it is something else."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("schema") == EVALUATE_SCHEMA:
        problem = evaluation_problem(data)
        if problem:  # the report could not show it
            raise InputError(f"{path}: not a valid evaluate report ({problem})")
        return Evaluation(path.stem, data)
    return None


def load_inputs(paths: list[Path]) -> tuple[list[Run], list[Evaluation], list[str]]:
    """Benchmark runs and evaluate reports among `paths` (files, or folders searched
    recursively); other JSON files in folders are skipped and listed. A file named explicitly
    must be one or the other."""
    evaluations: list[Evaluation] = []
    taken: set[Path] = set()
    broken: list[str] = []  # evaluate reports found in folders that the report cannot show
    for path in paths:
        for f in json_files(path):
            try:
                evaluation = _evaluation(f)
            except InputError as e:
                if not path.is_dir():
                    raise
                broken.append(str(e))
                taken.add(f.resolve())
                continue
            if evaluation is not None:
                evaluations.append(evaluation)
                taken.add(f.resolve())
    runs, skipped = collect_runs(paths, frozenset(taken), allow_empty=bool(evaluations))
    return runs, evaluations, broken + skipped


# ---------------------------------------------------------------- content


def command_line(data: dict[str, Any]) -> str:
    """The `alexbench bench` command that reproduces a run, rebuilt from its saved settings
    (or the command as typed, where the run recorded it)."""
    settings = data.get("settings") or {}
    if settings.get("command"):
        return str(settings["command"])
    source = (data.get("model") or {}).get("source") or {}
    parts = ["alexbench bench"]
    meta = (data.get("model") or {}).get("meta") or {}
    if source.get("kind") in ("checkpoint", "weights") and source.get("path"):
        parts.append(f"--{source['kind']} {source['path']}")
    else:
        if source.get("seed") not in (None, 0):
            parts.append(f"--seed {source['seed']}")
        if meta.get("num_classes") not in (None, 1000):
            parts.append(f"--num-classes {meta['num_classes']}")
        if meta.get("image_size") not in (None, 224):
            parts.append(f"--image-size {meta['image_size']}")
    for flag, key in (("--backend", "backends"), ("--device", "devices"),
                      ("--precision", "precisions"), ("--batch", "batches")):  # fmt: skip
        if settings.get(key):
            parts.append(f"{flag} {','.join(str(v) for v in settings[key])}")
    if int(settings.get("repeat") or 1) > 1:
        parts.append(f"--repeat {settings['repeat']}")
    length = settings.get("run_length") or {}
    defaults = {"warmup": 3, "min_seconds": 1.0, "min_iters": 10, "max_iters": 10_000}
    flags = {"warmup": "--warmup", "min_seconds": "--min-time", "min_iters": "--min-iters",
             "max_iters": "--max-iters"}  # fmt: skip
    for key, flag in flags.items():
        if key in length and length[key] != defaults[key]:
            parts.append(f"{flag} {length[key]:g}")
    options = settings.get("options") or {}
    if options.get("threads"):
        parts.append(f"--threads {options['threads']}")
    for key, flag in (
        ("cuda_graphs", "--cuda-graphs"),
        ("include_transfers", "--include-transfers"),
    ):
        if options.get(key):
            parts.append(flag)
    if options.get("compile_mode") not in (None, "default"):
        parts.append(f"--compile-mode {options['compile_mode']}")
    if options.get("cudnn_benchmark") is False:
        parts.append("--no-cudnn-benchmark")
    return " ".join(parts)


def _key_values(title: str, pairs: list[tuple[str, str]], row_class: str) -> TableData:
    t = TableData(title, [Column("", right=False), Column("", right=False)], row_class=row_class)
    for key, value in pairs:
        t.add([key, value])
    return t


def environment_table(run: Run) -> TableData:
    d = run.data
    env, settings = d.get("environment") or {}, d.get("settings") or {}
    cpu, gpu = env.get("cpu") or {}, env.get("gpu") or {}
    versions = env.get("versions") or {}
    pairs = [
        ("created", created_text(d)),
        ("complete", "yes" if is_complete(d) else f"no {incomplete_description(d)}"),
        ("host", f"{env.get('host') or '-'} ({env.get('platform') or '-'})"),
        ("cpu", f"{machine_label(d, 'cpu')}; flags {', '.join(cpu.get('flags') or []) or '-'}"),
        (
            "gpu",
            f"{gpu['name']} ({gpu.get('memory_gib')} GiB), CUDA {gpu.get('cuda')}, "
            f"driver {gpu.get('driver')}"
            if gpu
            else "none",
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
        (
            "torch threads",
            f"{env.get('torch_threads', '-')} (interop {env.get('torch_interop_threads', '-')})",
        ),
        ("onnxruntime providers", ", ".join(env.get("onnxruntime_providers") or []) or "-"),
        ("variables", variables_text(env.get("env"))),
        (
            "load average (1 min)",
            f"{env.get('load_average_1m', '-')} before, "
            f"{env.get('load_average_1m_after', '-')} after",
        ),
        (
            "other processes' CPU",
            f"{_cores_text(env.get('others_cpu_cores'))} at start, "
            f"{_cores_text(env.get('others_cpu_cores_during'), 2)} on average during",
        ),
        ("git commit", str(env.get("git_commit") or "-")),
        ("model", model_label(d)),
        ("timing", str(settings.get("timing", "-"))),
        (
            "run length",
            ", ".join(f"{k} {v}" for k, v in (settings.get("run_length") or {}).items())
            + f", repeat {settings.get('repeat', 1)}",
        ),
    ]
    return _key_values(f"Environment of {run.name}", pairs, "env")


def parity_table(run: Run) -> TableData:
    t = TableData(
        f"Parity of {run.name} (each cell's outputs vs eager fp32 on the same inputs)",
        [
            Column("device", right=False),
            Column("backend", right=False),
            Column("prec", right=False),
            Column("batch"),
            Column("max abs err"),
            Column("max rel err"),
            Column("min cosine"),
            Column("top-1 agree"),
            Column("threshold"),
            Column("result", right=False),
        ],
        row_class="parity",
    )
    for c in run.data["cells"]:
        p = c.get("parity")
        head = [c["device"], c["backend"], c["precision"], str(c["batch"])]
        if not p:
            t.add([*head, *["-"] * 5, Entry("not checked", Tone.DIM)], cell_id(c, run.name))
            continue
        verdict = Entry("PASS", Tone.GOOD) if p["passed"] else Entry("FAIL", Tone.BAD)
        t.add(
            [*head, _sci(p["max_abs_err"]), _sci(p["max_rel_err"]),
             f"{p['min_cosine']:.7f}", f"{p['top1_agreement']:.1%}", _sci(p["threshold"]),
             verdict],
            cell_id(c, run.name),
        )  # fmt: skip
    return t


def _sci(value: float | None) -> str:
    """An error in results files: null there is a non-finite one (a shape mismatch, NaN output)."""
    return "inf" if value is None else f"{value:.2e}"


def runs_table(runs: list[Run]) -> TableData:
    t = TableData(
        "Runs in this report",
        [
            Column("run", right=False),
            Column("date (UTC)", right=False),
            Column("devices", right=False),
            Column("machine", right=False),
            Column("model", right=False),
            Column("cells"),
            Column("complete", right=False),
        ],
        row_class="run",
    )
    for r in runs:
        cells = r.data["cells"]
        devices = list(dict.fromkeys(c["device"] for c in cells))
        ok = sum(c["status"] == "ok" for c in cells)
        done = is_complete(r.data)
        t.add(
            [r.name, created_text(r.data).removesuffix(" UTC"), ",".join(devices),
             run_machine_label(r.data), model_label(r.data),
             f"{ok} passed of {len(cells)}",
             Entry("yes", Tone.GOOD) if done else Entry("no", Tone.WARN)],
            r.name,
        )  # fmt: skip
    return t


def _cores_text(cores: Any, digits: int = 1) -> str:
    return f"{cores:.{digits}f} cores" if isinstance(cores, int | float) else "-"


def run_machine_label(data: dict[str, Any]) -> str:
    """The hardware of every device a run's cells ran on."""
    devices = dict.fromkeys(c["device"] for c in data["cells"])
    return "; ".join(machine_label(data, d) for d in devices)


def fastest_table(runs: list[Run]) -> TableData:
    """The headline: per run, device and batch, the fastest cell that passed parity."""
    t = TableData(
        "Fastest cell that passed parity, per device and batch",
        [
            Column("run", right=False),
            Column("machine", right=False),  # the runs may come from several machines
            Column("device", right=False),
            Column("batch"),
            Column("backend", right=False),
            Column("prec", right=False),
            Column("images/s"),
            Column("p50 ms"),
            Column("vs eager fp32"),
        ],
        row_class="best",
    )
    for r in runs:
        base, best = speedup_base(r.data["cells"]), fastest_cells(r.data["cells"])
        for (device, batch), c in sorted(best.items()):
            tput = c["stats"]["throughput"]
            ref = base.get((device, batch))
            t.add(
                [r.name, machine_label(r.data, device), device, str(batch), c["backend"],
                 c["precision"],
                 Entry(f"{tput:,.1f}", Tone.BEST),
                 ("~" if c["stats"]["unstable"] else "") + fmt_ms(c["stats"]["p50_ms"]),
                 f"{tput / ref:.2f}x" if ref else "-"],
                None,
            )  # fmt: skip
    return t


DEFINITIONS = [
    ("p50 ms", "median latency of one call, host clock from submitting a batch to its result "
     "being ready, the device synchronised every call; with --repeat, the geometric mean of "
     "the repeats' medians"),
    ("95% CI", "confidence interval of the median: from order statistics over the samples (none "
     "below 6), or with --repeat a t interval over the repeats' medians; ~ marks a median whose "
     "CI is wider than 5% of it or missing"),
    ("p90 / p99 ms", "90th / 99th percentile latency; shown only with at least 10 / 100 samples"),
    ("images/s", "batch / median latency"),
    ("wall img/s", "images over the wall clock of the throughput loop, every call counted (on "
     "CUDA back-to-back calls with no sync per call)"),
    ("device ms", "CUDA: median time between CUDA events around each call on its stream"),
    ("vs eager", "throughput over eager fp32 at the same device and batch (- where the run has "
     "no eager fp32 cell there)"),
    ("% ceiling", "achieved share of the measured roofline bound (compute: best GEMM of the "
     "precision; memory: read bandwidth for the weights); ! above 100% means the measurement or "
     "the ceiling is wrong"),
    ("mem res/peak", "resident and peak memory of the cell above its pre-load baseline (CPU: "
     "process RSS; CUDA: torch's allocator, reserved bytes, or device-wide used memory for "
     "ONNX Runtime)"),
    ("cold start", "session creation + first call (first batch size); +first call at later sizes"),
    ("status", "PASS: parity passed and timed; FAIL: outputs differ from eager fp32 beyond the "
     "tolerance, its speed must not be quoted; ERROR: crashed; SKIPPED: not applicable here"),
    ("max abs / rel err, min cosine, top-1 agree", "the cell's outputs against eager fp32 on "
     "the same inputs: largest absolute and relative error, lowest per-sample cosine "
     "similarity, share of samples with the same top-1 class"),
    ("B/A, verdict", "compare: candidate over baseline throughput; faster/slower only when the "
     "95% interval excludes 1 and the change exceeds the threshold; slightly: excludes 1, within "
     "the threshold; inconclusive: beyond the threshold, interval includes 1; (weak) when a side "
     "has one repeat"),
    ("top-1 drop", "evaluate: reference (eager fp32) top-1 minus the cell's, in points"),
]  # fmt: skip


def _ceilings_text(c: dict[str, Any]) -> str:
    """One line of a run's measured ceilings (schema /1 files name the bandwidth differently)."""
    gemm = ", ".join(f"{k} {v:,.0f}" for k, v in (c.get("gemm_gflops") or {}).items() if v)
    bandwidth = c.get("read_bandwidth_gbs", c.get("bandwidth_gbs"))
    parts = [f"GEMM GFLOP/s {gemm or '-'}"]
    if bandwidth:
        parts.append(f"read bandwidth {bandwidth:,.1f} GB/s")
    if c.get("threads"):
        parts.append(f"{c['threads']} threads")
    return "; ".join(parts)


def build_page(
    runs: list[Run], evaluations: list[Evaluation], out_dir: Path, threshold: float = 0.05
) -> Page:
    """Lay out the report and write its plots (PNG) into `out_dir`."""
    sections: list[Section] = []
    if runs:
        summary = Section("Summary", tables=[runs_table(runs), fastest_table(runs)])
        plots.plot_throughput(runs, out_dir / "throughput.png")
        summary.figures.append(Figure("throughput.png", "Throughput against batch size"))
        sections.append(summary)
    if len(runs) > 1:
        compare = Section(
            "Compare: each run against the first run of the same model on the same machine",
            text=["B/A > 1: B is faster (see Definitions for the verdicts)."],
        )
        firsts: list[Run] = []
        for other in runs:
            # Verdicts between different models (weights, classes, size) or different machines
            # would mean nothing: each run is judged against the first run of its model on its
            # machine, by the rule `compare` refuses other pairs by.
            base = next((f for f in firsts if refusal(f.data, other.data) is None), None)
            if base is None:
                firsts.append(other)
                label = run_machine_label(other.data)
                # A machine labelled as an earlier one's is told apart by what differs (flags,
                # cores, GPU); differently labelled machines are told apart by the label.
                twin = next((f for f in firsts[:-1] if run_machine_label(f.data) == label), None)
                if other is not runs[0]:
                    differs = (
                        machine_differences(
                            twin.data, other.data, hardware_fields(twin.data, other.data)
                        )
                        if twin is not None
                        else []
                    )
                    against = (
                        f"; against {twin.name}: {', '.join(differs)}" if twin and differs else ""
                    )
                    if not records_cpu_model(other.data):
                        against += "; it records no CPU model, so no machine can be matched to it"
                    compare.text.append(
                        f"{other.name}: the first run of its model ({model_label(other.data)}) "
                        f"on its machine ({label}{against}): not "
                        "compared with the runs of other models or machines."
                    )
                continue
            comparison = compare_runs(base.data, other.data, threshold)
            table = compare_table(comparison, (base.name, other.name))
            table.notes += [f"warning: {w}" for w in comparison.warnings]
            for side, keys in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
                if keys:
                    table.notes.append(f"only in {side}: " + ", ".join(key_label(k) for k in keys))
            table.notes += [f"not comparable: {key_label(n.key)}: {n.why}"
                            for n in comparison.not_comparable]  # fmt: skip
            compare.tables.append(table)
        sections.append(compare)
    for i, run in enumerate(runs):
        section = Section(f"Run {run.name}", code=[command_line(run.data)])
        if not (run.data.get("settings") or {}).get("command"):
            section.text.append(
                "The command below is rebuilt from the saved settings (this run did not record "
                "the command as typed): --artifacts, --normalize and the int8 --calib-data "
                "folder are not in it."
            )
        if not is_complete(run.data):
            section.text.append(f"Incomplete run {incomplete_description(run.data)}.")
        section.tables.append(environment_table(run))
        cell_tables = bench_tables(run.data["cells"], f"Cells of {run.name}", run.name, True)
        if cell_tables:  # how this run's medians and CIs were computed, as the terminal says
            cell_tables[-1].notes.append(bench_legend(run.data["cells"]))
        section.tables += cell_tables
        if load := load_table(run.data["cells"], f"Cells of {run.name}", run.name):
            load.notes.append(LOAD_LEGEND)
            section.tables.append(load)
        section.tables.append(parity_table(run))
        for kind, plot in (("latency", plots.plot_latency), ("roofline", plots.plot_roofline)):
            name = f"{kind}-{i + 1}.png"
            plot(run, out_dir / name)
            section.figures.append(Figure(name, f"{kind.capitalize()} of {run.name}"))
        ceilings = run.data.get("ceilings") or {}
        for device, c in ceilings.items():
            if c:
                section.text.append(f"Ceilings on {device}: {_ceilings_text(c)}.")
        sections.append(section)
    if evaluations:
        sections.append(
            Section(
                "Accuracy by precision",
                # Which model each table scored: it need not be the benchmarked runs' model.
                text=[
                    f"{e.name}: {model_label(e.data)}; data: {e.data.get('data') or '?'}."
                    for e in evaluations
                ],
                tables=[accuracy_table(e.data, e.name) for e in evaluations],
            )
        )
    sections.append(
        Section(
            "Definitions",
            tables=[_key_values("Metrics", DEFINITIONS, "definition")],
        )
    )
    dates = sorted({created_text(r.data, date_only=True) for r in runs})
    models = dict.fromkeys(model_label(r.data) for r in runs)
    subtitle = f"{' | '.join(models) or 'evaluation'}; {', '.join(dates) or ''}".strip("; ")
    return Page("alexbench report", subtitle, sections)


# ---------------------------------------------------------------- layout

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:13px}
caption{text-align:left;font-weight:bold;padding:4px 0}
th,td{border:1px solid #ccc;padding:3px 8px;white-space:nowrap}
th{background:#f0f0f0}td.r{text-align:right;font-variant-numeric:tabular-nums}
.tone-good{color:#176a1c}.tone-bad{color:#b00020;font-weight:bold}
.tone-best{color:#176a1c;font-weight:bold}.tone-warn{color:#9a6700;font-weight:bold}
.tone-dim{color:#888}.tone-void{color:#888;text-decoration:line-through}
img.plot{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
pre{background:#f6f8fa;padding:8px;overflow-x:auto}
table.env td,table.definition td{white-space:normal;max-width:70em}
.note{color:#555;font-size:12px;margin:0}
"""


def _html_table(t: TableData) -> str:
    e = html.escape
    head = any(c.name for c in t.columns)
    out = [f"<table class='{e(t.row_class)}'><caption>{e(t.title)}</caption>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{e(c.name)}</th>" for c in t.columns) + "</tr>")
    for row, row_id in zip(t.rows, t.row_ids, strict=True):
        attr = f" data-cell='{e(row_id)}'" if row_id else ""
        out.append(f"<tr class='{e(t.row_class)}'{attr}>")
        for col, entry in zip(t.columns, row, strict=True):
            tone = "" if entry.tone is Tone.PLAIN else f"tone-{entry.tone.value}"
            classes = " ".join(c for c in ("r" if col.right else "", tone) if c)
            out.append(f"<td class='{classes}'>{e(entry.text)}</td>")
        out.append("</tr>")
    out.append("</table>")
    out += [f"<p class='note'>{e(n)}</p>" for n in t.notes]
    return "\n".join(out)


def to_html(page: Page, out_dir: Path) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(page.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(page.title)}</h1><p>{e(page.subtitle)}</p>",
    ]
    for s in page.sections:
        parts.append(f"<h{s.level}>{e(s.title)}</h{s.level}>")
        parts += [f"<p>{e(t)}</p>" for t in s.text]
        parts += [f"<pre>{e(c)}</pre>" for c in s.code]
        for f in s.figures:
            data = base64.b64encode((out_dir / f.file).read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img class='plot' alt='{e(f.caption)}' "
                f"src='data:image/png;base64,{data}'><figcaption>{e(f.caption)}</figcaption>"
                "</figure>"
            )
        parts += [_html_table(t) for t in s.tables]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# Characters that start Markdown markup anywhere in a line (emphasis, code, links, HTML, tables,
# strikethrough, entities, headings' closing #), escaped with a backslash as CommonMark allows for
# any ASCII punctuation. A run name, host or note is text: "a_b*c" must not turn italic, and `<`
# must not open HTML. ~ too: an unstable median's ~ beside ~~strikethrough~~ would read as markup.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#])")
# At the start of a block (a paragraph, a list item's text): a bullet or a thematic break
# (- + =; * is escaped anywhere), or an ordered list's "1." / "1)" before a space.
_MD_BLOCK_START = re.compile(r"^(?:[-+=]|\d{1,9}[.)](?=\s|$))")


def _md_text(text: str, block: bool = False) -> str:
    """`text` as one line of literal Markdown: markup escaped, line breaks (which would end a
    table row or a paragraph) made spaces. `block`: the text starts a block (a paragraph, a
    list item), where a leading "- " or "1. " would start a list and four spaces a code block."""
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))
    if not block:
        return text
    text = text.lstrip()
    start = _MD_BLOCK_START.match(text)
    if start:  # the backslash goes before the marker's punctuation: "\\-", "1\\."
        end = start.end()
        text = text[: end - 1] + "\\" + text[end - 1 :]
    return text


def _md_fence(code: list[str]) -> str:
    """A code fence longer than any run of backticks in `code`, so none of it closes it."""
    longest = max((len(r) for line in code for r in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _md_cell(entry: Entry) -> str:
    # Stripped: "**x **" and "~~x ~~" are not emphasis, and a table cell ignores edge spaces.
    text = _md_text(entry.text).strip()
    if not text:
        return " "
    if entry.tone is Tone.VOID:
        return f"~~{text}~~"
    if entry.tone in (Tone.BEST, Tone.BAD):
        return f"**{text}**"
    return text


def _md_table(t: TableData) -> str:
    names = [_md_text(c.name) or " " for c in t.columns]
    title = _md_text(t.title).strip()
    out = [f"**{title}**" if title else "", "", "| " + " | ".join(names) + " |"]
    out.append("|" + "|".join("---:" if c.right else ":---" for c in t.columns) + "|")
    out += ["| " + " | ".join(_md_cell(x) for x in row) + " |" for row in t.rows]
    if t.notes:
        out += [""] + [f"- {_md_text(n, block=True)}" for n in t.notes]
    return "\n".join(out) + "\n"


def to_markdown(page: Page) -> str:
    out = [f"# {_md_text(page.title)}", "", _md_text(page.subtitle, block=True), ""]
    for s in page.sections:
        out += ["#" * s.level + " " + _md_text(s.title), ""]
        out += [_md_text(t, block=True) + "\n" for t in s.text]
        fence = _md_fence(s.code)
        out += [fence, *s.code, fence, ""] if s.code else []
        # The file is ours (throughput.png, latency-1.png): a link target needs no escaping.
        out += [f"![{_md_text(f.caption)}]({f.file})\n" for f in s.figures]
        out += [_md_table(t) for t in s.tables]
    return "\n".join(out)


# ---------------------------------------------------------------- writing the folder
#
# `--out DIR` is replaced as a whole: the report is built in a staging folder beside it
# (`.DIR.alexbench-report-XXXXXXXX`), then swapped in, so DIR holds either the old report or the
# new one, never a mix, and no PNG of an earlier report with more runs stays behind. Since the
# whole folder goes, DIR must be new, empty, or hold nothing but what a report is made of: a
# folder with anything else in it (the user's files) is refused, never emptied.

_REPORT_FILE = re.compile(
    r"report\.(?:html|md)|throughput\.png|(?:latency|roofline)-[1-9][0-9]*\.png"
)
_STAGING_TAG = "alexbench-report-"
# A staging folder is locked (flock) while its writer lives; one unlocked and untouched this
# long was left by a killed writer (SIGKILL, power loss). The age covers the instant between
# creating a folder and locking it.
_STALE_AFTER_S = 60.0


def check_report_folder(out_dir: Path) -> Path:
    """The folder `--out out_dir` names (links followed) when a report may replace it: absent,
    empty, or holding only the files of a report; else a one-line InputError naming what is in
    the way."""
    try:
        target = out_dir.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a link loop (Python 3.11)
        raise InputError(f"--out {out_dir}: cannot resolve the path ({e})") from None
    if target.exists() and not target.is_dir():
        raise InputError(f"--out {out_dir}: is a file, expected a folder")
    with contextlib.suppress(OSError):
        if target == Path.cwd().resolve():  # swapped out, it would leave the shell in a ghost
            raise InputError(
                f"--out {out_dir}: is the current folder, which the report would replace "
                "under the shell; give a subfolder"
            )
    if not target.is_dir():
        return target
    try:
        with os.scandir(target) as entries:
            foreign = sorted(
                e.name
                for e in entries
                if not (_REPORT_FILE.fullmatch(e.name) and e.is_file(follow_symlinks=False))
            )
    except OSError as e:
        raise InputError(f"--out {out_dir}: cannot read the folder ({e.strerror or e})") from None
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise InputError(
            f"--out {out_dir}: holds {foreign[0]}{more}, not part of an alexbench report: the "
            "report replaces the whole folder, so give a new or empty folder, or an earlier "
            "report's"
        )
    return target


def _remove_stale_staging(parent: Path, name: str) -> None:
    """Remove the staging folders of `name` that killed writers left in `parent`: named as
    alexbench names them, and neither locked by a live writer nor recently changed."""
    prefix = f".{name}.{_STAGING_TAG}"
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return  # the write itself will say what is wrong with the folder
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if time.time() - entry.stat(follow_symlinks=False).st_mtime < _STALE_AFTER_S:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked (a report is being written there now), or no locks here
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE): True when done, False
    where the C library, kernel or filesystem cannot (the caller falls back to two renames)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library without it
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]  # fmt: skip
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(staging: Path, target: Path) -> None:
    """Put the finished `staging` folder at `target`; the old report, if any, ends up at the
    staging path (removed by the caller)."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        return
    # Two renames: a kill between them leaves no `target`, and both reports under staging
    # names beside it (the old one is removed by the next run as stale).
    old = staging.with_name(staging.name + "-old")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:  # an error or an interrupt: the old report goes back in place
        if not os.path.lexists(target):
            os.rename(old, target)
        raise
    os.rename(old, staging)


def _folder_mode(target: Path) -> int:
    """The permissions the report folder gets: those it had, else the umask's (mkdtemp makes
    its folder 0700, which would hide a shared report from its readers)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(target.stat().st_mode)
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def write_report(
    runs: list[Run], evaluations: list[Evaluation], out_dir: Path, threshold: float = 0.05
) -> ReportFiles:
    """Write report.html, report.md and the PNGs of `runs` and `evaluations` (`load_inputs`)
    into `out_dir`, replacing an earlier report there as a whole (see above); a failure
    leaves `out_dir` as it was."""
    target = check_report_folder(out_dir)
    parent = target.parent
    made = missing_folders(parent)  # removed again when nothing comes of this
    staging: Path | None = None
    lock = -1
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(parent, target.name)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_STAGING_TAG}", dir=parent))
        lock = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        # Locked, no other run cleans it up. Where there are no such locks (NFS: none on a
        # folder opened read-only) the age rule alone protects it.
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        page = build_page(runs, evaluations, staging, threshold)
        write_text(staging / "report.html", to_html(page, staging))
        write_text(staging / "report.md", to_markdown(page))
        os.chmod(staging, _folder_mode(target))
        check_report_folder(out_dir)  # again: nothing of the user's came in meanwhile
        _swap_in(staging, target)
    except OSError as e:
        _discard(staging, lock, made)
        raise InputError(f"--out {out_dir}: cannot write the report ({e.strerror or e})") from None
    except BaseException:
        _discard(staging, lock, made)
        raise
    _discard(staging, lock, [])  # the old report, now at the staging path
    images = [out_dir / f.file for s in page.sections for f in s.figures]
    return ReportFiles(
        out_dir / "report.html", out_dir / "report.md", images, len(runs), len(evaluations)
    )


def _discard(staging: Path | None, lock: int, made: list[Path]) -> None:
    if lock >= 0:
        os.close(lock)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    remove_empty_folders(made)
