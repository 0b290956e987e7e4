"""`alexbench tune`: search backend x precision x threads (and the runtime options that matter) for
the fastest configuration that passes parity, per batch size, within a time budget.

The search is a pure function of a `measure(candidate, batches) -> cells` callable: the CLI hands
it one that runs the bench sweep (`sweep_measure`: one `BenchSpec` per candidate, parity checked
by the sweep, so tune has no timing loop of its own); tests hand it a stand-in with known speeds.

Order, so that a cut by the budget drops the least promising candidates:

1. **First pass**: every available (backend, precision) once, at the first thread count and the
   runtime's default options. fp32 of every runtime comes first (a tight budget still compares
   the runtimes at the precision that always passes parity); the other precisions follow, those
   of the runtimes that did best at fp32 first (a runtime not measured yet counts as promising:
   it may be the best); torch.compile last (it compiles per batch size, so its first try costs
   the most).
2. **Variants** of the first pass's passing configurations, the most promising first (ranked by
   how close each came to the fastest at any batch): the other thread counts, torch.compile's
   other modes, CUDA graphs on CUDA. A configuration that reached less than `PRUNE_BELOW` of the
   fastest at every batch gets no variants: a thread count or mode does not close such a gap.

Before each candidate its cost is estimated from what was measured; one that would not fit in
what is left of the budget is not tried (and said so), and the search goes on to cheaper ones.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from alexbench.bench.stats import MIN_ITERS_FOR_PERCENTILE, LatencyStats
from alexbench.bench.sweep import BenchSpec, CellResult, CellStatus, iter_sweep
from alexbench.bench.timer import RunLength
from alexbench.devices import Device
from alexbench.errors import Interrupted
from alexbench.evaluate import REFERENCE, EvalReport
from alexbench.evaluate import CellStatus as EvalStatus
from alexbench.precision import Precision
from alexbench.runtimes import Backend, ModelBundle, SessionOptions
from alexbench.runtimes.base import CompileMode
from alexbench.tables import Column, Entry, TableData, Tone

TUNE_SCHEMA = "alexbench-tune/1"  # the JSON `tune --out` writes
DEFAULT_TIME_BUDGET_S = 600.0
# A first-pass configuration below this share of the fastest throughput at every batch gets no
# variants: fewer or more threads, or another compile mode, rarely buy 2x.
PRUNE_BELOW = 0.5
# Cost guesses for what has not been measured yet (each replaced by a measurement once one
# exists): a runtime never tried costs up to twice the slowest trial so far (loading, exporting
# nothing, but e.g. compiling); a non-default torch.compile mode autotunes kernels per shape.
UNKNOWN_RUNTIME_FACTOR = 2.0
COMPILE_MODE_FACTOR = 3.0
# torch.compile's first try compiles once per batch size, whatever the other runtimes cost: 25 s
# for two batch sizes on the 2-core Xeon VM, where twice the slowest other trial guessed 7 s.
COMPILE_S_PER_BATCH = 10.0
# Below this many timed calls a p99 is an interpolation between the slowest calls seen (bench
# leaves such a p99 out of its tables).
P99_MIN_SAMPLES = MIN_ITERS_FOR_PERCENTILE[99]
# torch.compile gets its modes tried; it is also the runtime whose first try costs the most.
COMPILING = Backend.COMPILE


class Stage(StrEnum):
    FIRST_PASS = "first-pass"
    VARIANT = "variant"


class NotTriedReason(StrEnum):
    UNAVAILABLE = "unavailable"  # the runtime, device, precision or artifact is not here
    ACCURACY = "accuracy"  # the precision loses more top-1 than --max-accuracy-drop allows
    BUDGET = "budget"  # it would not have finished within --time-budget
    PRUNED = "pruned"  # its first-pass configuration failed or was far from the fastest
    INTERRUPTED = "interrupted"  # SIGINT or SIGTERM stopped the search during or before it


@dataclass(frozen=True)
class Candidate:
    """One configuration: what `alexbench bench` needs to measure it again."""

    backend: Backend
    precision: Precision
    device: Device
    threads: int | None = None  # None: the libraries' default (only where no count is given)
    compile_mode: CompileMode = CompileMode.DEFAULT  # torch.compile only
    cuda_graphs: bool = False  # CUDA only

    @property
    def pair(self) -> tuple[Backend, Precision]:
        return (self.backend, self.precision)

    @property
    def option_text(self) -> str:
        """The options beyond backend, precision and threads, in words ("" when none)."""
        parts = []
        if self.backend is COMPILING and self.compile_mode is not CompileMode.DEFAULT:
            parts.append(f"mode {self.compile_mode.value}")
        if self.cuda_graphs:
            parts.append("cuda graphs")
        return ", ".join(parts)

    @property
    def label(self) -> str:
        n = self.threads
        threads = "default threads" if n is None else f"{n} thread" + ("" if n == 1 else "s")
        extra = self.option_text
        return f"{self.backend.value}/{self.precision.value}, {threads}" + (
            f", {extra}" if extra else ""
        )

    def options(self) -> SessionOptions:
        # cudnn_benchmark on: bench's default, so the reproducing command measures the same.
        return SessionOptions(
            threads=self.threads,
            cudnn_benchmark=True,
            cuda_graphs=self.cuda_graphs,
            compile_mode=self.compile_mode,
        )

    def bench_command(
        self, batch: int, model_args: Sequence[str] = (), run_args: Sequence[str] = ()
    ) -> str:
        """The `alexbench bench` command that measures this configuration at `batch`."""
        args = ["alexbench", "bench", "--backend", self.backend.value]
        args += ["--precision", self.precision.value, "--batch", str(batch)]
        args += ["--device", self.device.value]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        if self.backend is COMPILING and self.compile_mode is not CompileMode.DEFAULT:
            args += ["--compile-mode", self.compile_mode.value]
        if self.cuda_graphs:
            args.append("--cuda-graphs")
        return shlex.join([*args, *run_args, *model_args])

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend.value,
            "precision": self.precision.value,
            "device": self.device.value,
            "threads": self.threads,
            "compile_mode": self.compile_mode.value,
            "cuda_graphs": self.cuda_graphs,
            "label": self.label,
        }


@dataclass(frozen=True)
class SearchSpace:
    """What may be tried on one device: runnable (backend, precision) pairs in first-pass order,
    thread counts (the first is the first pass's), torch.compile's distinct modes (the first is
    the first pass's), and the backends that get a CUDA-graph variant."""

    device: Device
    pairs: tuple[tuple[Backend, Precision], ...]
    threads: tuple[int | None, ...] = (None,)
    compile_modes: tuple[CompileMode, ...] = (CompileMode.DEFAULT,)
    cuda_graph_backends: frozenset[Backend] = frozenset()
    unavailable: tuple[tuple[Backend, Precision, str], ...] = ()  # pairs that cannot run, why

    def first_pass(self) -> list[Candidate]:
        mode = self.compile_modes[0]
        return [
            Candidate(
                b,
                p,
                self.device,
                self.threads[0],
                mode if b is COMPILING else CompileMode.DEFAULT,
            )
            for b, p in self.pairs
        ]

    def variants(self, parent: Candidate) -> list[Candidate]:
        """The parent's other thread counts, then (compile) its other modes, then (CUDA) CUDA
        graphs: each changes one setting of the parent, so its effect is measured alone."""
        out = [replace(parent, threads=t) for t in self.threads if t != parent.threads]
        if parent.backend is COMPILING:
            out += [replace(parent, compile_mode=m) for m in self.compile_modes[1:]]
        if parent.backend in self.cuda_graph_backends and not parent.cuda_graphs:
            out.append(replace(parent, cuda_graphs=True))
        return out


def search_space(
    device: Device,
    backends: Iterable[Backend],
    precisions: Iterable[Precision],
    threads: Sequence[int | None],
    unavailable: Callable[[Backend, Precision], str | None],
    *,
    compile_modes: Sequence[CompileMode] = (CompileMode.DEFAULT,),
    cuda_graph_backends: Iterable[Backend] = (),
) -> SearchSpace:
    """Every backend x precision that `unavailable` does not rule out, in first-pass order:
    torch.compile last, then by precision (fp32 of every runtime first, whatever the order of
    `precisions`; the rest in that order), then by backend."""
    backends, precisions = list(backends), list(precisions)
    runnable, skipped = [], []
    for b in backends:
        for p in precisions:
            why = unavailable(b, p)
            if why:
                skipped.append((b, p, why))
            else:
                runnable.append((b, p))
    runnable.sort(
        key=lambda bp: (
            bp[0] is COMPILING, bp[1] is not Precision.FP32,  # whatever order --precision has
            precisions.index(bp[1]), backends.index(bp[0]),
        )
    )  # fmt: skip
    return SearchSpace(
        device, tuple(runnable), tuple(threads) or (None,), tuple(compile_modes),
        frozenset(cuda_graph_backends), tuple(skipped),
    )  # fmt: skip


# ------------------------------------------------------------------ measurements

Measure = Callable[[Candidate, Sequence[int]], list[CellResult]]


def sweep_measure(
    bundle: ModelBundle,
    run_length: RunLength,
    seed: int = 0,
    on_label: Callable[[str], None] | None = None,
) -> Measure:
    """`measure` through the bench sweep: one BenchSpec per candidate (one session, every batch
    size, parity checked against eager fp32 first); `on_label` hears what is running."""

    references: dict = {}  # the eager reference, made once for every candidate's inputs

    def measure(candidate: Candidate, batches: Sequence[int]) -> list[CellResult]:
        spec = BenchSpec(
            [candidate.backend], [candidate.device], [candidate.precision], list(batches),
            run_length, candidate.options(), seed,
        )  # fmt: skip

        def on_cell(_cell: CellResult | None, label: str) -> None:
            if on_label is not None:
                on_label(label)

        return list(iter_sweep(bundle, spec, on_cell, references))

    return measure


@dataclass
class Trial:
    """A candidate measured at every batch size: its cells, and what it cost."""

    candidate: Candidate
    stage: Stage
    cells: list[CellResult]
    seconds: float
    estimate_s: float | None = None  # what the budget check expected it to cost

    def cell(self, batch: int) -> CellResult | None:
        return next((c for c in self.cells if c.batch == batch), None)

    def passed(self, batch: int) -> CellResult | None:
        """The cell at `batch` when it passed parity (and was timed), else None."""
        c = self.cell(batch)
        return c if c is not None and c.status is CellStatus.OK and c.stats else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "stage": self.stage.value,
            "seconds": round(self.seconds, 3),
            "estimate_s": None if self.estimate_s is None else round(self.estimate_s, 3),
            "cells": [c.to_dict() for c in self.cells],
        }


@dataclass(frozen=True)
class NotTried:
    candidate: Candidate
    reason: NotTriedReason
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "reason": self.reason.value,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Pick:
    """The chosen configuration at one batch size."""

    batch: int
    trial: Trial
    cell: CellResult
    # The runner-up when the two medians' 95% intervals overlap (or one has none): which of
    # the two is faster is not settled by this run; `rival_why` says which of the two it was.
    rival: Trial | None = None
    by_p99: bool = False  # chosen for its p99 (--latency-budget-ms): remeasured with a real one
    rival_why: str = ""

    @property
    def p99_from_few_calls(self) -> bool:
        return _stats(self.cell).iterations < P99_MIN_SAMPLES

    def command(self, model_args: Sequence[str] = ()) -> str:
        run = ["--min-iters", str(P99_MIN_SAMPLES)] if self.by_p99 else []
        return self.trial.candidate.bench_command(self.batch, model_args, run)

    def to_dict(self, model_args: Sequence[str] = ()) -> dict[str, Any]:
        s = _stats(self.cell)
        return {
            "batch": self.batch,
            "candidate": self.trial.candidate.to_dict(),
            "throughput": s.throughput,
            "p50_ms": s.p50_ms,
            "p99_ms": s.p99_ms,
            "iterations": s.iterations,
            "p99_from_few_calls": self.p99_from_few_calls,
            "toss_up_with": None if self.rival is None else self.rival.candidate.to_dict(),
            "toss_up_why": self.rival_why or None,
            "command": self.command(model_args),
        }


@dataclass(frozen=True)
class PairAccuracy:
    """Top-1 of one (backend, precision) on held-out images, and its drop against eager fp32."""

    top1: float | None
    drop_pp: float | None  # percentage points below the eager fp32 reference
    reason: str = ""  # why it was not measured


def accuracy_by_pair(report: EvalReport) -> dict[tuple[Backend, Precision], PairAccuracy]:
    """Per (backend, precision) of an `evaluate_model` report: top-1 and its drop in points."""
    ref = next(c for c in report.cells if (c.backend, c.precision) == REFERENCE)
    out = {}
    for c in report.cells:
        if c.status is EvalStatus.OK and c.top1 is not None and ref.top1 is not None:
            out[(c.backend, c.precision)] = PairAccuracy(c.top1, 100 * (ref.top1 - c.top1))
        else:
            out[(c.backend, c.precision)] = PairAccuracy(None, None, c.reason or c.status.value)
    return out


@dataclass
class TuneResult:
    device: Device
    batches: list[int]
    budget_s: float
    elapsed_s: float
    trials: list[Trial]
    not_tried: list[NotTried]
    winners: dict[int, Pick]  # batch -> fastest passing configuration (batches with one only)
    latency_budget_ms: float | None = None
    latency_pick: Pick | None = None  # largest batch whose p99 fits, and its fastest config
    accuracy: dict[tuple[Backend, Precision], PairAccuracy] = field(default_factory=dict)
    max_accuracy_drop_pp: float | None = None
    interrupted: Interrupted | None = None  # the signal that stopped the search early

    def ranking(self, batch: int) -> list[tuple[Trial, CellResult]]:
        """Every trial's cell at `batch`: passing ones by throughput (fastest first), then the
        failed ones in the order they ran."""
        return _ranked(self.trials, batch)

    @property
    def found(self) -> bool:
        """What the command was asked for exists: a latency pick under --latency-budget-ms,
        else a winner at some batch."""
        if self.latency_budget_ms is not None:
            return self.latency_pick is not None
        return bool(self.winners)

    def to_dict(self, model_args: Sequence[str] = ()) -> dict[str, Any]:
        return {
            "device": self.device.value,
            "batches": self.batches,
            "time_budget_s": self.budget_s,
            "elapsed_s": round(self.elapsed_s, 3),
            # an interrupted search ranks only the trials that finished
            "complete": self.interrupted is None,
            "interrupted": self.interrupted.signal_name if self.interrupted else None,
            "trials": [t.to_dict() for t in self.trials],
            "not_tried": [n.to_dict() for n in self.not_tried],
            "winners": [self.winners[b].to_dict(model_args) for b in sorted(self.winners)],
            "latency_budget_ms": self.latency_budget_ms,
            "latency_pick": self.latency_pick.to_dict(model_args) if self.latency_pick else None,
            "max_accuracy_drop_pp": self.max_accuracy_drop_pp,
            "accuracy": [
                {
                    "backend": b.value,
                    "precision": p.value,
                    "top1": a.top1,
                    "drop_pp": a.drop_pp,
                    "reason": a.reason,
                }
                for (b, p), a in self.accuracy.items()
            ],
        }


def _stats(cell: CellResult) -> LatencyStats:
    if cell.stats is None:
        raise ValueError(f"{cell.key}: not timed")  # only timed cells are ranked or picked
    return cell.stats


def _ranked(trials: Sequence[Trial], batch: int) -> list[tuple[Trial, CellResult]]:
    passing = [(t, c) for t in trials if (c := t.passed(batch)) is not None]
    passing.sort(key=lambda tc: -_stats(tc[1]).throughput)
    failing = [
        (t, c) for t in trials if (c := t.cell(batch)) is not None and t.passed(batch) is None
    ]
    return passing + failing


# ------------------------------------------------------------------ the search

OnStart = Callable[[Candidate, int, int], None]  # (candidate, trials done, trials planned)


def tune(
    space: SearchSpace,
    batches: Sequence[int],
    measure: Measure,
    budget_s: float,
    *,
    latency_budget_ms: float | None = None,
    accuracy: Mapping[tuple[Backend, Precision], PairAccuracy] | None = None,
    max_accuracy_drop_pp: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    started: float | None = None,
    on_start: OnStart | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuneResult:
    """Search `space` within `budget_s` seconds (counted from `started`, default now, by `clock`)
    and pick the fastest passing configuration per batch size.

    With `max_accuracy_drop_pp`, pairs whose top-1 in `accuracy` is more than that many points
    below eager fp32 (or was not measured) are not tried. With `latency_budget_ms`, the pick is
    the largest batch whose p99 fits, with its fastest passing configuration there.
    """
    if not budget_s > 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    start = clock() if started is None else started
    accuracy = dict(accuracy or {})
    trials: list[Trial] = []
    not_tried: list[NotTried] = []
    first = space.first_pass()
    for b, p, why in space.unavailable:
        candidate = Candidate(b, p, space.device, space.threads[0])
        not_tried.append(NotTried(candidate, NotTriedReason.UNAVAILABLE, why))
    excluded = _accuracy_exclusions(space.pairs, accuracy, max_accuracy_drop_pp)
    planned = len([c for c in first if c.pair not in excluded])

    stopped: list[Interrupted] = []  # the signal that ended the search, once one came

    def not_started() -> str:
        return f"not started: the search was stopped by {stopped[0].signal_name}"

    def attempt(candidate: Candidate, stage: Stage) -> None:
        nonlocal planned
        if stopped:
            not_tried.append(NotTried(candidate, NotTriedReason.INTERRUPTED, not_started()))
            return
        left = budget_s - (clock() - start)
        estimate = estimate_cost(candidate, trials, len(batches))
        if left <= 0 or (estimate is not None and estimate > left):
            guess = "" if estimate is None else f"estimated {estimate:.0f} s, "
            detail = f"{guess}{max(left, 0):.0f} s of the {budget_s:g} s budget left"
            not_tried.append(NotTried(candidate, NotTriedReason.BUDGET, detail))
            planned -= 1  # the progress count: one trial fewer to come
            return
        if on_start is not None:
            on_start(candidate, len(trials), planned)
        t0 = clock()
        try:
            cells = measure(candidate, list(batches))
        except Interrupted as e:  # the finished trials are kept, ranked and saved
            stopped.append(e)
            detail = f"stopped by {e.signal_name} during its trial"
            not_tried.append(NotTried(candidate, NotTriedReason.INTERRUPTED, detail))
            return
        trial = Trial(candidate, stage, cells, clock() - t0, estimate)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)

    def first_pass(candidates: Iterable[Candidate]) -> None:
        for candidate in candidates:
            if candidate.pair in excluded:
                reason = NotTriedReason.ACCURACY
                not_tried.append(NotTried(candidate, reason, excluded[candidate.pair]))
            else:
                attempt(candidate, Stage.FIRST_PASS)

    lead = [c for c in first if c.precision is first[0].precision and c.backend is not COMPILING]
    first_pass(lead)
    rest = [c for c in first if c not in lead]
    # Stable: equally promising runtimes keep the space's order (precision, then backend).
    rest.sort(key=lambda c: (c.backend is COMPILING, -_runtime_promise(c.backend, trials, batches)))
    first_pass(rest)

    # Stopped: the variants of a parent the signal kept from running are not tried for it too.
    unrun = (NotTriedReason.INTERRUPTED, not_started()) if stopped else _PARENT_NOT_TRIED
    queue = _variants_in_order(space, first, trials, batches, not_tried, excluded, unrun)
    planned += len(queue)
    for candidate in queue:
        attempt(candidate, Stage.VARIANT)

    winners = {b: _pick(b, ranked) for b in batches if (ranked := _passing(trials, b))}
    pick = None
    if latency_budget_ms is not None:
        pick = _latency_pick(trials, batches, latency_budget_ms)
    return TuneResult(
        space.device, list(batches), budget_s, clock() - start, trials, not_tried, winners,
        latency_budget_ms, pick, accuracy, max_accuracy_drop_pp, stopped[0] if stopped else None,
    )  # fmt: skip


def _accuracy_exclusions(
    pairs: Iterable[tuple[Backend, Precision]],
    accuracy: Mapping[tuple[Backend, Precision], PairAccuracy],
    max_drop_pp: float | None,
) -> dict[tuple[Backend, Precision], str]:
    if max_drop_pp is None:
        return {}
    out = {}
    for pair in pairs:
        acc = accuracy.get(pair)
        if acc is None or acc.drop_pp is None:
            out[pair] = f"accuracy not measured ({acc.reason if acc else 'no result'})"
        elif acc.drop_pp > max_drop_pp + 1e-9:  # float noise must not exclude an equal drop
            out[pair] = f"top-1 drop {acc.drop_pp:.2f} pp > {max_drop_pp:g} pp"
    return out


def _passing(trials: Sequence[Trial], batch: int) -> list[tuple[Trial, CellResult]]:
    return [(t, c) for t, c in _ranked(trials, batch) if c.status is CellStatus.OK]


# Why a pick's runner-up is called a toss-up (said after "a toss-up with X: ").
OVERLAP = "their medians' 95% intervals overlap on this short run"
NO_INTERVAL = "too few timed calls for a 95% interval of a median (6 at least)"


def _pick(batch: int, ranked: Sequence[tuple[Trial, CellResult]], by_p99: bool = False) -> Pick:
    """The first of `ranked` (fastest first), with the runner-up as its rival when the order of
    the two may be noise: their medians' 95% intervals overlap, or one has none."""
    (trial, cell), rival, why = ranked[0], None, ""
    if len(ranked) > 1:
        best, second = _stats(cell), _stats(ranked[1][1])
        high, low = best.p50_ci_high_ms, second.p50_ci_low_ms
        if high is None or low is None:
            rival, why = ranked[1][0], NO_INTERVAL
        elif high >= low:
            rival, why = ranked[1][0], OVERLAP
    return Pick(batch, trial, cell, rival, by_p99, why)


def _latency_pick(trials: Sequence[Trial], batches: Sequence[int], budget_ms: float) -> Pick | None:
    for batch in sorted(batches, reverse=True):
        fits = [(t, c) for t, c in _passing(trials, batch) if _stats(c).p99_ms <= budget_ms]
        if fits:
            return _pick(batch, fits, by_p99=True)  # ranked: the fastest of those that fit
    return None


def promise(trial: Trial, trials: Sequence[Trial], batches: Sequence[int]) -> float:
    """How close `trial` came to the fastest passing throughput at its best batch (1.0: it was
    the fastest somewhere; 0.0: it passed nowhere)."""
    best = 0.0
    for b in batches:
        mine = trial.passed(b)
        ranked = _passing(trials, b)
        if mine is not None and ranked:
            best = max(best, _stats(mine).throughput / _stats(ranked[0][1]).throughput)
    return best


def _runtime_promise(backend: Backend, trials: Sequence[Trial], batches: Sequence[int]) -> float:
    """The best `promise` of `backend`'s trials so far; 1.0 when it has none (untried: it might
    be the fastest, so it is not put behind runtimes known to be slow)."""
    mine = [promise(t, trials, batches) for t in trials if t.candidate.backend is backend]
    return max(mine) if mine else 1.0


_PARENT_NOT_TRIED = (NotTriedReason.BUDGET, "its first-pass configuration was not tried")


def _variants_in_order(
    space: SearchSpace,
    first: Sequence[Candidate],
    trials: Sequence[Trial],
    batches: Sequence[int],
    not_tried: list[NotTried],
    excluded: Mapping[tuple[Backend, Precision], str],
    unrun: tuple[NotTriedReason, str],
) -> list[Candidate]:
    """Variants of the first pass's passing configurations, most promising parent first; the
    variants of the others are recorded as not tried, with why (`unrun`: why for those whose
    parent did not run: the budget, or an interrupt)."""
    measured = {t.candidate: t for t in trials}
    scored: list[tuple[float, Candidate]] = []
    for parent in first:
        variants = space.variants(parent)
        trial = measured.get(parent)
        if parent.pair in excluded:
            why: tuple[NotTriedReason, str] | None = (
                NotTriedReason.ACCURACY,
                excluded[parent.pair],
            )
        elif trial is None:
            why = unrun
        else:
            score = promise(trial, trials, batches)
            if score == 0.0:
                why = (NotTriedReason.PRUNED, "its first-pass configuration passed at no batch")
            elif score < PRUNE_BELOW:
                why = (
                    NotTriedReason.PRUNED,
                    f"its first-pass configuration reached at most {score:.0%} of the fastest",
                )
            else:
                why = None
                scored.append((score, parent))
        if why is not None:
            not_tried += [NotTried(v, *why) for v in variants]
    scored.sort(key=lambda sp: -sp[0])  # stable: equal scores keep the first-pass order
    return [v for _, parent in scored for v in space.variants(parent)]


def estimate_cost(
    candidate: Candidate, trials: Sequence[Trial], batch_sizes: int = 1
) -> float | None:
    """Seconds `candidate` is expected to take at `batch_sizes` batch sizes, from the trials so
    far (None: nothing measured yet, so nothing to go on). Conservative: what costs more is
    rounded up, never down."""
    if not trials:
        return None
    same_pair = [t for t in trials if t.candidate.pair == candidate.pair]
    if same_pair:
        ref = same_pair[0]  # the first-pass configuration this candidate varies
        factor = 1.0
        if (
            candidate.threads
            and ref.candidate.threads
            and candidate.threads < ref.candidate.threads
        ):
            # Fewer threads: cells bound by --min-iters (and loading) take up to that much longer.
            factor *= ref.candidate.threads / candidate.threads
        if candidate.compile_mode is not ref.candidate.compile_mode:
            factor *= COMPILE_MODE_FACTOR
        return ref.seconds * factor
    same_backend = [t.seconds for t in trials if t.candidate.backend is candidate.backend]
    if same_backend:
        return max(same_backend)
    guess = max(t.seconds for t in trials) * UNKNOWN_RUNTIME_FACTOR
    if candidate.backend is COMPILING:
        guess = max(guess, COMPILE_S_PER_BATCH * batch_sizes)
    return guess


# ------------------------------------------------------------------ tables (drawn by report.draw)


P99_FOOTNOTE = (
    f"* p99 from fewer than {P99_MIN_SAMPLES} timed calls: close to the slowest call seen "
    f"(--min-iters {P99_MIN_SAMPLES} for a real p99)"
)


def p99_text(c: CellResult) -> str:
    """A p99 for the tables and lines: marked * when from fewer calls than a p99 needs."""
    s = _stats(c)
    return f"{s.p99_ms:.2f}" + ("*" if s.iterations < P99_MIN_SAMPLES else "")


def batch_table(result: TuneResult, batch: int) -> TableData:
    """The trials at one batch size, ranked, the winner marked."""
    acc = bool(result.accuracy)
    latency = result.latency_budget_ms
    columns = [
        Column("rank", right=False),
        Column("backend", right=False),
        Column("prec", right=False),
        Column("threads"),
        Column("options", right=False, priority=1),
        Column("images/s"),
        Column("p50 ms"),
        Column("p99 ms"),
        *([Column(f"p99 <= {latency:g} ms", right=False)] if latency is not None else []),
        *([Column("top-1 drop", priority=2)] if acc else []),
        Column("trial s", priority=3),
        Column("parity", right=False),
    ]
    ranked = result.ranking(batch)
    t = TableData(
        f"tune — batch {batch} on {result.device.value}: {len(ranked)} configuration(s), "
        "fastest first",
        columns,
        row_class="tune",
    )
    winner = result.winners.get(batch)
    picked = result.latency_pick
    starred = False
    for i, (trial, c) in enumerate(ranked, 1):
        cand = trial.candidate
        ok = c.status is CellStatus.OK and c.stats is not None
        is_winner = winner is not None and winner.trial is trial
        rank = Entry(f"{i} winner" if is_winner else str(i) if ok else "-",
                     Tone.BEST if is_winner else Tone.PLAIN)  # fmt: skip
        head: list[Entry | str] = [
            rank, cand.backend.value, cand.precision.value,
            "default" if cand.threads is None else str(cand.threads), cand.option_text or "-",
        ]  # fmt: skip
        if c.stats is not None and c.status is not CellStatus.ERROR:
            tone = Tone.PLAIN if ok else Tone.VOID  # a failed cell's speed must not be quoted
            figures: list[Entry | str] = [
                Entry(f"{c.stats.throughput:,.1f}", Tone.BEST if is_winner else tone),
                Entry(f"{c.stats.p50_ms:.2f}", tone),
                Entry(p99_text(c), tone),
            ]
            starred |= c.stats.iterations < P99_MIN_SAMPLES
        else:
            figures = ["-", "-", "-"]
        if latency is not None:
            if ok:
                fits = _stats(c).p99_ms <= latency
                is_pick = picked is not None and picked.trial is trial and picked.batch == batch
                word = "picked" if is_pick else "yes" if fits else "no"
                figures.append(
                    Entry(word, Tone.BEST if is_pick else Tone.GOOD if fits else Tone.DIM)
                )
            else:
                figures.append("-")
        if acc:
            a = result.accuracy.get(cand.pair)
            figures.append("-" if a is None or a.drop_pp is None else f"{a.drop_pp:+.2f} pp")
        word = {CellStatus.OK: ("PASS", Tone.GOOD), CellStatus.PARITY_FAILED: ("FAIL", Tone.BAD)}
        text, tone = word.get(c.status, (c.status.value.upper(), Tone.BAD))
        t.add([*head, *figures, f"{trial.seconds:.1f}", Entry(text, tone)], f"{batch}/{cand.label}")
        if c.status is not CellStatus.OK:
            t.notes.append(f"{text} {cand.label}: {c.reason}")
    if starred:
        t.notes.append(P99_FOOTNOTE)
    if acc:
        t.notes.append("top-1 drop: points of held-out top-1 below eager fp32")
    return t


def not_tried_table(result: TuneResult) -> TableData | None:
    """Candidates the search left out (budget, pruning, accuracy), or None when none was. Pairs
    that cannot run here are not listed (`unavailable_count`; the JSON document has each)."""
    rows = [n for n in result.not_tried if n.reason is not NotTriedReason.UNAVAILABLE]
    if not rows:
        return None
    t = TableData(
        f"not tried: {len(rows)} configuration(s)",
        [Column("configuration", right=False), Column("why", right=False),
         Column("detail", right=False, priority=1)],
        row_class="tune-not-tried",
    )  # fmt: skip
    for n in rows:
        t.add([n.candidate.label, n.reason.value, n.detail], n.candidate.label)
    return t


def unavailable_count(result: TuneResult) -> int:
    return sum(n.reason is NotTriedReason.UNAVAILABLE for n in result.not_tried)
