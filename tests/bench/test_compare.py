"""`compare`: verdicts from repeat-to-repeat spread (or a weak block bootstrap), the threshold,
unmatched cells and warnings, on synthetic runs with autocorrelated, level-shifting latencies."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from alexbench.bench.compare import Verdict, compare_runs, refusal, regressions
from alexbench.bench.intervals import (
    block_length,
    bootstrap_ratio_interval,
    t_quantile,
    welch_ratio_interval,
)
from alexbench.bench.stats import compute_stats
from alexbench.cli import app
from alexbench.results import RESULTS_SCHEMA

runner = CliRunner()
KEYS = [
    ("eager", "cpu", "fp32", 1),
    ("eager", "cpu", "fp32", 8),
    ("onnxruntime", "cpu", "fp32", 1),
    ("onnxruntime", "cpu", "fp32", 8),
]
MEDIANS_MS = {1: 12.0, 8: 60.0}


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) series with marginal standard deviation `sd`."""
    z = rng.normal(0.0, sd * math.sqrt(1 - phi**2), n)
    e = np.empty(n)
    e[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + z[i]
    return e


def run_latencies(
    rng: np.random.Generator,
    median_ms: float,
    n: int,
    *,
    shift: float = 0.03,
    phi: float = 0.9,
    sd: float = 0.02,
    spikes: float = 0.01,
) -> np.ndarray:
    """One repeat: a run-level shift drawn in +-`shift`, AR(1) drift around it, rare spikes."""
    level = median_ms * (1 + rng.uniform(-shift, shift))
    lat = level * np.exp(ar1(rng, n, phi, sd))
    lat[rng.random(n) < spikes] *= 1.3
    return np.round(lat * 1e6).astype(np.int64)


def make_cell(key, repeats: list[np.ndarray] | None, *, status="ok", reason="", legacy=False):
    backend, device, precision, batch = key
    cell = {
        "backend": backend, "device": device, "precision": precision, "batch": batch,
        "status": status, "reason": reason, "stats": None, "latencies_ns": [],
        "timing_method": "perf_counter_ns", "cold_start": {}, "memory": {}, "parity": None,
        "roofline": None,
    }  # fmt: skip
    if status in ("ok", "parity_failed"):  # every cell that ran was checked
        cell["parity"] = {
            "passed": status == "ok", "min_cosine": 1.0, "top1_agreement": 1.0,
            "max_abs_err": 0.0, "max_rel_err": 0.0, "threshold": 1e-4,
        }  # fmt: skip
    if repeats:
        pooled = np.concatenate(repeats)
        cell["latencies_ns"] = pooled.tolist()
        cell["stats"] = compute_stats(pooled, batch, int(pooled.sum())).to_dict()
        if not legacy:  # files from before `bench --repeat` have no "repeats"
            cell["repeats"] = [
                {
                    "p50_ms": float(np.median(r)) / 1e6,
                    "iterations": len(r),
                    "throughput": batch / (float(np.median(r)) / 1e9),
                }
                for r in repeats
            ]
    return cell


def make_run(
    seed: int,
    *,
    repeats: int = 3,
    n: int = 300,
    scale: float = 1.0,
    keys=KEYS,
    legacy: bool = False,
    **noise,
) -> dict:
    rng = np.random.default_rng(seed)
    cells = []
    for key in keys:
        median = MEDIANS_MS[key[3]] * scale
        reps = [run_latencies(rng, median, n, **noise) for _ in range(repeats)]
        cells.append(make_cell(key, reps, legacy=legacy))
    payload = {
        "schema": RESULTS_SCHEMA,
        "created": "2026-11-25T20:32:55+00:00",
        "environment": {
            "host": "vm", "cpu": {"model": "Test CPU 9000"}, "gpu": None,
            "versions": {"python": "3.12.3", "torch": "2.9.0", "onnxruntime": "1.22.0"},
            "torch_threads": 2, "torch_interop_threads": 2, "env": {},
        },
        "model": {
            "source": {"kind": "seeded", "path": None, "seed": 0, "file_sha256": None},
            "meta": {"num_classes": 1000, "image_size": 224},
            "artifacts": {"onnx": "ab" * 32},
        },
        "settings": {
            "backends": sorted({k[0] for k in keys}), "devices": sorted({k[1] for k in keys}),
            "precisions": sorted({k[2] for k in keys}), "batches": sorted({k[3] for k in keys}),
            "run_length": {"warmup": 3, "min_seconds": 1.0, "min_iters": 10, "max_iters": 10000},
            "options": {"threads": None, "cudnn_benchmark": False, "cuda_graphs": False,
                        "include_transfers": False, "compile_mode": "default"},
        },
        "ceilings": {},
        "cells": cells,
    }  # fmt: skip
    if not legacy:
        payload |= {"complete": True, "interrupted": None}
    return payload


def rerun(run: dict) -> dict:
    """Another run of `run`'s settings with the same figures: a copy started at another time
    (a copy with the same start time and latencies is the same run, which compare tells)."""
    out = copy.deepcopy(run)
    out["created"] = "2026-11-25T21:00:00+00:00"
    return out


def write(tmp_path, name: str, payload: dict):
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------ statistics


def test_t_quantile_matches_tables():
    for df, expected in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (30, 2.0423), (1e7, 1.9600)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764, abs=1e-4)


@pytest.mark.parametrize("repeats", [2, 3, 5])
def test_welch_interval_has_its_nominal_false_positive_rate(repeats):
    # Per-repeat medians with +-3% run-level noise and no real difference: ~5% of intervals may
    # exclude 1, not more (the within-run CIs this replaces were wrong most of the time).
    rng = np.random.default_rng(7)
    sims = 2000
    hits = 0
    for _ in range(sims):
        a = 10.0 * np.exp(rng.normal(0, 0.02, repeats))
        b = 10.0 * np.exp(rng.normal(0, 0.02, repeats))
        iv = welch_ratio_interval(a, b)
        hits += iv.low > 1 or iv.high < 1
    assert 0.015 <= hits / sims <= 0.065


def test_welch_interval_is_centred_on_the_geometric_mean_ratio():
    iv = welch_ratio_interval([10.0, 10.2, 9.9], [12.0, 12.3, 11.8])
    expected = math.exp(np.mean(np.log([10.0, 10.2, 9.9])) - np.mean(np.log([12.0, 12.3, 11.8])))
    assert iv.ratio == pytest.approx(expected) and iv.low < iv.ratio < iv.high < 1
    same = welch_ratio_interval([10.0, 10.0], [10.0, 10.0])  # zero spread: a point
    assert same.low == same.ratio == same.high == 1.0


def test_block_bootstrap_respects_autocorrelation():
    rng = np.random.default_rng(3)
    iid, ar = rng.normal(size=1000), ar1(rng, 1000, 0.9, 1.0)
    assert block_length(iid) == math.ceil(1000 ** (1 / 3))
    assert block_length(ar) >= 30
    # Same AR(1) process on both sides: an iid bootstrap calls most pairs different, the block
    # bootstrap few (it is still within-run only, hence weak verdicts).
    sims, block_hits, iid_hits = 30, 0, 0
    for s in range(sims):
        a = 1e7 * np.exp(ar1(rng, 600, 0.9, 0.02))
        b = 1e7 * np.exp(ar1(rng, 600, 0.9, 0.02))
        iv = bootstrap_ratio_interval(a, b, resamples=400, seed=s)
        block_hits += iv.low > 1 or iv.high < 1
        ra, rb = np.random.default_rng(s), np.random.default_rng(s + 1000)
        ma = np.median(a[ra.integers(0, 600, (400, 600))], axis=1)
        mb = np.median(b[rb.integers(0, 600, (400, 600))], axis=1)
        lo, hi = np.quantile(ma / mb, [0.025, 0.975])
        iid_hits += lo > 1 or hi < 1
    assert block_hits / sims <= 0.25 and iid_hits / sims >= 0.4


def test_bootstrap_is_deterministic():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 500), rng.normal(10, 1, 500)
    assert bootstrap_ratio_interval(a, b) == bootstrap_ratio_interval(a, b)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_intervals_refuse_a_time_that_is_not_finite_and_positive(bad):
    # log(0) and log(NaN) would give a NaN or infinite interval, and a verdict read from it.
    good = [1.0, 1.1, 0.9]
    with pytest.raises(ValueError, match="finite and > 0"):
        welch_ratio_interval(good, [1.0, bad, 1.2])
    lat = np.full(50, 2.0)
    lat[7] = bad
    with pytest.raises(ValueError, match="finite and > 0"):
        bootstrap_ratio_interval(np.full(50, 2.0), lat)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ratio_interval(np.array([]), np.full(50, 2.0))


# ------------------------------------------------------------------------------- verdicts


def test_same_distribution_with_run_level_shifts_is_within_noise():
    a, b = make_run(1), make_run(2)
    # The data is hard enough: the within-run order-statistic CIs of the median that the old
    # verdict used ("CIs overlap") do not overlap for most of these unchanged cells.
    disjoint = [
        sa["p50_ci_high_ms"] < sb["p50_ci_low_ms"] or sb["p50_ci_high_ms"] < sa["p50_ci_low_ms"]
        for sa, sb in (
            (ca["stats"], cb["stats"]) for ca, cb in zip(a["cells"], b["cells"], strict=True)
        )
    ]
    assert sum(disjoint) >= 2
    comp = compare_runs(a, b)
    assert len(comp.cells) == len(KEYS)
    assert all(c.verdict is Verdict.WITHIN_NOISE and not c.weak for c in comp.cells)
    assert all(c.a_repeats == c.b_repeats == 3 and "Welch" in c.method for c in comp.cells)
    assert not comp.warnings and not regressions(comp)
    assert not comp.only_in_a and not comp.only_in_b and not comp.not_comparable


def test_slower_run_is_slower_everywhere_and_fails_the_cli(tmp_path):
    comp = compare_runs(make_run(1), make_run(2, scale=1.2))
    assert all(c.verdict is Verdict.SLOWER and not c.weak for c in comp.cells)
    assert all(c.ratio == pytest.approx(1 / 1.2, rel=0.03) for c in comp.cells)
    assert all(c.ci_low < 1 / 1.2 < c.ci_high < 1 for c in comp.cells)
    assert len(regressions(comp)) == len(KEYS)
    a, b = write(tmp_path, "a.json", make_run(1)), write(tmp_path, "b.json", make_run(2, scale=1.2))
    r = invoke("compare", a, b)
    assert r.exit_code == 0 and "slower" in r.stdout and "(weak)" not in r.stdout
    r = invoke("compare", a, b, "--fail-on-regression")
    assert r.exit_code == 1, r.output
    assert "4 cell(s) regressed" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_faster_run_is_faster_and_passes_fail_on_regression(tmp_path):
    comp = compare_runs(make_run(1), make_run(2, scale=0.8))
    assert all(c.verdict is Verdict.FASTER for c in comp.cells)
    assert all(c.ratio == pytest.approx(1.25, rel=0.03) for c in comp.cells)
    a, b = write(tmp_path, "a.json", make_run(1)), write(tmp_path, "b.json", make_run(2, scale=0.8))
    r = invoke("compare", a, b, "--fail-on-regression")
    assert r.exit_code == 0, r.output
    assert "faster" in r.stdout and "1.25" in r.stdout and not r.stderr


def test_small_real_difference_is_slight_because_of_the_threshold(tmp_path):
    tight = {"shift": 0.002, "sd": 0.003}
    a, b = make_run(1, **tight), make_run(2, scale=1 / 1.02, **tight)
    comp = compare_runs(a, b)
    for c in comp.cells:
        assert c.significant and c.ci_low > 1  # a real 2% gain, resolved by the interval...
        # ...but below the 5% threshold: not "within noise", which said nothing had changed
        assert c.verdict is Verdict.SLIGHTLY_FASTER
    assert all(c.verdict is Verdict.FASTER for c in compare_runs(a, b, threshold=0.01).cells)
    # The mirror image: a certain 2% slowdown is slightly slower, and not a regression.
    back = compare_runs(b, a)
    assert all(c.verdict is Verdict.SLIGHTLY_SLOWER for c in back.cells)
    assert not regressions(back)
    r = invoke("compare", write(tmp_path, "b.json", b), write(tmp_path, "a.json", a),
               "--fail-on-regression")  # fmt: skip
    assert r.exit_code == 0 and "slightly slower" in r.stdout and "within noise" not in r.stdout
    assert "slightly: the interval excludes 1 but the ratio is within 5%" in " ".join(
        r.stdout.split()
    )


def _b_with_repeats_at(factors: tuple[float, ...], keys=KEYS) -> dict:
    """Run 2 with its repeats' medians at these multiples of run 1's."""
    b = make_run(2, repeats=len(factors), keys=keys)
    rng = np.random.default_rng(3)
    b["cells"] = [
        make_cell(k, [run_latencies(rng, MEDIANS_MS[k[3]] * f, 300) for f in factors]) for k in keys
    ]
    return b


def test_a_large_change_the_runs_cannot_resolve_is_inconclusive(tmp_path):
    # B's repeats 1.2, 1.35 and 1.5x slower: the ratio is 0.75, the interval includes 1 but
    # excludes any speed-up beyond 5%. It was "within noise" and passed --fail-on-regression.
    a, b = make_run(1), _b_with_repeats_at((1.2, 1.35, 1.5), keys=KEYS[:2])
    comp = compare_runs(a, b)
    for c in comp.cells:
        assert not c.significant and c.ci_low < 1 < c.ci_high < 1.05
        assert c.ratio < 1 / 1.05 and c.verdict is Verdict.INCONCLUSIVE
    assert len(regressions(comp)) == 2
    assert all(c.verdict is Verdict.INCONCLUSIVE for c in compare_runs(b, a).cells)
    assert not regressions(compare_runs(b, a))  # inconclusive, but faster: no gate failure
    pa, pb = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    r = invoke("compare", pa, pb)
    assert r.exit_code == 0 and "inconclusive" in r.stdout and "within noise" not in r.stdout
    r = invoke("compare", pa, pb, "--fail-on-regression")
    assert r.exit_code == 1, r.output
    assert "2 inconclusive" in r.stderr and "more --repeat" in r.stderr


def test_an_interval_wide_on_both_sides_does_not_gate(tmp_path):
    # Two repeats, one of B's 1.8x: 0.7x with an interval of about [0.2, 2.5]. Gating on the
    # ratio alone failed unchanged runs (at --threshold 0, every cell below 1.000x).
    a, b = make_run(1, repeats=2), _b_with_repeats_at((1.0, 1.8))
    comp = compare_runs(a, b)
    for c in comp.cells:
        assert c.verdict is Verdict.INCONCLUSIVE and c.ratio < 1 / 1.05 and c.ci_high > 1.05
    assert not regressions(comp)
    same = compare_runs(make_run(1), make_run(2), threshold=0.0)
    assert not regressions(same) and not any(c.verdict is Verdict.SLOWER for c in same.cells)
    r = invoke("compare", write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
               "--fail-on-regression")  # fmt: skip
    assert r.exit_code == 0 and "inconclusive" in r.stdout, r.output


def test_an_undecided_slowdown_passes_the_gate_with_a_warning(tmp_path):
    # 0.7x with an interval reaching a speed-up: not counted, but a passing gate says so (an
    # auditor's 16% slowdowns passed with nothing on stderr).
    a, b = make_run(1, repeats=2), _b_with_repeats_at((1.0, 1.8))
    r = invoke("compare", write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
               "--fail-on-regression")  # fmt: skip
    assert r.exit_code == 0, r.output
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("warning: ") and "undecided" in x]
    assert line.startswith(f"warning: {len(KEYS)} cell(s) undecided") and "more --repeat" in line
    r = invoke(
        "compare", tmp_path / "a.json", tmp_path / "b.json", "--fail-on-regression", "--json"
    )
    doc = json.loads(r.stdout)
    assert doc["undecided"] == len(KEYS)
    named = [
        (c["backend"], c["device"], c["precision"], c["batch"]) for c in doc["undecided_cells"]
    ]
    assert sorted(named) == sorted(KEYS)
    r = invoke("compare", tmp_path / "a.json", tmp_path / "b.json")  # no gate: no gate warning
    assert "undecided" not in r.stderr


@pytest.mark.parametrize("scale", [1.0, 1.3])
def test_a_run_on_a_busy_machine_cannot_pass_or_fail_the_gate(tmp_path, scale):
    """Its slowdown may be its neighbours', and its "within noise" too: exit 4, not 1 or 0."""
    a, b = make_run(1), rerun(make_run(2, scale=scale))
    b["environment"]["cpu"]["logical_cores"] = 2
    b["environment"]["others_cpu_cores_during"] = 1.9
    pa, pb = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    assert invoke("compare", pa, pb).exit_code == 0  # shown, with the warning
    r = invoke("compare", pa, pb, "--fail-on-regression")
    assert r.exit_code == 4, r.output
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert errors == [
        "error: cannot judge the speed: B ran on a busy machine: other processes used 1.9 of 2 "
        "cores on average while it ran; rerun on a quiet machine"
    ]
    doc = json.loads(invoke("compare", pa, pb, "--json").stdout)
    assert doc["busy"] and doc["busy"][0].startswith("B ran on a busy machine")


def test_a_run_stopped_before_its_end_cannot_pass_the_gate(tmp_path):
    a, b = make_run(1), rerun(make_run(1))
    b |= {"complete": False, "interrupted": "SIGINT"}
    pa, pb = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    assert invoke("compare", pa, pb).exit_code == 0
    r = invoke("compare", pa, pb, "--fail-on-regression")
    assert r.exit_code == 4, r.output
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: B was stopped before its end (interrupted: SIGINT)"
    )
    assert errors[0].endswith(": a gate judges whole runs")


def test_comparing_a_run_with_itself(tmp_path):
    path = write(tmp_path, "a.json", make_run(1))
    r = invoke("compare", path, path)
    assert r.exit_code == 0 and "1.000x" in r.stdout and "within noise" in r.stdout
    # as a gate: one run twice is no comparison of two (see the test below)
    assert invoke("compare", path, path, "--fail-on-regression").exit_code == 4


def test_single_repeat_runs_get_a_weak_block_bootstrap_verdict(tmp_path):
    # Old files: no "repeats", no "complete"; each cell is one run.
    a, b = make_run(1, repeats=1, legacy=True), make_run(2, repeats=1, scale=1.2, legacy=True)
    comp = compare_runs(a, b)
    assert comp.a_complete and comp.b_complete and not comp.warnings
    for c in comp.cells:
        assert c.weak and c.verdict is Verdict.SLOWER and "block bootstrap" in c.method
        assert c.ci_low < c.ratio < c.ci_high
    same = compare_runs(a, make_run(2, repeats=1, legacy=True))
    # One repeat cannot see run-to-run shifts (here +-3%), so unchanged code may come out
    # "slightly" faster or slower, marked weak; never beyond the threshold.
    small = (Verdict.WITHIN_NOISE, Verdict.SLIGHTLY_FASTER, Verdict.SLIGHTLY_SLOWER)
    assert all(c.weak and c.verdict in small for c in same.cells) and not regressions(same)
    # Mixed: repeats on one side only is still single-run evidence for the other.
    mixed = compare_runs(make_run(1, repeats=3), b)
    assert all(c.weak and c.a_repeats == 3 and c.b_repeats == 1 for c in mixed.cells)
    pa, pb = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    r = invoke("compare", pa, pb, "--fail-on-regression")
    assert r.exit_code == 1 and "slower (weak)" in r.stdout and "block bootstrap" in r.stdout
    assert "4 on single-repeat evidence" in r.stderr


def test_unmatched_and_failed_cells_are_listed(tmp_path):
    a = make_run(1, keys=KEYS[:3])
    b = make_run(2, keys=[KEYS[0], KEYS[1], KEYS[3]])
    b["cells"][1] = make_cell(KEYS[1], None, status="error", reason="out of memory")
    skipped = ("torchscript", "cpu", "bf16", 1)
    for run in (a, b):
        run["cells"].append(make_cell(skipped, None, status="skipped", reason="no bf16"))
        run["settings"]["backends"].append("torchscript")  # as bench records it
        run["settings"]["precisions"].append("bf16")
    comp = compare_runs(a, b)
    assert [c.key for c in comp.cells] == [KEYS[0]]
    assert comp.only_in_a == [KEYS[2]] and comp.only_in_b == [KEYS[3]]
    assert [(n.key, n.why) for n in comp.not_comparable] == [(KEYS[1], "B error (out of memory)")]
    r = invoke("compare", write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    assert r.exit_code == 0
    assert "only in A (1): onnxruntime/cpu/fp32/b1" in r.stdout
    assert "only in B (1): onnxruntime/cpu/fp32/b8" in r.stdout
    assert "not comparable: eager/cpu/fp32/b8: B error (out of memory)" in r.stdout
    assert "torchscript" not in r.stdout  # skipped in both: nothing to say


def test_different_model_machine_versions_and_threads_warn(tmp_path):
    a, b = make_run(1), make_run(2)
    b["model"]["meta"] = {"num_classes": 10, "image_size": 64}
    b["model"]["source"] = {"kind": "checkpoint", "path": "x.pt", "seed": None,
                            "file_sha256": "cd" * 32}  # fmt: skip
    b["environment"]["cpu"]["model"] = "Other CPU"
    b["environment"]["versions"]["torch"] = "2.10.0"
    b["settings"]["options"]["threads"] = 4
    warnings = compare_runs(a, b).warnings
    assert warnings[0] == (
        "different model: image size 224 vs 64, classes 1000 vs 10, weights seeded init (seed 0)"
        " vs checkpoint sha256 cdcdcdcdcdcd"
    )
    assert "different machine: cpu Test CPU 9000 vs Other CPU" in warnings
    assert "different library versions: torch 2.9.0 vs 2.10.0" in warnings
    assert "different thread settings: --threads unset vs 4" in warnings
    pa, pb = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    r = invoke("compare", pa, pb, "--allow-different-machines", "--allow-different-models")
    assert r.exit_code == 0
    # Warnings are about the inputs: on stderr, before the table (stdout holds only that).
    assert "warning: different model" in r.stderr and "warning:" not in r.stdout
    assert "compare: B=" in r.stdout
    same_model = rerun(a)
    same_model["model"]["artifacts"]["onnx"] = "ef" * 32
    assert compare_runs(a, same_model).warnings == [
        "different exported artifacts (onnx; sha256 differs): those backends ran different files"
    ]


def test_different_allocator_settings_warn():
    """jemalloc or glibc's tunables change how often large activations are faulted in again,
    so two runs that differ only there are not like for like."""
    a, b = make_run(1), make_run(2)
    b["environment"]["env"] = {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2", "OMP_NUM_THREADS": "2"}
    warnings = compare_runs(a, b).warnings
    assert "different memory allocator settings: LD_PRELOAD unset vs /usr/lib/libjemalloc.so.2" in (
        warnings
    )
    assert "different thread settings: OMP_NUM_THREADS unset vs 2" in warnings
    assert not any("allocator" in w for w in compare_runs(a, rerun(a)).warnings)


def test_options_are_compared_only_where_a_cell_applies_them():
    a, b = make_run(1), make_run(2)  # CPU cells of eager and onnxruntime only
    b["settings"]["options"] |= {"cudnn_benchmark": True, "compile_mode": "max-autotune"}
    assert compare_runs(a, b).warnings == []
    b["cells"][0]["device"] = "cuda"
    b["cells"][1]["backend"] = "compile"
    assert compare_runs(a, b).warnings == [
        "different session options: cudnn_benchmark False vs True, compile_mode default vs "
        "max-autotune"
    ]


def test_machines_with_one_cpu_name_are_told_apart_by_id_flags_cores_kernel_and_load():
    # Two VM generations both called "Intel(R) Xeon(R) Processor": nothing was warned.
    a, b = make_run(1), make_run(2)
    for run, cpu_id, flags, cores, kernel, load in (
        (a, "GenuineIntel family 6 model 207 stepping 2", ["avx2", "avx512f"], 2, "6.1", 0.7),
        (b, "GenuineIntel family 6 model 143 stepping 8", ["avx2", "amx_bf16"], 4, "5.4", 2.9),
    ):
        env = run["environment"]
        env["cpu"] = {"model": "Intel(R) Xeon(R) Processor", "id": cpu_id, "flags": flags,
                      "logical_cores": cores, "usable_cores": 2}  # fmt: skip
        env["platform"], env["load_average_1m"] = f"Linux-{kernel}-x86_64", load
    warnings = compare_runs(a, b).warnings
    assert warnings[0] == (
        "different machine: cpu id GenuineIntel family 6 model 207 stepping 2 vs GenuineIntel "
        "family 6 model 143 stepping 8, cpu flags: only A has avx512f; only B has amx_bf16, "
        "logical cores 2 vs 4"
    )
    assert "different OS: Linux-6.1-x86_64 vs Linux-5.4-x86_64" in warnings
    assert any(
        w.startswith("machine load differed") and "0.7 (A) vs 2.9 (B)" in w for w in warnings
    )
    assert not compare_runs(a, rerun(a)).warnings
    older = rerun(a)  # a file from before the id was recorded: matched by what both record
    del older["environment"]["cpu"]["id"]
    assert compare_runs(a, older).warnings == [
        "hardware only partly checked (cpu id recorded in A only): the machines are matched by "
        "what both files record"
    ]
    assert refusal(a, older) is None


def test_other_processes_sampled_at_the_start_decide_over_the_lagging_load_average():
    # B started right after a sweep: load average 1.8 on an idle machine (0.0 cores in use).
    a, b = make_run(1), make_run(2)
    a["environment"] |= {"load_average_1m": 0.2, "others_cpu_cores": 0.0}
    b["environment"] |= {"load_average_1m": 1.8, "others_cpu_cores": 0.0}
    assert not compare_runs(a, b).warnings
    b["environment"]["others_cpu_cores"] = 1.0  # another process took a core of the two
    assert compare_runs(a, b).warnings == [
        "other processes used 0.0 (A) vs 1.0 (B) cores when the runs started: the busier one "
        "may have been slowed"
    ]
    # Where both record their average over the run, it decides: B's neighbour left at once.
    a["environment"]["others_cpu_cores_during"] = 0.6
    b["environment"]["others_cpu_cores_during"] = 0.05
    assert compare_runs(a, b).warnings == [
        "other processes used 0.6 (A) vs 0.1 (B) cores on average while the runs ran: the busier "
        "one may have been slowed"
    ]


def test_a_run_on_a_busy_machine_is_named_even_when_both_were_busy(tmp_path):
    # Both runs started with 2.0 of 2 cores taken by others: no difference between them, so
    # nothing was said, and the same code came out 0.43x "slower (weak)".
    a, b = make_run(1), make_run(2)
    for run in (a, b):
        run["environment"]["cpu"]["logical_cores"] = 2
        run["environment"]["others_cpu_cores"] = 2.0
    assert compare_runs(a, b).warnings == [
        f"{side} ran on a busy machine: other processes used 2.0 of 2 cores when it started, "
        "so its figures are noisy (bench warned)"
        for side in "AB"
    ]
    b["environment"]["others_cpu_cores"] = 0.5  # a quarter of the cores: not busy
    assert [w[0] for w in compare_runs(a, b).warnings] == ["A", "o"]
    r = invoke("compare", write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    assert r.exit_code == 0 and "A ran on a busy machine" in r.stderr, r.output
    # Quiet when B started, busy while it ran (another job started during the sweep): named.
    b["environment"]["others_cpu_cores_during"] = 1.2
    assert compare_runs(a, b).warnings[1] == (
        "B ran on a busy machine: other processes used 1.2 of 2 cores on average while it ran, "
        "so its figures are noisy (bench warned)"
    )
    # Busy when B started, quiet on average while it ran (a job that ended as it began): the
    # average decides, so neither the warning nor the gate holds it against B.
    b["environment"] |= {"others_cpu_cores": 2.0, "others_cpu_cores_during": 0.1}
    assert not any(w.startswith("B ran on a busy") for w in compare_runs(a, b).warnings)
    assert compare_runs(a, b).busy == [
        "A ran on a busy machine: other processes used 2.0 of 2 cores when it started"
    ]


def test_incomplete_run_is_named_by_compare_and_report(tmp_path):
    a, b = make_run(1), make_run(2, keys=KEYS[:2])
    b["settings"]["backends"] = ["eager", "onnxruntime"]  # 4 cells asked for, 2 finished
    b |= {"complete": False, "interrupted": "SIGTERM"}
    comp = compare_runs(a, b)
    assert comp.a_complete and not comp.b_complete
    assert comp.warnings == ["B is incomplete (interrupted: SIGTERM): 2 of 4 cells finished"]
    assert comp.only_in_a == KEYS[2:]
    pb = write(tmp_path, "b.json", b)
    r = invoke("compare", write(tmp_path, "a.json", a), pb)
    assert r.exit_code == 0 and "B is incomplete (interrupted: SIGTERM)" in r.stderr
    r = invoke("report", pb)
    assert r.exit_code == 0, r.output
    assert "incomplete run (interrupted: SIGTERM): 2 of 4 cells finished" in r.stdout
    assert "incomplete run" not in invoke("report", write(tmp_path, "a.json", a)).stdout


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "nan"])
def test_bad_threshold_is_a_one_line_error(tmp_path, value):
    path = write(tmp_path, "a.json", make_run(1, keys=KEYS[:1]))
    r = invoke("compare", path, path, f"--threshold={value}")
    assert r.exit_code == 2 and "--threshold must be >= 0 and < 1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unreadable_file_is_a_one_line_error(tmp_path):
    good = write(tmp_path, "a.json", make_run(1, keys=KEYS[:1]))
    (tmp_path / "bad.json").write_text("{not json")
    r = invoke("compare", good, tmp_path / "bad.json")
    assert r.exit_code == 2 and "not a readable results file" in r.stderr
    r = invoke("compare", tmp_path / "missing.json", good)
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_incomplete_repeated_run_counts_cell_runs():
    from alexbench.bench.compare import incomplete_description

    payload = {
        "complete": False,
        "interrupted": "SIGINT",
        "settings": {"backends": ["eager"], "devices": ["cpu"], "precisions": ["fp32", "bf16"],
                     "batches": [1, 2], "repeat": 3},
        "cells": [{"runs": 2}, {"runs": 2}, {"runs": 1}, {"runs": 1}],
    }  # fmt: skip
    assert incomplete_description(payload) == "(interrupted: SIGINT): 6 of 12 cell runs finished"


def test_the_threshold_is_symmetric_so_a_slowdown_is_judged_like_a_speed_up():
    tight = {"shift": 0.0003, "sd": 0.0003, "spikes": 0.0}
    base = make_run(1, **tight)
    # B/A 0.9512 (B 5.13% slower in latency): beyond 1 / 1.05 = 0.9524, so slower, as its
    # mirror image 1.0513 is faster; under the old 1 - threshold (0.95) it was within noise.
    slower = compare_runs(base, make_run(2, scale=1.0513, **tight))
    assert all(c.ratio == pytest.approx(0.9512, abs=6e-4) for c in slower.cells)
    assert all(c.verdict is Verdict.SLOWER for c in slower.cells)
    assert len(regressions(slower)) == len(KEYS)
    faster = compare_runs(base, make_run(2, scale=1 / 1.0513, **tight))
    assert all(c.verdict is Verdict.FASTER for c in faster.cells)
    inside = compare_runs(base, make_run(2, scale=1.045, **tight))  # B/A 0.957: a 4.5% change
    assert all(c.verdict is Verdict.SLIGHTLY_SLOWER and c.significant for c in inside.cells)
    assert not regressions(inside)


def test_stripped_single_repeat_files_have_no_interval_and_still_gate(tmp_path):
    # A single repeat and no raw latencies (stripped to shrink the file): no interval can be
    # computed. A 2x slowdown was "within noise" and passed --fail-on-regression.
    a, b = make_run(1, repeats=1), make_run(2, repeats=1, scale=2.0)
    for run in (a, b):
        for cell in run["cells"]:
            cell["latencies_ns"] = []
    comp = compare_runs(a, b)
    assert all(c.verdict is Verdict.NO_INTERVAL and c.ci_low is None for c in comp.cells)
    assert all(c.ratio == pytest.approx(0.5, rel=0.05) for c in comp.cells)
    assert len(regressions(comp)) == len(KEYS)
    r = invoke("compare", write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
               "--fail-on-regression")  # fmt: skip
    assert r.exit_code == 1 and "no interval" in r.stdout and "within noise" not in r.stdout
    assert "4 on the ratio alone, with no interval" in r.stderr
    same = compare_runs(a, a)  # no interval, but no change: not a regression
    assert not regressions(same) and all(c.verdict is Verdict.NO_INTERVAL for c in same.cells)


def test_a_cell_skipped_in_one_run_and_absent_from_the_other_is_not_listed():
    a, b = make_run(1, keys=KEYS[:2]), make_run(2, keys=KEYS[:2])
    a["cells"].append(make_cell(("openvino", "cpu", "fp32", 1), None, status="skipped"))
    assert compare_runs(a, b).only_in_a == []


def test_a_file_marked_complete_with_cells_missing_is_incomplete():
    from alexbench.bench.compare import incomplete_description, is_complete

    run = make_run(1)
    assert is_complete(run)
    run["cells"].pop()  # edited by hand, or cut short without the flag
    assert not is_complete(run)
    assert incomplete_description(run) == "(cells missing): 3 of 4 cells in the file"


def test_a_file_compared_with_itself_is_said_to_be_one_file(tmp_path):
    path = write(tmp_path, "a.json", make_run(1))
    r = invoke("compare", path, path)
    assert r.exit_code == 0 and "warning: A and B hold the same run" in r.stderr
    assert "one file, or a copy of it" in r.stderr
    # A gate given one run twice (a script that picked the newest file twice) passed: exit 4.
    r = invoke("compare", path, path, "--fail-on-regression", "--json")
    assert r.exit_code == 4, r.output
    assert "error: A and B are one results document: a gate compares two" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["identical"] is True and doc["exit_code"] == 4
    assert doc["gate_failures"] == ["A and B are one results document: a gate compares two"]
    copy = write(tmp_path, "copy.json", json.loads(path.read_text()))  # another name: the same
    assert invoke("compare", path, copy, "--fail-on-regression").exit_code == 4


def test_a_byte_copy_under_another_name_is_told_to_be_the_same_run(tmp_path):
    # A copy of the baseline given as the candidate passed silently: every cell within noise.
    run = make_run(1)
    pa, pb = write(tmp_path, "a.json", run), write(tmp_path, "copy.json", run)
    r = invoke("compare", pa, pb, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["warnings"] == [
        "A and B hold the same run (created 2026-11-25T20:32:55+00:00, the same latencies: one "
        "file, or a copy of it): every ratio is 1 by construction"
    ]
    assert not compare_runs(run, rerun(run)).warnings  # the same figures, another start
    assert not compare_runs(run, make_run(2)).warnings  # the same start, other figures


def test_cell_settings_code_and_timing_method_that_differ_are_warned():
    # Matched cells that ran with another memory format, dtype or timing, or other code, were
    # compared with no word: the ratio then measures that change, not the one compared for.
    a, b = make_run(1), make_run(2)
    session = {"torch_threads": 2, "memory_format": "channels_last", "dtype": "float32"}
    for run in (a, b):
        run["environment"]["git_commit"] = "b8ef6dd"
        for cell in run["cells"]:
            cell["session"] = dict(session)
    assert not compare_runs(a, b).warnings
    b["environment"]["git_commit"] = "0c1d2e3-dirty"
    b["cells"][0]["session"]["memory_format"] = "contiguous"
    b["cells"][2]["timing_method"] = "cuda events"
    del b["cells"][3]["session"]["dtype"]  # not recorded on one side: no difference
    assert compare_runs(a, b).warnings == [
        "different alexbench code: git b8ef6dd vs 0c1d2e3-dirty",
        "different cell settings in 2 matched cell(s): eager/cpu/fp32/b1: memory_format "
        "channels_last vs contiguous; onnxruntime/cpu/fp32/b1: timed by perf_counter_ns vs "
        "cuda events",
    ]
    for run, tf32 in ((a, False), (b, True)):
        for cell in run["cells"]:
            cell["session"]["allow_tf32"] = tf32
    warning = compare_runs(a, b).warnings[1]
    assert warning.startswith("different cell settings in 4 matched cell(s)")
    assert warning.endswith("; and 1 more") and warning.count("allow_tf32 False vs True") == 3
    # What varies from run to run is no setting: compile times, call counts, a cache hit; and
    # thread counts are warned once for the run ("different thread settings").
    a, b = make_run(1), make_run(2)
    for run, seconds, hit in ((a, 2.04, True), (b, 7.58, False)):
        for cell in run["cells"]:
            cell["session"] = {"compile_s": seconds, "timing_evidence": {"calls": int(seconds)},
                               "optimized_model_cache": {"hit": hit, "entry": "/x" * 40},
                               "intra_op_num_threads": int(seconds)}  # fmt: skip
    assert not compare_runs(a, b).warnings
    a["cells"][0]["session"]["providers"] = ["CPUExecutionProvider"]
    b["cells"][0]["session"]["providers"] = ["CUDAExecutionProvider"] * 5
    (warning,) = compare_runs(a, b).warnings
    assert warning == (  # a long value is cut short, not dumped whole
        "different cell settings in 1 matched cell(s): eager/cpu/fp32/b1: providers "
        "['CPUExecutionProvider'] vs ['CUDAExecutionProvider', 'CUDAExecut..."
    )


# ------------------------------------------------------------------ machines and models


def _with(run: dict, **env) -> dict:
    run = copy.deepcopy(run)
    run["environment"] |= env
    return run


REFUSALS = {
    "cpu": (lambda r: r["environment"]["cpu"].update(model="Other CPU"),
            "error: A ran on Test CPU 9000, B on Other CPU: figures from different machines are "
            "not comparable (--allow-different-machines to compare anyway)"),
    "cpu-flags": (lambda r: r["environment"]["cpu"].update(flags=["avx2"]),
                  "error: A and B ran on different machines (cpu flags: only A has avx512f): "
                  "figures from different machines"),
    "gpu": (lambda r: r["environment"].update(gpu={"name": "NVIDIA H100"}),
            "error: A ran on no GPU, B on NVIDIA H100: figures from different machines"),
    "no-cpu": (lambda r: r["environment"]["cpu"].update(model=None),
               "error: B records no CPU model: the runs cannot be shown to come from one "
               "machine: figures from different machines are not comparable "
               "(--allow-different-machines to compare anyway)"),
    "empty-cpu-name": (lambda r: r["environment"]["cpu"].update(model=""),
                       "error: B records no CPU model: the runs cannot be shown"),
    "model": (lambda r: r["model"]["meta"].update(num_classes=10),
              "error: A and B timed different models (classes 1000 vs 10): their figures are "
              "not comparable (--allow-different-models to compare anyway)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
def test_runs_of_other_machines_or_models_are_refused_unless_allowed(tmp_path, case):
    # B 20% slower: compare called it "slower" and --fail-on-regression exited 1, with a
    # warning on stdout, though the two figures came from different machines or models.
    mutate, message = REFUSALS[case]
    # The GPU decides only where a cell ran on it (see the next test).
    keys = (
        [("eager", "cuda", "fp32", 1), ("eager", "cuda", "fp32", 8)] if case == "gpu" else KEYS[:2]
    )
    a, b = make_run(1, keys=keys), make_run(2, keys=keys, scale=1.2)
    a["environment"]["cpu"]["flags"] = ["avx2", "avx512f"]
    b["environment"]["cpu"]["flags"] = ["avx2", "avx512f"]
    mutate(b)
    pa, pb = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    for args in ([], ["--fail-on-regression"], ["--json"]):
        r = invoke("compare", pa, pb, *args)
        assert r.exit_code == 2 and r.stdout == "", r.output
        assert r.stderr.strip().splitlines() == [r.stderr.strip()]
        assert r.stderr.startswith(message), r.stderr
    allow = "--allow-different-models" if case == "model" else "--allow-different-machines"
    r = invoke("compare", pa, pb, "--fail-on-regression", allow)  # today's behaviour
    assert r.exit_code == 1 and "slower" in r.stdout, r.output
    unchecked = case in ("no-cpu", "empty-cpu-name")
    told = "warning: hardware cannot be checked" if unchecked else "warning: different m"
    assert told in r.stderr and "warning" not in r.stdout


def test_a_gpu_seen_by_one_of_two_cpu_only_runs_does_not_refuse_them(tmp_path):
    # CUDA_VISIBLE_DEVICES= on one side: the same CPU measured the same cells.
    a, b = make_run(1, keys=KEYS[:2]), make_run(2, keys=KEYS[:2])
    b["environment"]["gpu"] = {"name": "NVIDIA H100", "capability": "9.0"}
    r = invoke("compare", write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    assert r.exit_code == 0 and "within noise" in r.stdout, r.output


def test_software_differences_on_one_machine_are_compared_with_a_warning_on_stderr(tmp_path):
    a = make_run(1, keys=KEYS[:2])
    b = copy.deepcopy(make_run(2, keys=KEYS[:2]))
    b["environment"]["versions"]["torch"] = "2.10.0"  # the main use: torch A against torch B
    b["environment"]["host"] = "vm2"  # same hardware, another box: a warning, not a refusal
    b["settings"]["options"]["threads"] = 4
    pa, pb = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    r = invoke("compare", pa, pb, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # nothing but the document on stdout
    assert "different library versions: torch 2.9.0 vs 2.10.0" in doc["warnings"]
    assert "warning: different library versions: torch 2.9.0 vs 2.10.0" in r.stderr
    assert "warning: different host: vm vs vm2 (same cpu and gpu model)" in r.stderr
    r = invoke("compare", pa, pb)
    assert r.exit_code == 0 and "warning" not in r.stdout and "within noise" in r.stdout


def test_an_interval_bound_that_excludes_1_never_prints_as_1():
    # [1.00038, 1.236] beside "faster" printed as [1.000, 1.236]: touching 1.
    from dataclasses import replace

    from alexbench.report import compare_table

    comp = compare_runs(make_run(1), make_run(2, scale=0.8))
    comp.cells = [replace(comp.cells[0], ci_low=1.00038, ci_high=1.236)]
    (row,) = compare_table(comp, ("a", "b")).rows
    assert "[1.0004, 1.236]" in [e.text for e in row]
    comp.cells = [replace(comp.cells[0], ci_low=0.95, ci_high=0.99996)]
    (row,) = compare_table(comp, ("a", "b")).rows
    assert "[0.950, 0.99996]" in [e.text for e in row]


def test_a_warning_quoting_a_name_with_a_newline_stays_one_line(tmp_path):
    a, b = make_run(1), make_run(2)
    b["environment"]["host"] = "[bold red]host[/]\nsecond line"
    r = invoke("compare", write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    assert r.exit_code == 0, r.output
    (line,) = [x for x in r.stderr.splitlines() if "different host" in x]
    assert "[bold red]host[/]\\nsecond line" in line and "second line" not in r.stderr.replace(
        line, ""
    )
