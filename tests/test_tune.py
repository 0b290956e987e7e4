"""`alexbench tune`: the search on a stand-in `measure` whose answer is known (which candidate is
faster, what the budget allows, which batch fits a latency budget, parity failures never win,
accuracy exclusions), then the command end to end with the real runtimes on the small model."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from alexbench import tune as tune_module
from alexbench.bench.stats import compute_stats
from alexbench.bench.sweep import CellResult, CellStatus
from alexbench.cli import app
from alexbench.devices import Device
from alexbench.errors import Interrupted
from alexbench.evaluate import CellStatus as EvalStatus
from alexbench.evaluate import EvalCell, EvalReport
from alexbench.precision import Precision
from alexbench.runtimes import Backend
from alexbench.runtimes.base import CompileMode
from alexbench.tune import (
    COMPILE_MODE_FACTOR,
    COMPILE_S_PER_BATCH,
    PRUNE_BELOW,
    UNKNOWN_RUNTIME_FACTOR,
    Candidate,
    NotTriedReason,
    Stage,
    Trial,
    accuracy_by_pair,
    batch_table,
    estimate_cost,
    search_space,
    tune,
)

CPU = Device.CPU
E, T, ORT, C = Backend.EAGER, Backend.TORCHSCRIPT, Backend.ONNXRUNTIME, Backend.COMPILE
FP32, BF16, INT8 = Precision.FP32, Precision.BF16, Precision.INT8
runner = CliRunner()


class FakeClock:
    """Seconds that pass only when a stand-in measurement says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class StandIn:
    """A `measure` with known answers: latency in ms per (backend, precision, threads, batch)
    (a constant, so p50 = p99 = that value), a fixed cost in seconds per trial, and the pairs
    whose cells fail parity. Records what it was asked to measure."""

    def __init__(
        self,
        latency_ms: dict[tuple[Backend, Precision], dict[int, float]],
        clock: FakeClock,
        cost_s: float | dict[Backend, float] = 1.0,
        failing: Sequence[tuple[Backend, Precision]] = (),
        thread_speedup: dict[int, float] | None = None,
        spread: float = 0.0,
        calls: int = 20,
    ) -> None:
        self.latency_ms, self.clock, self.cost_s = latency_ms, clock, cost_s
        self.n_calls = calls  # timed calls per cell
        self.spread = spread  # calls spread evenly over ms * (1 +- spread) (0: all equal)
        self.failing = set(failing)
        self.thread_speedup = thread_speedup or {}
        self.calls: list[Candidate] = []

    def __call__(self, c: Candidate, batches: Sequence[int]) -> list[CellResult]:
        self.calls.append(c)
        cost = self.cost_s if isinstance(self.cost_s, float) else self.cost_s[c.backend]
        self.clock.now += cost
        cells = []
        for b in batches:
            ms = self.latency_ms[c.pair][b] / self.thread_speedup.get(c.threads or 0, 1.0)
            spread = np.linspace(1 - self.spread, 1 + self.spread, self.n_calls)
            lat = (spread * ms * 1e6).astype(np.int64)
            status = CellStatus.PARITY_FAILED if c.pair in self.failing else CellStatus.OK
            cell = CellResult(c.backend, c.device, c.precision, b, status)
            cell.stats = compute_stats(lat, b, int(lat.sum()))
            cell.latencies_ns = lat.tolist()
            cells.append(cell)
        return cells


def space(pairs, threads=(2,), unavailable=None, modes=(CompileMode.DEFAULT,)):
    backends = list(dict.fromkeys(b for b, _ in pairs))
    precisions = list(dict.fromkeys(p for _, p in pairs))
    wanted = set(pairs)

    def why(b: Backend, p: Precision) -> str | None:
        if unavailable and (b, p) in unavailable:
            return unavailable[(b, p)]
        return None if (b, p) in wanted else "not in this test"

    return search_space(CPU, backends, precisions, threads, why, compile_modes=modes)


# ---------------------------------------------------------------- the search, known answers


def test_picks_the_faster_candidate_at_each_batch_and_the_command_reproduces_it():
    clock = FakeClock()
    # onnxruntime is twice as fast at batch 1; eager is faster at batch 16.
    measure = StandIn({(E, FP32): {1: 10.0, 16: 40.0}, (ORT, FP32): {1: 5.0, 16: 80.0}}, clock)
    result = tune(space([(E, FP32), (ORT, FP32)]), [1, 16], measure, 100.0, clock=clock)
    assert [c.pair for c in measure.calls] == [(E, FP32), (ORT, FP32)]
    assert result.winners[1].trial.candidate.backend is ORT
    assert result.winners[16].trial.candidate.backend is E
    assert result.winners[1].cell.stats.throughput == pytest.approx(1 / 5e-3)
    assert result.winners[1].trial.candidate.bench_command(1, ["--image-size", "64"]) == (
        "alexbench bench --backend onnxruntime --precision fp32 --batch 1 --device cpu "
        "--threads 2 --image-size 64"
    )
    assert [t.candidate.backend for t, _ in result.ranking(1)] == [ORT, E]
    assert result.found and result.elapsed_s == 2.0
    # The table marks the winner and ranks the rest.
    table = batch_table(result, 1)
    assert [r[0].text for r in table.rows] == ["1 winner", "2"]
    assert [r[1].text for r in table.rows] == ["onnxruntime", "eager"]


def test_thread_variants_of_the_leader_come_first_and_can_win():
    clock = FakeClock()
    lat = {(E, FP32): {1: 8.0}, (ORT, FP32): {1: 5.0}, (T, FP32): {1: 50.0}}
    measure = StandIn(lat, clock, thread_speedup={1: 1.25})  # 1 thread is faster here
    result = tune(space(list(lat), threads=(2, 1)), [1], measure, 100.0, clock=clock)
    calls = [(c.backend, c.threads) for c in measure.calls]
    # First pass at 2 threads; then 1 thread for the leader (onnxruntime), then for eager
    # (62% of the fastest); torchscript reached 10%: pruned, not measured at 1 thread.
    assert calls == [(E, 2), (ORT, 2), (T, 2), (ORT, 1), (E, 1)]
    assert [t.stage for t in result.trials] == [Stage.FIRST_PASS] * 3 + [Stage.VARIANT] * 2
    pruned = [n for n in result.not_tried if n.reason is NotTriedReason.PRUNED]
    assert [(n.candidate.backend, n.candidate.threads) for n in pruned] == [(T, 1)]
    assert "10%" in pruned[0].detail and PRUNE_BELOW > 0.1
    winner = result.winners[1].trial.candidate
    assert (winner.backend, winner.threads) == (ORT, 1)


def test_after_fp32_the_precisions_of_the_faster_runtimes_come_first():
    clock = FakeClock()
    pairs = [(E, FP32), (ORT, FP32), (E, BF16), (ORT, INT8), (C, FP32)]
    lat = {(E, FP32): {1: 20.0}, (ORT, FP32): {1: 5.0}, (E, BF16): {1: 10.0},
           (ORT, INT8): {1: 3.0}, (C, FP32): {1: 4.0}}  # fmt: skip
    measure = StandIn(lat, clock)
    tune(space(pairs), [1], measure, 100.0, clock=clock)
    # fp32 of each runtime; then onnxruntime's int8 before eager's bf16 (onnxruntime was 4x
    # faster at fp32), although the space lists bf16 first; compile last all the same.
    assert [c.pair for c in measure.calls] == [
        (E, FP32), (ORT, FP32), (ORT, INT8), (E, BF16), (C, FP32),
    ]  # fmt: skip
    assert [c.pair for c in space(pairs).first_pass()] == [
        (E, FP32), (ORT, FP32), (E, BF16), (ORT, INT8), (C, FP32),
    ]  # fmt: skip


def test_fp32_goes_first_whatever_the_order_precisions_are_given_in():
    clock = FakeClock()
    pairs = [(E, BF16), (ORT, BF16), (E, FP32), (ORT, FP32)]  # as --precision bf16,fp32 gives
    measure = StandIn({p: {1: 5.0} for p in pairs}, clock, cost_s=4.0)
    tune(space(pairs), [1], measure, 13.0, clock=clock)
    # A budget for three trials compares the runtimes at fp32, the precision that always passes
    # (given bf16 first, they ran eager and onnxruntime at bf16, and eager at fp32 only).
    assert [c.pair for c in measure.calls] == [(E, FP32), (ORT, FP32), (E, BF16)]


def test_the_budget_stops_the_search_and_reports_what_was_not_tried():
    clock = FakeClock()
    pairs = [(E, FP32), (T, FP32), (ORT, FP32), (E, BF16)]
    lat = {p: {1: 10.0 + i} for i, p in enumerate(pairs)}
    measure = StandIn(lat, clock, cost_s=10.0)
    result = tune(space(pairs, threads=(2, 1)), [1], measure, 25.0, clock=clock)
    # 10 s each. eager fp32 runs with nothing to estimate from; torchscript and onnxruntime,
    # runtimes not measured yet, are estimated at 2x the slowest trial (20 s > 15 s left) and
    # left out; eager bf16 (a measured runtime: 10 s) still fits and runs.
    assert [t.candidate.pair for t in result.trials] == [(E, FP32), (E, BF16)]
    assert result.trials[0].estimate_s is None and result.trials[1].estimate_s == 10.0
    budget = {(n.candidate.pair, n.candidate.threads): n.detail for n in result.not_tried
              if n.reason is NotTriedReason.BUDGET}  # fmt: skip
    assert budget[((T, FP32), 2)] == "estimated 20 s, 15 s of the 25 s budget left"
    # The 1-thread variants: of the measured two, estimated 20 s with 5 s left; of the others,
    # not tried because their first-pass configuration was not.
    assert budget[((E, FP32), 1)] == "estimated 20 s, 5 s of the 25 s budget left"
    assert budget[((ORT, FP32), 1)] == "its first-pass configuration was not tried"
    assert set(budget) == {
        ((T, FP32), 2), ((ORT, FP32), 2), ((E, FP32), 1), ((E, BF16), 1),
        ((T, FP32), 1), ((ORT, FP32), 1),
    }  # fmt: skip
    assert result.elapsed_s <= 25.0 and result.winners[1].trial.candidate.pair == (E, FP32)


def test_an_interrupt_keeps_the_finished_trials_and_their_winner():
    """Ctrl-C (SIGINT) or SIGTERM during a trial: the trials that finished are kept and ranked,
    the one it stopped and those not started are listed as interrupted (nothing was saved)."""
    clock = FakeClock()
    pairs = [(E, FP32), (ORT, FP32), (T, FP32)]
    inner = StandIn({p: {1: 10.0 - i} for i, p in enumerate(pairs)}, clock)

    def measure(c: Candidate, batches: Sequence[int]) -> list[CellResult]:
        if len(inner.calls) == 2:  # during the third trial
            raise Interrupted("SIGTERM", 143)
        return inner(c, batches)

    result = tune(space(pairs), [1], measure, 100.0, clock=clock)
    assert result.interrupted is not None and result.interrupted.exit_code == 143
    assert [t.candidate.pair for t in result.trials] == [(E, FP32), (ORT, FP32)]
    assert result.winners[1].trial.candidate.pair == (ORT, FP32)
    stopped = [n for n in result.not_tried if n.reason is NotTriedReason.INTERRUPTED]
    assert [n.candidate.pair for n in stopped] == [(T, FP32)]
    assert stopped[0].detail == "stopped by SIGTERM during its trial"
    doc = result.to_dict()
    assert doc["complete"] is False and doc["interrupted"] == "SIGTERM"
    assert tune(space(pairs), [1], inner, 100.0, clock=clock).to_dict()["complete"] is True
    # With thread variants: those of the stopped and unstarted candidates are "interrupted"
    # too, not "budget" (the review found them so), and no budget reason is given at all.
    inner.calls.clear()
    result = tune(space(pairs, threads=(2, 1)), [1], measure, 100.0, clock=clock)
    reasons = {(n.candidate.pair, n.candidate.threads): n.reason for n in result.not_tried}
    assert reasons[((T, FP32), 1)] is NotTriedReason.INTERRUPTED
    assert NotTriedReason.BUDGET not in reasons.values()


def test_an_underestimated_trial_overruns_once_and_nothing_starts_after():
    clock = FakeClock()
    pairs = [(E, FP32), (C, FP32), (ORT, FP32)]
    measure = StandIn({p: {1: 5.0} for p in pairs}, clock, cost_s={E: 4.0, C: 40.0, ORT: 4.0})
    result = tune(space(pairs, threads=(2, 1)), [1], measure, 20.0, clock=clock)
    # compile goes last in the first pass; estimated at its floor for one batch size (10 s,
    # above 2x the slowest trial), it fits the 12 s left, really takes 40 s, and nothing
    # starts once the budget is spent.
    assert [c.backend for c in measure.calls] == [E, ORT, C]
    assert result.trials[-1].estimate_s == COMPILE_S_PER_BATCH and result.elapsed_s == 48.0
    cut = [n for n in result.not_tried if n.reason is NotTriedReason.BUDGET]
    assert {n.candidate.backend for n in cut} == {E, ORT, C} and all(n.candidate.threads == 1
                                                                  for n in cut)  # fmt: skip
    assert all(n.detail == "estimated 8 s, 0 s of the 20 s budget left" for n in cut[:2])


def test_latency_budget_picks_the_largest_batch_whose_p99_fits():
    clock = FakeClock()
    lat = {(E, FP32): {1: 2.0, 8: 9.0, 32: 40.0}, (ORT, FP32): {1: 3.0, 8: 7.0, 32: 30.0}}
    measure = StandIn(lat, clock)
    sp = space(list(lat))
    result = tune(sp, [1, 8, 32], measure, 100.0, latency_budget_ms=10.0, clock=clock)
    pick = result.latency_pick
    assert pick is not None and pick.batch == 8  # batch 32 fits for neither
    assert pick.trial.candidate.backend is ORT  # both fit at 8; onnxruntime is the faster
    assert pick.cell.stats.p99_ms == pytest.approx(7.0)
    assert result.found
    # Its p99 came from 20 calls: said, and the command measures a real one.
    assert pick.p99_from_few_calls and pick.to_dict()["p99_from_few_calls"]
    assert "--min-iters 100" in pick.command() and "--min-iters" not in result.winners[8].command()
    # 35 ms: batch 32 now fits for onnxruntime only.
    result = tune(sp, [1, 8, 32], measure, 100.0, latency_budget_ms=35.0, clock=clock)
    assert (result.latency_pick.batch, result.latency_pick.trial.candidate.backend) == (32, ORT)
    # Below every p99: no pick, and the result says nothing was found.
    result = tune(sp, [1, 8, 32], measure, 100.0, latency_budget_ms=1.0, clock=clock)
    assert result.latency_pick is None and not result.found and result.winners


def test_a_parity_failed_candidate_is_never_the_winner():
    clock = FakeClock()
    lat = {(E, FP32): {1: 10.0}, (ORT, INT8): {1: 1.0}}  # int8 ten times faster, but wrong
    measure = StandIn(lat, clock, failing=[(ORT, INT8)])
    result = tune(space(list(lat), threads=(2, 1)), [1], measure, 100.0,
                  latency_budget_ms=5.0, clock=clock)  # fmt: skip
    assert result.winners[1].trial.candidate.pair == (E, FP32)
    assert result.latency_pick is None  # only the failed candidate is under 5 ms
    # The failed one is ranked after the passing ones (eager at 2 and 1 threads), and gets no
    # variants.
    ranked = [t.candidate.pair for t, _ in result.ranking(1)]
    assert ranked == [(E, FP32), (E, FP32), (ORT, INT8)]
    pruned = [n for n in result.not_tried if n.reason is NotTriedReason.PRUNED]
    assert [n.candidate.pair for n in pruned] == [(ORT, INT8)]
    assert pruned[0].detail == "its first-pass configuration passed at no batch"
    table = batch_table(result, 1)
    assert table.rows[2][0].text == "-" and table.rows[2][-1].text == "FAIL"
    assert any(note.startswith("FAIL onnxruntime/int8") for note in table.notes)
    # With only the failed candidate, there is no winner at all.
    result = tune(space([(ORT, INT8)]), [1], StandIn(lat, clock, failing=[(ORT, INT8)]), 100.0,
                  clock=clock)  # fmt: skip
    assert not result.winners and not result.found


def test_unavailable_pairs_are_skipped_quietly_but_recorded():
    clock = FakeClock()
    lat = {(E, FP32): {1: 10.0}}
    sp = space([(E, FP32), (ORT, INT8)], unavailable={(ORT, INT8): "no onnx-int8 artifact"})
    measure = StandIn(lat, clock)
    result = tune(sp, [1], measure, 100.0, clock=clock)
    assert [c.pair for c in measure.calls] == [(E, FP32)]
    why = {n.candidate.pair: n.detail for n in result.not_tried}
    assert why[(ORT, INT8)] == "no onnx-int8 artifact"
    assert all(n.reason is NotTriedReason.UNAVAILABLE for n in result.not_tried)
    doc = json.loads(json.dumps(result.to_dict()))
    assert {(n["candidate"]["backend"], n["reason"]) for n in doc["not_tried"]} >= {
        ("onnxruntime", "unavailable")
    }
    assert batch_table(result, 1).rows[0][0].text == "1 winner"


def test_accuracy_excludes_precisions_that_lose_too_much_top1():
    # An evaluate report: eager fp32 is the reference (80%); bf16 loses 0.5 pt, int8 3 pt.
    cells = [
        EvalCell(E, FP32, top1=0.80, requested=True),
        EvalCell(E, BF16, top1=0.795),
        EvalCell(ORT, INT8, top1=0.77),
        EvalCell(ORT, FP32, status=EvalStatus.ERROR, reason="crashed"),
    ]
    report = EvalReport(["a"], "val", 200, CPU, cells, [0.8], np.zeros((1, 1)))
    acc = accuracy_by_pair(report)
    assert acc[(E, BF16)].drop_pp == pytest.approx(0.5)
    assert acc[(ORT, INT8)].drop_pp == pytest.approx(3.0) and acc[(ORT, FP32)].drop_pp is None
    clock = FakeClock()
    pairs = [(E, FP32), (E, BF16), (ORT, INT8), (ORT, FP32)]
    lat = {p: {1: 10.0 - i} for i, p in enumerate(pairs)}  # the lossier, the faster
    measure = StandIn(lat, clock)
    result = tune(space(pairs, threads=(2, 1)), [1], measure, 100.0, accuracy=acc,
                  max_accuracy_drop_pp=1.0, clock=clock)  # fmt: skip
    assert {c.pair for c in measure.calls} == {(E, FP32), (E, BF16)}
    assert result.winners[1].trial.candidate.pair == (E, BF16)
    excluded = {n.candidate.pair: n.detail for n in result.not_tried
                if n.reason is NotTriedReason.ACCURACY}  # fmt: skip
    assert set(excluded) == {(ORT, INT8), (ORT, FP32)}  # variants (1 thread) included
    assert "3.00 pp > 1 pp" in excluded[(ORT, INT8)] and "crashed" in excluded[(ORT, FP32)]
    # Without a limit, the same accuracy is reported but nothing is excluded.
    result = tune(space(pairs), [1], StandIn(lat, clock), 100.0, accuracy=acc, clock=clock)
    assert result.winners[1].trial.candidate.pair == (ORT, FP32)


def test_cost_estimates_come_from_the_trials_so_far():
    def trial(c: Candidate, seconds: float) -> Trial:
        return Trial(c, Stage.FIRST_PASS, [], seconds)

    base = Candidate(E, FP32, CPU, 4)
    assert estimate_cost(base, []) is None  # nothing to go on: the first candidate runs
    trials = [trial(base, 10.0), trial(Candidate(C, FP32, CPU, 4), 30.0)]
    assert estimate_cost(Candidate(E, FP32, CPU, 2), trials) == 20.0  # half the threads
    assert estimate_cost(Candidate(E, FP32, CPU, 8), trials) == 10.0
    assert estimate_cost(Candidate(E, BF16, CPU, 4), trials) == 10.0  # same runtime
    assert estimate_cost(Candidate(ORT, FP32, CPU, 4), trials) == 30.0 * UNKNOWN_RUNTIME_FACTOR
    mode = Candidate(C, FP32, CPU, 4, CompileMode.MAX_AUTOTUNE)
    assert estimate_cost(mode, trials) == 30.0 * COMPILE_MODE_FACTOR
    # An untried torch.compile compiles once per batch size, however cheap the others were.
    quick = [trial(base, 1.0)]
    assert estimate_cost(Candidate(C, FP32, CPU, 4), quick, 3) == 3 * COMPILE_S_PER_BATCH


def test_a_winner_inside_the_runner_up_s_interval_is_called_a_toss_up():
    lat = {(E, FP32): {1: 10.0}, (ORT, FP32): {1: 9.5}}  # 5% apart
    clock = FakeClock()
    noisy = tune(space(list(lat)), [1], StandIn(lat, clock, spread=0.3), 100.0, clock=clock)
    pick = noisy.winners[1]
    assert pick.trial.candidate.backend is ORT and pick.rival is not None
    assert pick.rival.candidate.backend is E
    assert pick.to_dict()["toss_up_with"]["backend"] == "eager"
    assert pick.to_dict()["toss_up_why"] == tune_module.OVERLAP
    # The same medians from steady calls: the order is settled.
    clock = FakeClock()
    steady = tune(space(list(lat)), [1], StandIn(lat, clock), 100.0, clock=clock)
    assert steady.winners[1].rival is None and steady.winners[1].to_dict()["toss_up_with"] is None
    # Too few calls for an interval: not an overlap, and said so (7x apart was "overlapping").
    clock = FakeClock()
    far = {(E, FP32): {1: 70.0}, (ORT, FP32): {1: 10.0}}
    few = tune(space(list(far)), [1], StandIn(far, clock, calls=3), 100.0, clock=clock)
    assert few.winners[1].to_dict()["toss_up_why"] == tune_module.NO_INTERVAL


def test_the_printed_command_pins_the_model_it_measured(tmp_path, monkeypatch):
    from alexbench.cli.tune import _model_args

    monkeypatch.chdir(tmp_path)
    none = dict.fromkeys(["artifacts", "checkpoint", "weights", "seed", "num_classes",
                          "image_size", "normalize", "calib_data"])  # fmt: skip
    # No model named: the folder tune measured, not whatever `export` made last.
    assert _model_args(none, Path("exports/ab12")) == [
        "--artifacts", str(tmp_path / "exports" / "ab12"),
    ]  # fmt: skip
    # Paths absolute: the command may run from another folder.
    args = _model_args(none | {"checkpoint": Path("run/best.pt")}, Path("exports/cd34"))
    assert args == ["--checkpoint", str(tmp_path / "run" / "best.pt")]


def test_compile_gets_its_modes_and_goes_last():
    sp = space([(C, FP32), (E, BF16), (E, FP32)], threads=(2, 1),
               modes=(CompileMode.DEFAULT, CompileMode.MAX_AUTOTUNE))  # fmt: skip
    first = sp.first_pass()
    assert [c.pair for c in first] == [(E, FP32), (E, BF16), (C, FP32)]
    variants = sp.variants(first[-1])
    assert [(v.threads, v.compile_mode) for v in variants] == [
        (1, CompileMode.DEFAULT), (2, CompileMode.MAX_AUTOTUNE),
    ]  # fmt: skip
    assert "--compile-mode max-autotune" in variants[1].bench_command(8)
    assert sp.variants(first[0]) == [Candidate(E, FP32, CPU, 1)]  # eager: threads only


def test_a_budget_must_be_positive():
    with pytest.raises(ValueError, match="budget_s"):
        tune(space([(E, FP32)]), [1], StandIn({}, FakeClock()), 0.0)


# ---------------------------------------------------------------- the command, real runtimes

SHORT = ["--min-time", "0.02", "--min-iters", "3", "--device", "cpu"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_tune_end_to_end_prints_a_winner_and_a_command_that_reproduces_it(
    small_artifacts, tmp_path
):
    doc_path = tmp_path / "tune.json"
    r = invoke(
        "tune", "--artifacts", small_artifacts, "--batch", "1,2", "--time-budget", "60",
        "--backend", "eager,onnxruntime,torchscript", "--precision", "fp32,bf16",
        "--out", doc_path, *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 winner" in r.stdout and "Fastest configuration that passed parity" in r.stdout
    commands = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("alexbench")]
    assert len(commands) == 2  # one per batch size
    doc = json.loads(doc_path.read_text())
    assert doc["schema"] == "alexbench-tune/1" and doc["elapsed_s"] <= 60
    assert [w["command"] for w in doc["winners"]] == commands
    tried = {(t["candidate"]["backend"], t["candidate"]["precision"]) for t in doc["trials"]}
    assert {("eager", "fp32"), ("onnxruntime", "fp32"), ("torchscript", "fp32")} <= tried
    considered = tried | {(n["candidate"]["backend"], n["candidate"]["precision"]) for n in
                          doc["not_tried"] if n["reason"] != "unavailable"}  # fmt: skip
    assert ("torchscript", "bf16") in considered  # traced from the cast model: a candidate
    # What cannot run here (onnxruntime has no bf16 model) is recorded, with why, and not tried.
    unavailable = [n for n in doc["not_tried"] if n["reason"] == "unavailable"]
    assert unavailable and all(n["detail"] for n in unavailable)
    assert not {(n["candidate"]["backend"], n["candidate"]["precision"]) for n in unavailable} & (
        tried
    )
    # The winner's command, run as printed, measures that configuration and it passes.
    winner = doc["winners"][0]
    args = shlex.split(winner["command"])
    assert args[:2] == ["alexbench", "bench"]
    results = tmp_path / "bench"
    r = invoke(*args[1:], "--out", results, "--min-time", "0.02", "--min-iters", "3")
    assert r.exit_code == 0, r.output
    (bench_json,) = results.glob("*.json")
    bench = json.loads(bench_json.read_text())
    (cell,) = bench["cells"]
    cand = winner["candidate"]
    assert (cell["backend"], cell["precision"], cell["batch"]) == (
        cand["backend"], cand["precision"], winner["batch"],
    )  # fmt: skip
    assert cell["status"] == "ok" and bench["settings"]["options"]["threads"] == cand["threads"]


def test_an_interrupted_tune_saves_its_finished_trials(small_artifacts, tmp_path, monkeypatch):
    """SIGINT during the second trial: the first trial's document is saved marked incomplete,
    its winner shown, exit 130 (before: nothing was saved)."""
    from alexbench.cli import tune as tune_cli

    real = tune_cli.sweep_measure

    def interrupting(*args, **kwargs):
        measure = real(*args, **kwargs)
        calls = []

        def wrapped(candidate, batches):
            calls.append(candidate)
            if len(calls) == 2:
                raise Interrupted("SIGINT", 130)
            return measure(candidate, batches)

        return wrapped

    monkeypatch.setattr(tune_cli, "sweep_measure", interrupting)
    doc_path = tmp_path / "tune.json"
    r = invoke(
        "tune", "--artifacts", small_artifacts, "--batch", "1", "--backend", "eager,onnxruntime",
        "--precision", "fp32", "--threads", "1", "--out", doc_path, *SHORT,
    )  # fmt: skip
    assert r.exit_code == 130, r.output
    doc = json.loads(doc_path.read_text())
    assert doc["complete"] is False and doc["interrupted"] == "SIGINT"
    assert [t["candidate"]["backend"] for t in doc["trials"]] == ["eager"]
    assert doc["winners"][0]["candidate"]["backend"] == "eager"
    assert [n["reason"] for n in doc["not_tried"]] == ["interrupted"]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: interrupted by SIGINT: the search is incomplete, 1 finished trial(s) ranked: "
        f"saved to {doc_path}"
    ]


def test_tune_json_is_one_document_on_stdout(small_artifacts):
    r = invoke(
        "tune", "--artifacts", small_artifacts, "--batch", "1", "--backend", "eager",
        "--precision", "fp32", "--threads", "1", "--json", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # fails on anything else on stdout
    (trial,) = doc["trials"]
    assert trial["candidate"]["threads"] == 1 and trial["cells"][0]["status"] == "ok"
    assert doc["winners"][0]["command"].startswith("alexbench bench --backend eager")
    assert "[1/1]" not in r.stderr  # --json: no progress lines


@pytest.fixture(scope="module")
def corrupt_onnx(small_artifacts, tmp_path_factory) -> Path:
    """The session's exports with the ONNX weights scaled by 1.1: onnxruntime fails parity."""
    dst = tmp_path_factory.mktemp("tune") / "exports"
    shutil.copytree(small_artifacts, dst)
    model = onnx.load(str(dst / "alexnet.onnx"))
    init = next(t for t in model.graph.initializer if len(t.dims) == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.1, init.name))
    onnx.save(model, str(dst / "alexnet.onnx"))
    return dst


def test_a_real_parity_failure_does_not_win(corrupt_onnx):
    r = invoke(
        "tune", "--artifacts", corrupt_onnx, "--batch", "1", "--backend", "onnxruntime,eager",
        "--precision", "fp32", "--threads", "2", "--json", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    statuses = {t["candidate"]["backend"]: t["cells"][0]["status"] for t in doc["trials"]}
    assert statuses == {"onnxruntime": "parity_failed", "eager": "ok"}
    assert doc["winners"][0]["candidate"]["backend"] == "eager"
    # Only onnxruntime: nothing passes, no winner, a one-line error and a non-zero exit.
    r = invoke(
        "tune", "--artifacts", corrupt_onnx, "--batch", "1", "--backend", "onnxruntime",
        "--precision", "fp32", "--threads", "2", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 4 and "FAIL" in r.stdout and "Traceback" not in r.output
    # (Earlier stderr lines: the modified ONNX file's warning, perhaps a busy machine's.)
    last = r.stderr.strip().splitlines()[-1]
    assert last == "error: no configuration passed parity at any batch size (see the tables)"


def test_max_accuracy_drop_scores_each_pair_once_on_real_images(small_artifacts, cifar_subset):
    r = invoke(
        "tune", "--artifacts", small_artifacts, "--batch", "1,2", "--backend",
        "eager,onnxruntime", "--precision", "fp32", "--threads", "2",
        "--data-dir", cifar_subset, "--max-accuracy-drop", "100", "--json", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    acc = {(a["backend"], a["precision"]): a for a in doc["accuracy"]}
    assert set(acc) == {("eager", "fp32"), ("onnxruntime", "fp32")}  # once each, not per batch
    assert acc[("eager", "fp32")]["drop_pp"] == 0.0
    assert abs(acc[("onnxruntime", "fp32")]["drop_pp"]) < 5  # 30 images: one is 3.3 pt
    assert len(doc["trials"]) == 2 and doc["max_accuracy_drop_pp"] == 100


def test_accuracy_on_the_folder_a_checkpoint_trained_on_is_said_not_held_out(
    cifar_subset, tmp_path, monkeypatch
):
    """evaluate's warning, in tune too: scoring the run's training images as held out inflates
    every pair's top-1 silently. And a limit finer than one image's worth is said to be."""
    from alexbench.checkpoint import ModelMeta, save_checkpoint
    from alexbench.model import build_alexnet

    monkeypatch.chdir(tmp_path)
    ds = tmp_path / "ds"
    shutil.copytree(cifar_subset, ds / "train")
    shutil.copytree(cifar_subset, ds / "val")
    classes = sorted(p.name for p in cifar_subset.iterdir())
    data = {"kind": "imagefolder", "data_dir": str(ds), "val_fraction": 0.1, "split_seed": 0,
            "split_method": "hash"}  # fmt: skip
    meta = ModelMeta(num_classes=10, image_size=64, class_names=classes,
                     provenance={"data": data})  # fmt: skip
    ck = save_checkpoint(tmp_path / "ck.pt", build_alexnet(num_classes=10, seed=0), meta)
    r = invoke(
        "tune", "--checkpoint", ck, "--artifacts", tmp_path / "exp", "--batch", "1",
        "--backend", "eager", "--precision", "fp32", "--threads", "2", "--data-dir",
        ds / "train", "--max-accuracy-drop", "1", "--json", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "is the folder the model trained on" in r.stderr
    assert "one image is 3.3 points of top-1 on 30 images" in r.stderr
    settings = json.loads(r.stdout)["settings"]
    assert settings["accuracy_images"] == 30
    assert "NOT the run's held-out split" in settings["accuracy_data"]


def test_a_latency_budget_times_enough_calls_for_a_real_p99(small_artifacts):
    r = invoke(
        "tune", "--artifacts", small_artifacts, "--batch", "1", "--backend", "eager",
        "--precision", "fp32", "--threads", "2", "--latency-budget-ms", "10000",
        "--min-time", "0.02", "--device", "cpu", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["settings"]["run_length"]["min_iters"] == 100
    assert doc["settings"]["run_length"]["warmup_calls"] == 3  # each rotating input once
    pick = doc["latency_pick"]
    assert pick["iterations"] >= 100 and not pick["p99_from_few_calls"]
    assert "--min-iters 100" in pick["command"]


def test_latency_budget_end_to_end_states_when_nothing_fits(small_artifacts, monkeypatch):
    # Other processes busy during the search (a helper's tune pruned trials measured 10x slow
    # with no warning): said after the table, before the error.
    from alexbench.cli import tune as tune_cli

    monkeypatch.setattr(tune_cli, "others_cpu_since", lambda mark: 1.5)
    monkeypatch.setattr("alexbench.environment.usable_cores", lambda: 2)
    r = invoke(
        "tune", "--artifacts", small_artifacts, "--batch", "1,2", "--backend", "eager",
        "--precision", "fp32", "--threads", "2", "--latency-budget-ms", "0.001", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 4 and "Traceback" not in r.output
    *_, warning, last = r.stderr.strip().splitlines()
    assert "used 1.5 of 2 cores on average during the search" in warning
    assert last.startswith("error: no tried configuration keeps p99 within 0.001 ms at any batch")


def test_a_budget_too_small_to_try_anything_says_so(small_artifacts):
    """An outside audit: "batch 1: none passed parity" was printed when none was tried."""
    r = invoke(
        "tune", "--artifacts", small_artifacts, "--batch", "1", "--backend", "eager",
        "--precision", "fp32", "--time-budget", "0.001", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 4, r.output
    assert "batch 1: no configuration was tried" in r.stdout, r.stdout
    assert "none passed parity" not in r.stdout


# ---------------------------------------------------------------- bad inputs (one clean line)

SMALL = ["--num-classes", "10", "--image-size", "64"]


def _snapshot(root: Path) -> set[tuple[Path, int, int]]:
    return {(p, p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--time-budget", "-5"], "--time-budget"),
        (["--time-budget", "0"], "--time-budget"),
        (["--time-budget", "nan"], "--time-budget"),
        (["--latency-budget-ms", "-1"], "--latency-budget-ms"),
        (["--latency-budget-ms", "0"], "--latency-budget-ms"),
        (["--max-accuracy-drop", "1"], "needs --data-dir"),
        (["--max-accuracy-drop", "-1", "--data-dir", "{tmp}"], "--max-accuracy-drop"),
        (["--data-dir", "{tmp}"], "--data-dir"),
        (["--max-accuracy-drop", "1", "--data-dir", "{tmp}/nope"], "nope"),
        (["--max-accuracy-drop", "1", "--data-dir", "{twoclass}", *SMALL], "classes"),
        (["--backend", "tensorrt"], "tensorrt"),
        (["--backend", "eager,"], "--backend"),
        (["--precision", "fp64"], "fp64"),
        (["--threads", "0"], "--threads"),
        (["--threads", "two"], "--threads"),
        (["--batch", "0"], "--batch"),
        (["--device", "tpu"], "tpu"),
        (["--min-iters", "0"], "--min-iters"),
        (["--min-time", "-1"], "--min-time"),
        (["--out", "{tmp}"], "is a directory"),
        (["--checkpoint", "{tmp}/nope.pt"], "nope.pt"),
    ],
)
def test_bad_input_is_one_clean_line_and_leaves_nothing(args, words, tmp_path, monkeypatch):
    for name in ("cat", "dog"):  # real JPEGs, but 2 classes for a 10-class model
        (tmp_path / "twoclass" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "twoclass" / name / "a.jpg")
    monkeypatch.chdir(tmp_path)  # anything written by default (exports/) would show here
    expand = {"{tmp}": str(tmp_path), "{twoclass}": str(tmp_path / "twoclass")}

    def sub(a: str) -> str:
        for k, v in expand.items():
            a = a.replace(k, v)
        return a

    before = _snapshot(tmp_path)
    r = runner.invoke(app, ["tune", *(sub(a) for a in args)])
    err = r.stderr.strip()
    assert r.exit_code == 2, f"exit {r.exit_code}\n{r.output}"
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in r.output and not err.startswith("error: unexpected "), err
    assert sub(words) in err, err
    assert _snapshot(tmp_path) == before
