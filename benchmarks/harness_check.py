"""Checks that the benchmark harness itself can be trusted (issue 3's numbers).

1. Overhead: timing a runtime that does nothing costs <= 10 us per iteration on CPU.
2. Truth: for ONNX Runtime fp32 on CPU at batch 1 and 64, alexbench's median agrees within 5%
   with a bare `perf_counter` loop over the same session, in the same process (interleaved
   A/B/A/B rounds so that drift on a shared machine hits both alike).
3. Stability: two back-to-back alexbench runs of the same cell give medians within 5%.

Usage: python benchmarks/harness_check.py [--out results/harness-check.json] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from alexbench.bench.stats import compute_stats
from alexbench.bench.timer import RunLength, time_session
from alexbench.checkpoint import load_model
from alexbench.devices import Device
from alexbench.environment import capture
from alexbench.exporters import prepare_bundle
from alexbench.precision import Precision
from alexbench.runtimes import ArtifactFormat, Backend, get_runtime
from alexbench.runtimes.base import Session


class NullSession(Session):
    device = Device.CPU
    precision = Precision.FP32

    def prepare(self, batch):
        return batch

    def run(self, inputs):
        return inputs

    def to_numpy(self, outputs):
        return outputs


def overhead_us() -> dict:
    t = time_session(NullSession(), [0, 1, 2], RunLength(100, 0.5, 100_000, 100_000))
    per_iter_wall = t.wall_ns / len(t.latencies_ns) / 1e3
    return {
        "iterations": len(t.latencies_ns),
        "median_recorded_us": float(np.median(t.latencies_ns) / 1e3),
        "wall_per_iteration_us": per_iter_wall,
        "limit_us": 10.0,
        "passed": per_iter_wall <= 10.0,
    }


def bare_loop_ms(sess, feeds: list[dict], seconds: float) -> float:
    lat = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds or i < 10:
        f = feeds[i % len(feeds)]
        t0 = time.perf_counter()
        sess.run(["logits"], f)
        lat.append(time.perf_counter() - t0)
        i += 1
    return float(np.median(lat) * 1e3)


def truth_and_stability(bundle, batch: int, rounds: int, seconds: float) -> dict:
    session = get_runtime(Backend.ONNXRUNTIME).load(bundle, Device.CPU, Precision.FP32)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((batch, 3, 224, 224), dtype=np.float32) for _ in range(3)]
    prepared = [session.prepare(x) for x in xs]
    feeds = prepared  # the CPU session's prepared inputs are ORT feed dicts
    rl = RunLength(warmup=3, min_seconds=seconds, min_iters=10)
    ours, bare = [], []
    for r in range(rounds):
        # ABBA order: whichever runs second in a round is not systematically favoured by drift.
        if r % 2:
            bare.append(bare_loop_ms(session.sess, feeds, seconds))
        t = time_session(session, prepared, rl)
        ours.append(compute_stats(t.latencies_ns, batch, t.wall_ns).p50_ms)
        if not r % 2:
            bare.append(bare_loop_ms(session.sess, feeds, seconds))
    ratios = [a / b for a, b in zip(ours, bare, strict=True)]
    # Stability: consecutive alexbench runs of the same cell.
    stab = [abs(ours[i + 1] / ours[i] - 1) for i in range(len(ours) - 1)]
    return {
        "batch": batch,
        "alexbench_p50_ms": ours,
        "bare_loop_p50_ms": bare,
        "ratio_alexbench_over_bare": ratios,
        "median_ratio": float(np.median(ratios)),
        "truth_passed": abs(float(np.median(ratios)) - 1) <= 0.05,
        "back_to_back_rel_diff": stab,
        "stability_passed": bool(stab) and float(np.median(stab)) <= 0.05,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    loaded = load_model()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = prepare_bundle(loaded, Path(tmp), [ArtifactFormat.ONNX])
        report = {
            "machine": platform.node(),
            "environment": capture(),
            "overhead": overhead_us(),
            "onnxruntime_cpu_fp32": [
                truth_and_stability(bundle, b, args.rounds, args.seconds) for b in (1, 64)
            ],
        }
    print(json.dumps({k: v for k, v in report.items() if k != "environment"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
