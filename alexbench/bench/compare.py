"""Compare two saved benchmark runs cell by cell: is B's throughput really different from A's?

Pure statistics on the results files' dicts; `alexbench.report.render_compare` renders the result.

Why not "the medians' 95% CIs do not overlap": the order-statistic CI of a median assumes
independent samples, and timing samples are not independent. Consecutive iterations share
frequency, cache and scheduler state (autocorrelation), and the whole level of a run moves by a
few percent from one run to the next (placement, turbo, the neighbours on a shared machine).
Within-run CIs are then far too narrow, and unchanged code comes out "faster" or "slower".

What is done instead, per matched cell (the ratio is always B/A throughput in images/s):

* Both runs have >= 2 repeats (`bench --repeat N`): each repeat is collapsed to its median, so
  the autocorrelation inside a repeat no longer matters, and the repeat-to-repeat spread of those
  medians measures exactly the noise that makes runs disagree. The interval is a Welch
  t-interval on the difference of the mean log per-repeat medians (see `welch_ratio_interval`).
* Either run has a single repeat (old files, `--repeat 1`): nothing measures run-to-run noise,
  so a circular block bootstrap over the raw latencies gives an interval that honours the
  autocorrelation within the run but still misses run-to-run shifts. Its verdict is marked
  `weak` (see `bootstrap_ratio_interval`).

A cell is FASTER or SLOWER only when the difference is both significant (the 95% interval
excludes 1) and material (the ratio beyond 1 + threshold or below 1 / (1 + threshold), 5% by
default: symmetric in log space, so B 5% faster and A 5% faster than B are judged alike). The
threshold also absorbs what no interval from one invocation can see: A and B are separate
processes, so their run-to-run difference can exceed the spread between repeats of one run.
The other verdicts keep apart what "within noise" used to lump together:

* SLIGHTLY_FASTER / SLIGHTLY_SLOWER: significant, but within the threshold (a certain 4% change);
* INCONCLUSIVE: not significant, yet the ratio is beyond the threshold (0.63x with an interval
  of [0.40, 1.02]): the runs cannot tell, which is not evidence that nothing changed;
* WITHIN_NOISE: not significant and the ratio within the threshold;
* NO_INTERVAL: no interval at all (a single-repeat side whose raw latencies were stripped from
  its file), never "within noise".

`regressions` counts SLOWER; NO_INTERVAL cells whose ratio is slower beyond the threshold, so a
CI gate does not pass on no evidence; and INCONCLUSIVE ones whose ratio is slower beyond it and
whose interval rules out a material speed-up (below 1 + threshold): evidence that leans one way
only. An interval wide on both sides ([0.20, 4.49]) says nothing, and gating on its point ratio
would fail unchanged runs (at --threshold 0, every cell below 1.000x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

from alexbench.bench.intervals import (
    CONFIDENCE,
    RatioInterval,
    bootstrap_ratio_interval,
    welch_ratio_interval,
)
from alexbench.bench.stats import geometric_mean
from alexbench.exit_codes import ExitCode
from alexbench.results_shape import ALLOCATOR_ENV, is_busy, recorded_cores

DEFAULT_THRESHOLD = 0.05

CellKey = tuple[str, str, str, int]  # (backend, device, precision, batch)


class Verdict(StrEnum):
    FASTER = "faster"
    SLOWER = "slower"
    SLIGHTLY_FASTER = "slightly faster"  # significant, within the threshold
    SLIGHTLY_SLOWER = "slightly slower"
    INCONCLUSIVE = "inconclusive"  # not significant, ratio beyond the threshold
    WITHIN_NOISE = "within noise"  # not significant, ratio within the threshold
    NO_INTERVAL = "no interval"  # no raw latencies to judge the noise by: the ratio alone


@dataclass(frozen=True)
class CellComparison:
    """One cell present and `ok` in both runs.

    `a_p50_ms`/`b_p50_ms` are the centres the ratio is computed from: with repeats on both
    sides the geometric mean of each side's per-repeat medians (the bench table's p50);
    otherwise each side's median over all its raw latencies, which the block bootstrap
    resamples (for a repeated side this can differ slightly from its table's p50); so
    `ratio == a_p50_ms / b_p50_ms` (B/A throughput, > 1: B is faster)."""

    key: CellKey
    a_p50_ms: float
    b_p50_ms: float
    a_repeats: int
    b_repeats: int
    ratio: float
    ci_low: float | None  # 95% interval for the ratio; None when it cannot be computed
    ci_high: float | None
    method: str
    verdict: Verdict
    weak: bool  # single-repeat evidence: the interval misses run-to-run noise

    @property
    def significant(self) -> bool:
        return (
            self.ci_low is not None
            and self.ci_high is not None
            and (self.ci_low > 1 or self.ci_high < 1)
        )


class Difference(StrEnum):
    """What kind of difference between two runs a warning names, which decides what `compare`
    does with it: figures from different machines or of different models measure different
    things, so it refuses them (unless told to go on); a different library version, thread
    setting or option on one machine is what a comparison is usually made to see."""

    MODEL = "model"  # weights, classes, image size
    MACHINE = "machine"  # the hardware: CPU model, id, flags and cores; GPU and its capability
    SETUP = "setup"  # software, settings, load and completeness: warned, still compared


@dataclass(frozen=True)
class RunDifference:
    kind: Difference
    text: str  # one line: "different machine: cpu X vs Y"


@dataclass(frozen=True)
class NotComparable:
    key: CellKey
    why: str


@dataclass(frozen=True)
class LostCell:
    """A cell that B did not measure although A did (status ok), or that fails parity in B
    (whatever A says): what a CI gate must not pass. `b_status` is None when B has no such cell."""

    key: CellKey
    b_status: str | None


@dataclass
class Comparison:
    cells: list[CellComparison]
    only_in_a: list[CellKey]
    only_in_b: list[CellKey]
    not_comparable: list[NotComparable]
    warnings: list[str]  # every difference's text (RunDifference.text), model and machine first
    a_complete: bool
    b_complete: bool
    threshold: float = DEFAULT_THRESHOLD
    confidence: float = CONFIDENCE
    lost_in_b: list[LostCell] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # `busy_sides`: why a side's figures are noisy
    # 'B was stopped before its end (interrupted: SIGINT): ...' per run saved by a stopped bench
    stopped: list[str] = field(default_factory=list)
    # A and B are one document (one file given twice, or a copy): every ratio is 1 by
    # construction, and a gate passed a script that picked the same file twice (an outside
    # audit). Stricter than `same_run`'s warning: an edited copy (a cell's status changed)
    # is a fixture of tests, and a gate judges it.
    identical: bool = False


def slower_beyond(ratio: float, threshold: float) -> bool:
    return ratio < 1 / (1 + threshold)


def regressions(comparison: Comparison) -> list[CellComparison]:
    """Matched cells where B is slower than A beyond the threshold: weak verdicts included,
    interval-less cells whose ratio alone is beyond it, and inconclusive ones whose interval
    leans that way (see the module docstring)."""
    t = comparison.threshold
    return [
        c
        for c in comparison.cells
        if c.verdict is Verdict.SLOWER
        or (c.verdict is Verdict.NO_INTERVAL and slower_beyond(c.ratio, t))
        or (
            c.verdict is Verdict.INCONCLUSIVE
            and slower_beyond(c.ratio, t)
            and c.ci_high is not None
            and c.ci_high < 1 + t
        )
    ]


@dataclass(frozen=True)
class GateFailure:
    """One reason `compare --fail-on-regression` fails, with the exit code it asks for."""

    exit_code: int
    text: str


REGRESSED = 1  # the exit code --fail-on-regression has always used for "B is slower"
# The gate could not judge: a run on a busy machine, or stopped before its end (like a lost cell:
# the evidence is missing, not wrong).
UNJUDGED = ExitCode.CELLS_FAILED


# How each status of a lost cell reads in the gate's error, and the exit code it asks for (a
# wrong answer outranks lost coverage, as in `exit_codes.outcome`).
_LOSSES: dict[str | None, tuple[str, int]] = {
    "parity_failed": ("fail parity in B (wrong answers)", ExitCode.PARITY_FAILED),
    "error": ("measured in A crashed in B", ExitCode.CELLS_FAILED),
    None: ("measured in A are missing from B", ExitCode.CELLS_FAILED),
}
_NOT_RUN = ("measured in A were not run in B", ExitCode.CELLS_FAILED)


def gate_failures(comparison: Comparison) -> list[GateFailure]:
    """Why a CI gate on this comparison fails, worst first: B slower beyond the threshold, or B
    without a result A had; or figures the gate cannot judge by (a run on a busy machine, whose
    "slower" and "within noise" alike may be its neighbours' doing; a run stopped before its
    end, which lacks cells or repeats). Empty: the gate passes."""
    out = []
    slower = regressions(comparison)
    if comparison.busy:
        slower = []  # a busy run's slowdown is no evidence of a regression, nor its speed of none
        out.append(
            GateFailure(
                UNJUDGED,
                f"cannot judge the speed: {'; '.join(comparison.busy)}; rerun on a quiet machine",
            )
        )
    # (Cells missing from a file that says it is complete are lost cells, below.)
    out += [GateFailure(UNJUDGED, f"{why}: a gate judges whole runs") for why in comparison.stopped]
    if comparison.identical:
        out.append(GateFailure(UNJUDGED, "A and B are one results document: a gate compares two"))
    if slower:
        blind = sum(c.verdict is Verdict.NO_INTERVAL for c in slower)
        unsure = sum(c.verdict is Verdict.INCONCLUSIVE for c in slower)
        weak = sum(c.weak and c.verdict is Verdict.SLOWER for c in slower)
        notes = [f"{weak} on single-repeat evidence"] * bool(weak)
        notes += [
            f"{unsure} inconclusive: the ratio is beyond it and the interval excludes a "
            "speed-up, but includes 1; rerun both with more --repeat"
        ] * bool(unsure)
        notes += [f"{blind} on the ratio alone, with no interval"] * bool(blind)
        out.append(
            GateFailure(
                REGRESSED,
                f"{len(slower)} cell(s) regressed: B slower than A by more than "
                f"{comparison.threshold * 100:g}%" + (f" ({'; '.join(notes)})" if notes else ""),
            )
        )
    groups: dict[tuple[str, int], list[CellKey]] = {}
    for lost in comparison.lost_in_b:
        groups.setdefault(_LOSSES.get(lost.b_status, _NOT_RUN), []).append(lost.key)
    for (words, code), keys in groups.items():
        shown = ", ".join(key_label(k) for k in keys[:4]) + (", ..." if len(keys) > 4 else "")
        out.append(GateFailure(code, f"{len(keys)} cell(s) {words}: {shown}"))
    return sorted(out, key=lambda f: f.exit_code)


def undecided(comparison: Comparison) -> list[CellComparison]:
    """Inconclusive cells whose ratio is slower beyond the threshold but which `regressions`
    does not count (their interval reaches a material speed-up too): the gate passes them, and
    says it could not decide them."""
    counted = {c.key for c in regressions(comparison)}
    t = comparison.threshold
    return [
        c
        for c in comparison.cells
        if c.verdict is Verdict.INCONCLUSIVE and slower_beyond(c.ratio, t) and c.key not in counted
    ]


def nothing_compared(comparison: Comparison) -> str:
    """Why a comparison holds no cell (`cells` is empty): what the two runs had instead."""
    parts = [
        f"{len(keys)} cell(s) only in {side}"
        for side, keys in (("A", comparison.only_in_a), ("B", comparison.only_in_b))
        if keys
    ]
    if comparison.not_comparable:
        parts.append(f"{len(comparison.not_comparable)} in both but not ok in both")
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"no cell is measured (status ok) in both A and B{detail}"


# ------------------------------------------------------------------------- results files


def cell_key(cell: dict[str, Any]) -> CellKey:
    return (cell["backend"], cell["device"], cell["precision"], int(cell["batch"]))


def key_label(key: CellKey) -> str:
    return f"{key[0]}/{key[1]}/{key[2]}/b{key[3]}"


def repeat_medians_ms(cell: dict[str, Any]) -> list[float]:
    """Per-repeat median latencies (ms); a file without "repeats" is one repeat."""
    reps = cell.get("repeats")
    if reps:
        return [float(r["p50_ms"]) for r in reps if r.get("p50_ms") is not None]
    stats = cell.get("stats") or {}
    return [float(stats["p50_ms"])] if stats.get("p50_ms") is not None else []


def cell_counts(payload: dict[str, Any]) -> tuple[int, int | None]:
    """(cell runs finished, cell runs the settings ask for, or None when they do not say).

    With `--repeat N` each cell runs N times: a run stopped in repeat 2 has every cell present
    but not every run, so runs are counted (`runs` per cell; files without it: one each)."""
    present = sum(int(c.get("runs", 1)) for c in payload.get("cells") or [])
    settings = payload.get("settings") or {}
    axes = [settings.get(k) for k in ("backends", "devices", "precisions", "batches")]
    if not all(isinstance(a, list) for a in axes):
        return present, None
    repeat = int(settings.get("repeat") or 1)
    return present, repeat * math.prod(len(a) for a in axes)  # type: ignore[arg-type]


def is_complete(payload: dict[str, Any]) -> bool:
    """Not interrupted (files from before the field: not), and holding every cell run its
    settings ask for (a file cut short or edited by hand says `complete` with cells missing)."""
    if payload.get("complete") is False:
        return False
    present, expected = cell_counts(payload)
    return expected is None or present >= expected


def incomplete_description(payload: dict[str, Any]) -> str:
    """'interrupted: SIGINT): 5 of 12 cells finished' style tail used by report and compare."""
    present, expected = cell_counts(payload)
    done = f"{present} of {expected}" if expected is not None else f"{present}"
    unit = "cell runs" if int((payload.get("settings") or {}).get("repeat") or 1) > 1 else "cells"
    if payload.get("complete") is not False:  # not interrupted: cells missing from the file
        return f"(cells missing): {done} {unit} in the file"
    why = payload.get("interrupted") or "reason not recorded"
    return f"(interrupted: {why}): {done} {unit} finished"


def compare_runs(
    a: dict[str, Any], b: dict[str, Any], threshold: float = DEFAULT_THRESHOLD
) -> Comparison:
    """Match the two runs' cells by (backend, device, precision, batch) and judge each pair."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    cells_a = {cell_key(c): c for c in a.get("cells") or []}
    cells_b = {cell_key(c): c for c in b.get("cells") or []}
    out = Comparison(
        cells=[],
        # A cell skipped in one run and absent from the other was measured in neither.
        only_in_a=[
            k for k, c in cells_a.items() if k not in cells_b and c.get("status") != "skipped"
        ],
        only_in_b=[
            k for k, c in cells_b.items() if k not in cells_a and c.get("status") != "skipped"
        ],
        not_comparable=[],
        warnings=run_warnings(a, b),
        a_complete=is_complete(a),
        b_complete=is_complete(b),
        threshold=threshold,
        lost_in_b=_lost_in_b(cells_a, cells_b),
        busy=busy_sides(a, b),
        stopped=[
            f"{side} was stopped before its end {incomplete_description(run)}"
            for side, run in (("A", a), ("B", b))
            if run.get("complete") is False
        ],
        identical=a == b,
    )
    for key, ca in cells_a.items():
        cb = cells_b.get(key)
        if cb is None:
            continue
        why = _why_not_comparable(ca, cb)
        if why == "":
            continue  # skipped in both runs: nothing to compare and nothing to say
        if why is not None:
            out.not_comparable.append(NotComparable(key, why))
            continue
        out.cells.append(compare_cells(key, ca, cb, threshold))
    return out


def _lost_in_b(
    cells_a: dict[CellKey, dict[str, Any]], cells_b: dict[CellKey, dict[str, Any]]
) -> list[LostCell]:
    lost = []
    for key in sorted(cells_a.keys() | cells_b.keys()):
        status_a = (cells_a.get(key) or {}).get("status")
        status_b = (cells_b.get(key) or {}).get("status")
        if status_b == "parity_failed" or (status_a == "ok" and status_b != "ok"):
            lost.append(LostCell(key, status_b))
    return lost


def _why_not_comparable(ca: dict[str, Any], cb: dict[str, Any]) -> str | None:
    sa, sb = ca.get("status"), cb.get("status")
    if sa == "skipped" and sb == "skipped":
        return ""
    parts = []
    for side, c, s in (("A", ca, sa), ("B", cb, sb)):
        if s != "ok":
            reason = c.get("reason") or ""
            parts.append(f"{side} {s}" + (f" ({reason})" if reason else ""))
        elif not repeat_medians_ms(c) or min(repeat_medians_ms(c)) <= 0:
            parts.append(f"{side} has no positive median latency")
    return "; ".join(parts) or None


def compare_cells(
    key: CellKey, ca: dict[str, Any], cb: dict[str, Any], threshold: float = DEFAULT_THRESHOLD
) -> CellComparison:
    """Judge one matched pair of `ok` cells (see the module docstring for the method)."""
    ma, mb = repeat_medians_ms(ca), repeat_medians_ms(cb)
    weak = len(ma) < 2 or len(mb) < 2
    interval: RatioInterval | None
    if not weak:
        interval = welch_ratio_interval(ma, mb)
        a_centre, b_centre = geometric_mean(ma), geometric_mean(mb)
    else:
        lat_a = np.asarray(ca.get("latencies_ns") or [], dtype=np.float64)
        lat_b = np.asarray(cb.get("latencies_ns") or [], dtype=np.float64)
        if len(lat_a) and len(lat_b) and np.median(lat_a) > 0 and np.median(lat_b) > 0:
            pooled_a, pooled_b = float(np.median(lat_a)) / 1e6, float(np.median(lat_b)) / 1e6
            interval = bootstrap_ratio_interval(lat_a, lat_b)
            # The centres the tables show (a side with repeats: their medians' geometric mean,
            # not its pooled samples' median), the bootstrap's interval moved with its ratio.
            a_centre = geometric_mean(ma) if len(ma) >= 2 else pooled_a
            b_centre = geometric_mean(mb) if len(mb) >= 2 else pooled_b
            shift = (a_centre / b_centre) / (pooled_a / pooled_b)
            interval = replace(interval, ratio=interval.ratio * shift,
                               low=interval.low * shift, high=interval.high * shift)  # fmt: skip
        else:  # raw latencies stripped from a file: a point estimate and no interval
            interval = None
            a_centre, b_centre = geometric_mean(ma), geometric_mean(mb)
    ratio = a_centre / b_centre
    low = interval.low if interval else None
    high = interval.high if interval else None
    significant = low is not None and high is not None and (low > 1 or high < 1)
    if interval is None:
        verdict = Verdict.NO_INTERVAL
    elif significant and ratio > 1 + threshold:
        verdict = Verdict.FASTER
    elif significant and slower_beyond(ratio, threshold):
        verdict = Verdict.SLOWER
    elif significant:
        verdict = Verdict.SLIGHTLY_FASTER if ratio > 1 else Verdict.SLIGHTLY_SLOWER
    elif ratio > 1 + threshold or slower_beyond(ratio, threshold):
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.WITHIN_NOISE
    return CellComparison(
        key=key,
        a_p50_ms=a_centre,
        b_p50_ms=b_centre,
        a_repeats=len(ma),
        b_repeats=len(mb),
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        method=interval.method if interval else "no raw latencies: no interval",
        verdict=verdict,
        weak=weak,
    )


# ------------------------------------------------------------------------------ warnings


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _fmt(v: Any) -> str:
    return "unset" if v is None else str(v)


def _describe_source(src: Any) -> str:
    if not isinstance(src, dict):
        return "unknown"
    kind = src.get("kind") or "unknown"
    if kind == "seeded":
        return f"seeded init (seed {src.get('seed')})"
    sha = src.get("file_sha256")
    return f"{kind} sha256 {sha[:12]}" if sha else f"{kind} {src.get('path')}"


def _source_identity(src: Any) -> Any:
    if not isinstance(src, dict):
        return None
    if src.get("kind") == "seeded":
        return ("seeded", src.get("seed"))
    return (src.get("kind"), src.get("file_sha256") or src.get("path"))


BUSIER_LOAD = 1.0  # a load-average difference (runnable processes) that is worth a warning
BUSIER_OTHERS = 0.5  # a difference in other processes' CPU use at the start (cores), the same

# What tells two machines apart beyond the CPU's and GPU's names: VMs of different generations
# share one name ("Intel(R) Xeon(R) Processor"), and a flag (AMX, AVX-512) or the cores given
# decides which kernels run and how fast. These are the hardware: runs that differ in any of
# them are not compared (compare refuses; the report pairs no such runs).
_CPU_FIELDS = (
    ("cpu", ("environment", "cpu", "model")),
    ("cpu id", ("environment", "cpu", "id")),
    ("cpu flags", ("environment", "cpu", "flags")),
    ("logical cores", ("environment", "cpu", "logical_cores")),
    ("usable cores", ("environment", "cpu", "usable_cores")),
)
_GPU_FIELDS = (
    ("gpu", ("environment", "gpu", "name")),
    ("gpu capability", ("environment", "gpu", "capability")),
)
_HARDWARE_FIELDS = _CPU_FIELDS + _GPU_FIELDS
# A GPU's driver, CUDA and cuDNN decide its libraries: software on the same hardware, warned
# like a library version (comparing CUDA releases on one GPU is a reason to compare).
_GPU_SOFTWARE_FIELDS = (
    ("gpu driver", ("environment", "gpu", "driver")),
    ("cuda", ("environment", "gpu", "cuda")),
    ("cudnn", ("environment", "gpu", "cudnn")),
)
_MACHINE_FIELDS = _HARDWARE_FIELDS + _GPU_SOFTWARE_FIELDS


# Options that change nothing in a run without a cell they apply to: --cudnn-benchmark is on by
# default in a CPU-only run too, and --compile-mode is read by torch.compile cells only.
_CUDA_OPTIONS = ("cudnn_benchmark", "cuda_graphs", "include_transfers")


def _option_applies(option: str, *runs: dict[str, Any]) -> bool:
    cells = [c for run in runs for c in run.get("cells") or [] if isinstance(c, dict)]
    if option in _CUDA_OPTIONS:
        return any(c.get("device") == "cuda" for c in cells)
    if option == "compile_mode":
        return any(c.get("backend") == "compile" for c in cells)
    return True


def hardware_fields(*runs: dict[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The hardware that bears on the runs' figures: the CPU always (it feeds CUDA cells too),
    the GPU only where a run has a CUDA cell (a GPU visible or hidden, CUDA_VISIBLE_DEVICES=,
    changes nothing a CPU-only sweep measured)."""
    cuda = any(
        isinstance(c, dict) and c.get("device") == "cuda"
        for run in runs
        for c in run.get("cells") or []
    )
    return _HARDWARE_FIELDS if cuda else _CPU_FIELDS


def machine_differences(
    a: dict[str, Any],
    b: dict[str, Any],
    fields: tuple[tuple[str, tuple[str, ...]], ...] = _MACHINE_FIELDS,
) -> list[str]:
    """What differs between the two runs' machines, one phrase per field of `fields` that both
    files record ("cpu X vs Y", "cpu flags: only A has avx512f")."""
    out = []
    for label, path in fields:
        va, vb = _get(a, *path), _get(b, *path)
        if label == "gpu":
            va, vb = va or "none", vb or "none"
        elif va is None or vb is None:
            continue  # not recorded on one side (an older file): nothing to tell
        if va == vb:
            continue
        if isinstance(va, list) and isinstance(vb, list):
            gone, new = sorted(set(va) - set(vb)), sorted(set(vb) - set(va))
            parts = [f"only A has {' '.join(gone)}"] * bool(gone)
            parts += [f"only B has {' '.join(new)}"] * bool(new)
            out.append(f"{label}: {'; '.join(parts)}")
        else:
            out.append(f"{label} {_fmt(va)} vs {_fmt(vb)}")
    return out


def records_cpu_model(run: dict[str, Any]) -> bool:
    return bool(_get(run, *_CPU_FIELDS[0][1]))


def unrecorded_hardware(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Which file records no CPU model ("" when both do). Without it nothing says the two runs
    timed the same hardware: such a pair is refused like one from different machines, not
    taken as the same machine (a file with its environment stripped must not pass a gate)."""
    missing = [side for side, r in (("A", a), ("B", b)) if not records_cpu_model(r)]
    if not missing:
        return ""
    return f"{' and '.join(missing)} record{'s' * (len(missing) == 1)} no CPU model"


# Per-cell settings (`session`: TF32, memory format, dtype, CUDA graphs, a runtime's options) and
# how the cell was timed: cells matched by backend/device/precision/batch may still have run
# otherwise.
MAX_CELLS_NAMED = 3
MAX_VALUE_CHARS = 40
# What `session` records that is not a setting: measurements and cache state that change from run
# to run (compile times, call counts, a cache hit), what is warned for the whole run already
# (versions, the device's name, the model's metadata, the artifacts), and the sweep's batches.
_NOT_SETTINGS = frozenset({
    "compile_s", "timing_evidence", "optimized_model_cache", "compiled_variants",
    "compiled_batches", "batch", "device_time", "run_returns_when_enqueued", "onnx_metadata",
    "openvino", "full_device_name",
})  # fmt: skip


def _is_setting(key: str) -> bool:
    # Thread counts are warned once for the run (--threads, torch threads, OMP/MKL variables).
    return key not in _NOT_SETTINGS and "threads" not in key


def _fmt_short(v: Any) -> str:
    text = _fmt(v)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def cell_setting_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """One phrase per cell in both runs whose recorded session settings or timing method
    differ ("eager/cpu/fp32/b1: memory_format channels_last vs contiguous"); a setting one
    file does not record (an older file) is not a difference."""
    cells_b = {cell_key(c): c for c in b.get("cells") or []}
    out = []
    for ca in a.get("cells") or []:
        key = cell_key(ca)
        cb = cells_b.get(key)
        if cb is None or ca.get("status") != "ok" or cb.get("status") != "ok":
            continue
        diffs = []
        sa, sb = ca.get("session"), cb.get("session")
        if isinstance(sa, dict) and isinstance(sb, dict):
            diffs += [
                f"{k} {_fmt_short(sa[k])} vs {_fmt_short(sb[k])}"
                for k in sa
                if k in sb and sa[k] != sb[k] and _is_setting(k)
            ]
        ta, tb = ca.get("timing_method"), cb.get("timing_method")
        if ta and tb and ta != tb:
            diffs.append(f"timed by {ta} vs {tb}")
        if diffs:
            out.append(f"{key_label(key)}: {', '.join(diffs)}")
    return out


def same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether A and B are one run saved twice (a copy under another name): the same start
    time and, cell for cell, the same raw latencies (or medians, where the raw ones were
    stripped). Two real runs never share both."""
    if a.get("created") is None or a.get("created") != b.get("created"):
        return False
    ta, tb = ([(c.get("latencies_ns"), repeat_medians_ms(c)) for c in r.get("cells") or []]
              for r in (a, b))  # fmt: skip
    return ta == tb and any(lat or medians for lat, medians in ta)


def run_warnings(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What makes the two runs not measure the same thing, one line each (empty: comparable)."""
    return [d.text for d in run_differences(a, b)]


def busy_sides(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'B ran on a busy machine: ...' for each run that was busy by bench's rule (a quarter of
    its cores used by other processes on average while it ran; in files from before that
    average, when it started). The average decides where recorded: a job that ended as the
    run began does not make the whole run busy."""
    out = []
    for side, run in (("A", a), ("B", b)):
        cores = recorded_cores(_get(run, "environment", "cpu") or {})
        value, when = _get(run, "environment", "others_cpu_cores_during"), "on average while it ran"
        if not isinstance(value, int | float):
            value, when = _get(run, "environment", "others_cpu_cores"), "when it started"
        if isinstance(value, int | float) and isinstance(cores, int) and is_busy(value, cores):
            out.append(
                f"{side} ran on a busy machine: other processes used {value:.1f} of {cores} "
                f"cores {when}"
            )
    return out


def run_differences(a: dict[str, Any], b: dict[str, Any]) -> list[RunDifference]:
    """Each difference between the two runs that bears on their figures, with its kind."""
    out: list[RunDifference] = []

    def add(kind: Difference, text: str) -> None:
        out.append(RunDifference(kind, text))

    # Model identity.
    diffs = []
    for label, path in (("image size", "image_size"), ("classes", "num_classes")):
        va, vb = _get(a, "model", "meta", path), _get(b, "model", "meta", path)
        if va != vb:
            diffs.append(f"{label} {_fmt(va)} vs {_fmt(vb)}")
    sa, sb = _get(a, "model", "source"), _get(b, "model", "source")
    if _source_identity(sa) != _source_identity(sb):
        diffs.append(f"weights {_describe_source(sa)} vs {_describe_source(sb)}")
    if diffs:
        add(Difference.MODEL, "different model: " + ", ".join(diffs))
    arts_a = _get(a, "model", "artifacts") or {}
    arts_b = _get(b, "model", "artifacts") or {}
    changed = [f for f in arts_a if f in arts_b and arts_a[f] != arts_b[f]]
    if changed and not diffs:  # one model exported anew (another exporter, opset): compared
        add(
            Difference.SETUP,
            f"different exported artifacts ({', '.join(changed)}; sha256 differs): those "
            "backends ran different files",
        )
    # Machine.
    unchecked = unrecorded_hardware(a, b)
    if unchecked:
        add(Difference.MACHINE, f"hardware cannot be checked: {unchecked}")
    partial = [
        f"{label} recorded in {'A' if _get(a, *path) is not None else 'B'} only"
        for label, path in _CPU_FIELDS[1:]
        if (_get(a, *path) is None) != (_get(b, *path) is None)
    ]
    if partial and not unchecked:
        add(
            Difference.SETUP,
            f"hardware only partly checked ({', '.join(partial)}): the machines are matched "
            "by what both files record",
        )
    machine = machine_differences(a, b, hardware_fields(a, b))
    host_a, host_b = _get(a, "environment", "host"), _get(b, "environment", "host")
    if machine:
        add(Difference.MACHINE, "different machine: " + ", ".join(machine))
    elif host_a != host_b:
        # Hosts of one hardware (VMs renamed per boot, twin machines): warned, not refused.
        add(
            Difference.SETUP,
            f"different host: {_fmt(host_a)} vs {_fmt(host_b)} (same cpu and gpu model)",
        )
    gpu_software = machine_differences(a, b, _GPU_SOFTWARE_FIELDS)
    if gpu_software:
        add(Difference.SETUP, "different GPU software: " + ", ".join(gpu_software))
    plat_a, plat_b = _get(a, "environment", "platform"), _get(b, "environment", "platform")
    if plat_a != plat_b and plat_a and plat_b:
        add(Difference.SETUP, f"different OS: {plat_a} vs {plat_b}")
    others = [_get(p, "environment", "others_cpu_cores") for p in (a, b)]
    load = [_get(p, "environment", "load_average_1m") for p in (a, b)]
    # Two equally busy runs differ by nothing the next check sees, yet both figures are noisy:
    # a side busy by bench's own rule (a quarter of the cores) is named whatever the other says.
    for busy in busy_sides(a, b):
        add(Difference.SETUP, f"{busy}, so its figures are noisy (bench warned)")
    loaded = [
        side for side, run in (("A", a), ("B", b)) if any(c.get("load") for c in run["cells"])
    ]
    if loaded:  # not silently: a reader may take the verdicts for the latency under load too
        add(
            Difference.SETUP,
            f"{' and '.join(loaded)} {'hold' if len(loaded) > 1 else 'holds'} figures under load "
            "(bench --load): compare judges the unloaded figures only (`alexbench report` shows "
            "those under load)",
        )
    during = [_get(p, "environment", "others_cpu_cores_during") for p in (a, b)]
    if all(isinstance(v, int | float) for v in during):
        # Averaged over each whole run: work that started during one counts too.
        if abs(during[0] - during[1]) >= BUSIER_OTHERS:
            add(
                Difference.SETUP,
                f"other processes used {during[0]:.1f} (A) vs {during[1]:.1f} (B) cores on "
                "average while the runs ran: the busier one may have been slowed",
            )
    elif all(isinstance(v, int | float) for v in others):
        # Sampled when each run started: unlike the load average, no residue of earlier work.
        if abs(others[0] - others[1]) >= BUSIER_OTHERS:
            add(
                Difference.SETUP,
                f"other processes used {others[0]:.1f} (A) vs {others[1]:.1f} (B) cores when "
                "the runs started: the busier one may have been slowed",
            )
    elif all(isinstance(v, int | float) for v in load) and abs(load[0] - load[1]) >= BUSIER_LOAD:
        # One runnable process more on a 2-core machine takes half of it from the cells.
        add(
            Difference.SETUP,
            f"machine load differed when the runs started: 1-minute load average {load[0]:g} "
            f"(A) vs {load[1]:g} (B): other work, or the residue of a run just before (a "
            "sweep started right after another inherits its load), may slow the busier one",
        )
    # Library versions.
    ver_a = _get(a, "environment", "versions") or {}
    ver_b = _get(b, "environment", "versions") or {}
    vdiff = [
        f"{name} {_fmt(ver_a.get(name))} vs {_fmt(ver_b.get(name))}"
        for name in dict.fromkeys([*ver_a, *ver_b])
        if ver_a.get(name) != ver_b.get(name)
    ]
    if vdiff:
        add(Difference.SETUP, "different library versions: " + ", ".join(vdiff))
    # Threads.
    threads = []
    for label, path in (
        ("--threads", ("settings", "options", "threads")),
        ("torch threads", ("environment", "torch_threads")),
        ("torch inter-op threads", ("environment", "torch_interop_threads")),
        ("OMP_NUM_THREADS", ("environment", "env", "OMP_NUM_THREADS")),
        ("MKL_NUM_THREADS", ("environment", "env", "MKL_NUM_THREADS")),
    ):
        va, vb = _get(a, *path), _get(b, *path)
        if va != vb:
            threads.append(f"{label} {_fmt(va)} vs {_fmt(vb)}")
    if threads:
        add(Difference.SETUP, "different thread settings: " + ", ".join(threads))
    env_a = _get(a, "environment", "env") or {}
    env_b = _get(b, "environment", "env") or {}
    alloc = [
        f"{k} {_fmt(env_a.get(k))} vs {_fmt(env_b.get(k))}"
        for k in ALLOCATOR_ENV
        if env_a.get(k) != env_b.get(k)
    ]
    if alloc:  # the allocator decides how often large activations are faulted in again
        add(Difference.SETUP, "different memory allocator settings: " + ", ".join(alloc))
    # Other settings that change what is timed.
    opts_a = _get(a, "settings", "options") or {}
    opts_b = _get(b, "settings", "options") or {}
    odiff = [
        f"{k} {_fmt(opts_a.get(k))} vs {_fmt(opts_b.get(k))}"
        for k in dict.fromkeys([*opts_a, *opts_b])
        if k != "threads" and opts_a.get(k) != opts_b.get(k) and _option_applies(k, a, b)
    ]
    if odiff:
        add(Difference.SETUP, "different session options: " + ", ".join(odiff))
    run_a = _get(a, "settings", "run_length") or {}
    run_b = _get(b, "settings", "run_length") or {}
    rdiff = [  # keys both record: warmup_calls is newer than the first results files
        f"{k} {_fmt(run_a[k])} vs {_fmt(run_b[k])}"
        for k in run_a
        if k in run_b and run_a[k] != run_b[k]
    ]
    if rdiff:
        add(Difference.SETUP, "different run length: " + ", ".join(rdiff))
    code_a, code_b = _get(a, "environment", "git_commit"), _get(b, "environment", "git_commit")
    if code_a and code_b and code_a != code_b:  # the timing loop, a runtime's setup may differ
        add(Difference.SETUP, f"different alexbench code: git {code_a} vs {code_b}")
    cell_diffs = cell_setting_differences(a, b)
    if cell_diffs:
        shown = "; ".join(cell_diffs[:MAX_CELLS_NAMED])
        more = len(cell_diffs) - MAX_CELLS_NAMED
        add(
            Difference.SETUP,
            f"different cell settings in {len(cell_diffs)} matched cell(s): {shown}"
            + (f"; and {more} more" if more > 0 else ""),
        )
    if same_run(a, b):
        add(
            Difference.SETUP,
            f"A and B hold the same run (created {_fmt(a.get('created'))}, the same "
            "latencies: one file, or a copy of it): every ratio is 1 by construction",
        )
    # Completeness.
    for side, payload in (("A", a), ("B", b)):
        if not is_complete(payload):
            add(Difference.SETUP, f"{side} is incomplete {incomplete_description(payload)}")
    # Model and machine first: what compare refuses, then what it warns of.
    order = list(Difference)
    return sorted(out, key=lambda d: order.index(d.kind))


def refusal(
    a: dict[str, Any],
    b: dict[str, Any],
    allow_different_machines: bool = False,
    allow_different_models: bool = False,
) -> str | None:
    """Why `compare` will not judge B against A, in one line (None: it will). Figures taken on
    different hardware or of different models differ for reasons no interval accounts for, so
    a faster/slower verdict between them (and a --fail-on-regression exit) would mislead."""
    parts = []
    diffs = run_differences(a, b)
    if not allow_different_machines and any(d.kind is Difference.MACHINE for d in diffs):
        cpu_a, cpu_b = (_get(r, "environment", "cpu", "model") for r in (a, b))
        gpu_a, gpu_b = (_get(r, "environment", "gpu", "name") for r in (a, b))
        unchecked = unrecorded_hardware(a, b)
        if unchecked:
            where = f"{unchecked}: the runs cannot be shown to come from one machine"
        elif cpu_a and cpu_b and cpu_a != cpu_b:
            where = f"A ran on {cpu_a}, B on {cpu_b}"
        elif gpu_a != gpu_b and hardware_fields(a, b) is _HARDWARE_FIELDS:
            where = f"A ran on {gpu_a or 'no GPU'}, B on {gpu_b or 'no GPU'}"
        else:  # one CPU name, other hardware: say which fields differ
            what = ", ".join(machine_differences(a, b, hardware_fields(a, b)))
            where = f"A and B ran on different machines ({what})"
        parts.append(
            f"{where}: figures from different machines are not comparable "
            "(--allow-different-machines to compare anyway)"
        )
    if not allow_different_models:
        model = next((d for d in diffs if d.kind is Difference.MODEL), None)
        if model is not None:
            what = model.text.removeprefix("different model: ")
            parts.append(
                f"A and B timed different models ({what}): their figures are not comparable "
                "(--allow-different-models to compare anyway)"
            )
    return "; ".join(parts) or None
