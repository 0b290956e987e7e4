"""A/B of the compile runtime's CPU options on this machine, through the real runtime: Inductor
freezing on against off (fp32, bf16), and the int8 program's input layout (channels_last against
contiguous). Sessions are compiled once, then timed in alternating rounds in one process so both
sides of each pair see the same machine state.

    python benchmarks/compile_options_check.py --artifacts exports/latest --batch 1,64 --rounds 5

`--artifacts` is a folder exported with --calib-data (it needs the pt2-int8 file for the int8
pair). Prints per (pair, batch) the median latency of each side and the median over rounds of
B / A (< 1: B is faster); --out writes the same as JSON. Defaults come from this ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexbench.devices import Device
from alexbench.environment import capture
from alexbench.exporters import model_for_artifacts
from alexbench.exporters.manifest import Manifest
from alexbench.precision import Precision
from alexbench.runtimes import ArtifactFormat, ModelBundle
from alexbench.runtimes.compile import CompileRuntime


def session(bundle: Any, precision: Precision, freezing: bool, channels_last: bool) -> Any:
    s = CompileRuntime().load(bundle, Device.CPU, precision)
    s._freezing = freezing  # before the first call: the trace reads it
    s._channels_last = channels_last
    return s


def timed(s: Any, x: torch.Tensor, seconds: float) -> float:
    for _ in range(3):
        s.run(x)
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.perf_counter_ns()
        s.run(x)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--pairs", default="freezing-fp32,freezing-bf16,layout-int8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    loaded = model_for_artifacts(args.artifacts)
    manifest = Manifest.load(args.artifacts)
    assert manifest is not None, f"{args.artifacts} has no manifest"
    # The files as they are (prepare_bundle would drop the int8 one without calibration images).
    paths = {ArtifactFormat(k): args.artifacts / r.path for k, r in manifest.artifacts.items()}
    bundle = ModelBundle(loaded, paths, {}, args.artifacts)
    pairs: dict[str, tuple[Precision, tuple[bool, bool], tuple[bool, bool]]] = {
        # name: precision, A (freezing, channels_last), B
        "freezing-fp32": (Precision.FP32, (False, True), (True, True)),
        "freezing-bf16": (Precision.BF16, (False, True), (True, True)),
        "layout-int8": (Precision.INT8, (True, False), (True, True)),
    }
    rows = []
    rng = np.random.default_rng(0)
    for name in args.pairs.split(","):
        precision, a_opts, b_opts = pairs[name]
        a, b = session(bundle, precision, *a_opts), session(bundle, precision, *b_opts)
        for batch in [int(v) for v in args.batch.split(",")]:
            x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
            xa, xb = a.prepare(x), b.prepare(x)
            a.run(xa), b.run(xb)  # compile both before timing
            a_ms, b_ms, ratios = [], [], []
            for r in range(args.rounds):
                sides = [("a", a, xa), ("b", b, xb)]
                got = {k: timed(s, xi, args.seconds) for k, s, xi in sides[:: 1 if r % 2 else -1]}
                a_ms.append(got["a"])
                b_ms.append(got["b"])
                ratios.append(got["b"] / got["a"])
            row = {
                "pair": name, "batch": batch, "a": a_opts, "b": b_opts,
                "a_ms": statistics.median(a_ms), "b_ms": statistics.median(b_ms),
                "ratio_b_over_a": statistics.median(ratios), "ratios": ratios,
            }  # fmt: skip
            rows.append(row)
            print(
                f"{name} b{batch}: A {row['a_ms']:.2f} ms, B {row['b_ms']:.2f} ms, B/A "
                f"{row['ratio_b_over_a']:.3f} (rounds {', '.join(f'{v:.3f}' for v in ratios)})",
                flush=True,
            )
        a.close(), b.close()
    if args.out:
        doc = {"machine": capture()["cpu"], "torch": torch.__version__, "rows": rows}
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
