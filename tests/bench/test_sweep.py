"""Merging repeats: pooled latencies, the worst status wins, each repeat's median kept."""

import numpy as np
import pytest

from alexbench.bench.stats import compute_stats
from alexbench.bench.sweep import CellResult, CellStatus, merge_repeats
from alexbench.devices import Device
from alexbench.exit_codes import ExitCode, outcome
from alexbench.precision import Precision
from alexbench.runtimes import Backend


def _cell(repeat: int, lat_ms: list[float], status=CellStatus.OK, reason="") -> CellResult:
    lat = (np.asarray(lat_ms) * 1e6).astype(np.int64)
    stats = compute_stats(lat, 1, int(lat.sum()))
    c = CellResult(Backend.EAGER, Device.CPU, Precision.FP32, 1, status, reason, repeat=repeat)
    c.stats, c.latencies_ns = stats, lat.tolist()
    c.repeats = [{"p50_ms": stats.p50_ms, "iterations": stats.iterations,
                  "throughput": stats.throughput, "wall_s": lat.sum() / 1e9}]  # fmt: skip
    c.memory = {"peak_bytes": 100 * (repeat + 1), "resident_bytes": 50}
    return c


def test_merge_pools_latencies_in_repeat_order_and_keeps_medians():
    runs = [_cell(1, [2.0, 2.0, 2.2]), _cell(0, [1.0, 1.1, 1.2]), _cell(2, [3.0, 3.0, 3.0])]
    (merged,) = merge_repeats(runs)
    assert [r["p50_ms"] for r in merged.repeats] == [1.1, 2.0, 3.0]
    assert merged.latencies_ns[:3] == [1_000_000, 1_100_000, 1_200_000]
    geomean = (1.1 * 2.0 * 3.0) ** (1 / 3)  # the repeats' medians, each weighted once
    assert merged.stats.iterations == 9 and merged.stats.p50_ms == pytest.approx(geomean)
    assert merged.stats.repeats == 3 and merged.stats.unstable  # 1.1 to 3.0 ms apart
    assert merged.stats.max_ms == 3.0 and merged.stats.min_ms == 1.0  # extremes: every sample
    assert merged.memory["peak_bytes"] == 300 and merged.status is CellStatus.OK
    assert merged.stats.wall_throughput == 9 / (sum([1.0, 1.1, 1.2, 2, 2, 2.2, 3, 3, 3]) / 1e3)


def test_a_failure_in_a_later_repeat_is_not_hidden():
    runs = [_cell(0, [1.0] * 3), _cell(1, [1.0] * 3, CellStatus.PARITY_FAILED, "cos 0.2")]
    runs[1].parity = "repeat 2's failed comparison"  # stands in for a ParityResult
    (merged,) = merge_repeats(runs)
    assert merged.status is CellStatus.PARITY_FAILED and merged.reason == "repeat 2: cos 0.2"
    assert merged.parity == "repeat 2's failed comparison" and merged.runs == 2
    err = CellResult(Backend.EAGER, Device.CPU, Precision.FP32, 1, CellStatus.ERROR, "boom")
    err.repeat = 2
    (merged,) = merge_repeats([*runs, err])
    assert merged.status is CellStatus.ERROR and merged.reason == "repeat 3: boom"


def test_exit_code_rules():
    assert outcome(measured=3, parity_failed=0, errors=0) is ExitCode.OK
    assert outcome(measured=3, parity_failed=1, errors=1) is ExitCode.PARITY_FAILED
    assert outcome(measured=3, parity_failed=0, errors=1) is ExitCode.CELLS_FAILED
    assert outcome(measured=0, parity_failed=0, errors=0) is ExitCode.CELLS_FAILED


def test_a_fast_repeat_with_more_samples_does_not_pull_the_median_or_narrow_its_ci():
    # One repeat at 10 ms and two at 30 ms, each stopped by the same --min-time: the fast one
    # has three times the samples. The pool's median would be 10.1 ms with a CI of [10.06,
    # 10.18] and no ~ flag, while two repeats of three say 30 ms.
    rng = np.random.default_rng(0)
    runs = [
        _cell(i, list(centre + rng.normal(0, 0.05, n)))
        for i, (centre, n) in enumerate([(10.0, 100), (30.0, 34), (30.0, 34)])
    ]
    (merged,) = merge_repeats(runs)
    s = merged.stats
    medians = [r["p50_ms"] for r in merged.repeats]
    assert s.p50_ms == pytest.approx(np.exp(np.mean(np.log(medians))))  # about 20.8 ms
    assert s.p50_ci_low_ms < min(medians) and s.p50_ci_high_ms > max(medians)
    assert s.unstable and s.throughput == pytest.approx(1e3 / s.p50_ms)
    assert s.iterations == 168  # the other figures are still over every sample


def _sweep_with(session_run, small_bundle, monkeypatch, batches=(1, 16)):
    """One TorchScript cell per batch with its session's `run` replaced by `session_run(self,
    inputs, real_run)`: a runtime that computes something else than the model."""
    from alexbench.bench.sweep import BenchSpec, iter_sweep
    from alexbench.bench.timer import RunLength
    from alexbench.runtimes.torch_common import TorchModuleSession
    from alexbench.runtimes.torchscript import TorchScriptRuntime

    real = TorchModuleSession.run
    loaded = TorchScriptRuntime.load

    def load(self, *a, **k):
        session = loaded(self, *a, **k)
        session.run = lambda inputs: session_run(session, inputs, real)
        return session

    monkeypatch.setattr(TorchScriptRuntime, "load", load)
    spec = BenchSpec(
        [Backend.TORCHSCRIPT], [Device.CPU], [Precision.FP32], list(batches),
        run_length=RunLength(warmup=1, min_seconds=0.0, min_iters=3, max_iters=5),
    )  # fmt: skip
    return {c.batch: c for c in iter_sweep(small_bundle, spec)}


def test_bench_parity_checks_every_row_not_the_first_few(small_bundle, monkeypatch):
    """A runtime that computed 4 images and copied them into the rest of the batch passed
    bench's parity (4 rows of the first call checked) at 9x eager's speed."""

    def four_rows(session, inputs, real):
        out = real(session, inputs[:4])
        return out.repeat((len(inputs) + 3) // 4, 1)[: len(inputs)]

    cells = _sweep_with(four_rows, small_bundle, monkeypatch)
    assert cells[1].status is CellStatus.OK  # one image: the shortcut changes nothing
    assert cells[16].status is CellStatus.PARITY_FAILED, cells[16].reason


def test_bench_parity_checks_a_call_after_timing_on_another_input(small_bundle, monkeypatch):
    """A runtime that answers every call with its first answer (a replay of a stale input):
    right on the first call, wrong on every other input."""

    def stale(session, inputs, real):
        if not hasattr(session, "_first"):
            session._first = real(session, inputs)
        return session._first

    cells = _sweep_with(stale, small_bundle, monkeypatch, batches=(16,))
    assert cells[16].status is CellStatus.PARITY_FAILED, cells[16].reason
