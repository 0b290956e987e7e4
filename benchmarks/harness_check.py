"""Checks that the benchmark harness itself can be trusted (issue 3's numbers).

1. Overhead: timing a runtime that does nothing costs <= 10 us per iteration on CPU.
2. Truth: for ONNX Runtime and eager PyTorch (fp32, CPU) at batch 1 and 64, alexbench's median
   (`time_session` over an alexbench Session) agrees within 5% with an INDEPENDENT bare loop: its
   own `onnxruntime.InferenceSession` created directly from the exported .onnx file, or its own
   `alexbench.model.AlexNet` loaded with a copy of the weights, fed its own inputs of the same
   shape, timed with a plain `perf_counter_ns` loop. Rounds are interleaved (A B, B A, ...) so
   that drift on a shared machine hits both alike; the median of the per-round ratios is
   reported. Sharing nothing with the harness, this would catch a harness session that runs a
   different model, configuration or input than a user's own code would.
3. Stability: back-to-back alexbench runs of the same cell give medians within 5%.

Usage: python benchmarks/harness_check.py [--rounds 6] [--seconds 3] [--batches 1,64]
       [--threads N] [--out results/harness-check_<host>_cpu.json] [--quick]
Run it on an otherwise idle machine: the load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexbench.bench.stats import compute_stats
from alexbench.bench.timer import RunLength, time_session
from alexbench.checkpoint import load_model
from alexbench.devices import Device
from alexbench.environment import busy_warning, capture
from alexbench.exporters import prepare_bundle
from alexbench.model import AlexNet
from alexbench.precision import Precision
from alexbench.runtimes import ArtifactFormat, Backend, ModelBundle, SessionOptions, get_runtime
from alexbench.runtimes.base import Session

WARMUP = 3
MIN_ITERS = 10
INPUTS = 3  # distinct batches rotated, as the harness does
TRUTH_LIMIT = 0.05
STABILITY_LIMIT = 0.05
OVERHEAD_LIMIT_US = 10.0


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
        "limit_us": OVERHEAD_LIMIT_US,
        "passed": per_iter_wall <= OVERHEAD_LIMIT_US,
    }


# --- the independent bare loops: nothing from alexbench's runtimes, timer or inputs -------------


def bare_onnxruntime(onnx_path: Path, shape: tuple[int, ...], threads: int | None) -> Callable:
    """A fresh ORT session straight from the file, as a user would write it (ORT's defaults are
    ORT_ENABLE_ALL and one intra-op thread per core; `threads` sets the latter as alexbench's
    --threads does). Returns a function timing `seconds` of runs -> median ms."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    rng = np.random.default_rng(12345)  # not the harness's seed: its own data
    feeds = [{in_name: rng.standard_normal(shape, dtype=np.float32)} for _ in range(INPUTS)]

    def timed(seconds: float) -> float:
        for i in range(WARMUP):
            sess.run([out_name], feeds[i % INPUTS])
        lat = []
        deadline = time.perf_counter_ns() + int(seconds * 1e9)
        i = 0
        while True:
            feed = feeds[i % INPUTS]
            t0 = time.perf_counter_ns()
            sess.run([out_name], feed)
            t1 = time.perf_counter_ns()
            lat.append(t1 - t0)
            i += 1
            if i >= MIN_ITERS and t1 >= deadline:
                break
        return float(np.median(lat) / 1e6)

    return timed


def bare_eager(state_dict: dict[str, torch.Tensor], num_classes: int, shape: tuple) -> Callable:
    """Its own AlexNet with a copy of the weights, in a plain `torch.inference_mode()` loop."""
    model = AlexNet(num_classes)
    model.load_state_dict({k: v.clone() for k, v in state_dict.items()})
    model.eval()
    gen = torch.Generator().manual_seed(12345)
    xs = [torch.randn(shape, generator=gen) for _ in range(INPUTS)]

    def timed(seconds: float) -> float:
        lat = []
        with torch.inference_mode():
            for i in range(WARMUP):
                model(xs[i % INPUTS])
            deadline = time.perf_counter_ns() + int(seconds * 1e9)
            i = 0
            while True:
                x = xs[i % INPUTS]
                t0 = time.perf_counter_ns()
                model(x)
                t1 = time.perf_counter_ns()
                lat.append(t1 - t0)
                i += 1
                if i >= MIN_ITERS and t1 >= deadline:
                    break
        return float(np.median(lat) / 1e6)

    return timed


# --- the harness side --------------------------------------------------------------------------


def harness(
    bundle: ModelBundle, backend: Backend, shape: tuple, threads: int | None
) -> tuple[Callable, dict]:
    """alexbench's own path: runtime.load -> prepare -> time_session -> compute_stats. Returns
    the timing function and the session's `info()` (providers, threads, flags)."""
    session = get_runtime(backend).load(
        bundle, Device.CPU, Precision.FP32, SessionOptions(threads=threads)
    )
    rng = np.random.default_rng(0)
    prepared = [session.prepare(rng.standard_normal(shape, dtype=np.float32)) for _ in range(3)]

    def timed(seconds: float) -> float:
        t = time_session(session, prepared, RunLength(WARMUP, seconds, MIN_ITERS))
        return compute_stats(t.latencies_ns, shape[0], t.wall_ns).p50_ms

    return timed, session.info()


def truth_and_stability(ours: Callable, bare: Callable, batch: int, rounds: int, seconds: float):
    ours_ms, bare_ms, order = [], [], []
    # One untimed round first: one-off costs (page faults on the weights, oneDNN primitive
    # creation, ORT's thread pool start) land in neither side's first measured round.
    ours(min(seconds, 0.5))
    bare(min(seconds, 0.5))
    for r in range(rounds):
        # A B, B A, ...: whichever runs second in a round is not systematically favoured by drift.
        if r % 2:
            bare_ms.append(bare(seconds))
            ours_ms.append(ours(seconds))
            order.append("bare,alexbench")
        else:
            ours_ms.append(ours(seconds))
            bare_ms.append(bare(seconds))
            order.append("alexbench,bare")
    ratios = [a / b for a, b in zip(ours_ms, bare_ms, strict=True)]
    median_ratio = float(np.median(ratios))
    stab = [abs(ours_ms[i + 1] / ours_ms[i] - 1) for i in range(len(ours_ms) - 1)]
    return {
        "batch": batch,
        "order": order,
        "alexbench_p50_ms": ours_ms,
        "bare_loop_p50_ms": bare_ms,
        "ratio_alexbench_over_bare": ratios,
        "median_ratio": median_ratio,
        "truth_limit": TRUTH_LIMIT,
        "truth_passed": abs(median_ratio - 1) <= TRUTH_LIMIT,
        "back_to_back_rel_diff": stab,
        "stability_limit": STABILITY_LIMIT,
        "stability_passed": bool(stab) and float(np.median(stab)) <= STABILITY_LIMIT,
    }


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname())[:40] or "host"


def summary_lines(report: dict[str, Any]) -> list[str]:
    env, th = report["environment"], report["threads"]
    ov = report["overhead"]
    lines = [
        f"harness check on {report['machine']}: {env['cpu']['model']}, "
        f"{env['cpu']['usable_cores']} usable cores; torch threads {th['torch']}, "
        f"ORT intra-op threads {th['onnxruntime_intra_op']}; "
        f"load average {env.get('load_average_1m')}",
        f"overhead (no-op runtime): {ov['wall_per_iteration_us']:.2f} us per iteration "
        f"(limit {ov['limit_us']:.0f} us) {'PASS' if ov['passed'] else 'FAIL'}",
        f"{'runtime':<14}{'batch':>6}{'alexbench p50':>15}{'bare p50':>11}{'ratio':>8}"
        f"{'truth':>7}  back-to-back",
    ]
    for key, runtime in (("onnxruntime_cpu_fp32", "onnxruntime"), ("eager_cpu_fp32", "eager")):
        for row in report.get(key, []):
            stab = row["back_to_back_rel_diff"]
            span = f"{min(stab):.1%}-{max(stab):.1%}" if stab else "-"
            lines.append(
                f"{runtime:<14}{row['batch']:>6}{np.median(row['alexbench_p50_ms']):>12.3f} ms"
                f"{np.median(row['bare_loop_p50_ms']):>8.3f} ms{row['median_ratio']:>8.3f}"
                f"{'PASS' if row['truth_passed'] else 'FAIL':>7}  {span} "
                f"{'PASS' if row['stability_passed'] else 'FAIL'}"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path("results") / f"harness-check_{_host()}_cpu.json"
    )
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batches", default="1,64", help="comma list of batch sizes")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for both sides")
    ap.add_argument(
        "--quick", action="store_true", help="try it out: batches 1,8, 2 rounds of 0.5 s"
    )
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rounds, seconds = args.rounds, args.seconds
    if args.quick:
        batches, rounds, seconds = [1, 8], 2, 0.5
    busy = busy_warning()
    if busy:
        print(f"warning: {busy}")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model()
    size = loaded.meta.image_size
    report: dict[str, Any] = {
        "machine": socket.gethostname(),
        "settings": {"rounds": rounds, "seconds": seconds, "batches": batches, "quick": args.quick},
        "threads": {
            "torch": torch.get_num_threads(),
            "onnxruntime_intra_op": args.threads or "ORT default (one per core)",
        },
        "creation_order": "per runtime and batch: the alexbench session, then the bare one, after "
        "one throwaway ORT session",
        "bare_loops": {
            "onnxruntime": "own onnxruntime.InferenceSession from the .onnx file (ORT defaults), "
            "own random inputs, perf_counter_ns around each sess.run",
            "eager": "own alexbench.model.AlexNet with a copy of the weights, own inputs, "
            "perf_counter_ns around each call inside one torch.inference_mode()",
        },
    }
    report["overhead"] = overhead_us()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = prepare_bundle(loaded, Path(tmp), [ArtifactFormat.ONNX])
        onnx_path = bundle.artifacts[ArtifactFormat.ONNX]
        sd = loaded.model.state_dict()
        # A throwaway ORT session first: on this VM the first ORT session created in a process
        # ran ~3-5% slower at batch 1 than later ones, whoever created it (memory placement),
        # which would bias the ratio by creation order instead of measuring the harness.
        bare_onnxruntime(onnx_path, (1, 3, size, size), args.threads)(0.2)
        for key, backend in (
            ("onnxruntime_cpu_fp32", Backend.ONNXRUNTIME),
            ("eager_cpu_fp32", Backend.EAGER),
        ):
            report[key] = []
            for b in batches:
                shape = (b, 3, size, size)
                ours, info = harness(bundle, backend, shape, args.threads)
                if backend is Backend.ONNXRUNTIME:
                    bare = bare_onnxruntime(onnx_path, shape, args.threads)
                else:
                    bare = bare_eager(sd, loaded.meta.num_classes, shape)
                row = truth_and_stability(ours, bare, b, rounds, seconds)
                report[key].append({**row, "alexbench_session": info})
                del ours, bare
    report["environment"] = capture()  # after the runs: the load average covers them
    print(json.dumps({k: v for k, v in report.items() if k != "environment"}, indent=2))
    print("\n".join(summary_lines(report)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
