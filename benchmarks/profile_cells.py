"""Where the time of a bench cell goes: torch.profiler over the same session `bench` times.

The GPU check runs this once, so that a target the first GPU run misses (issue 11: batch 256 at
>= 30% of the tensor-core ceiling, batch 1 with graphs at <= 0.3 ms) comes back with its answer:
the kernels that take the device time, the share spent in matrix kernels (GEMM/convolution) and
the host time per call (at batch 1, launch overhead shows as host time well above device time).

    python benchmarks/profile_cells.py --device cuda --precision bf16 --batch 1,256 --out P.json

The model is the seeded AlexNet (no checkpoint, no artifacts: the eager runtime needs none).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from alexbench.checkpoint import load_model
from alexbench.devices import Device
from alexbench.inputs import random_inputs
from alexbench.precision import Precision
from alexbench.runtimes import Backend, ModelBundle, SessionOptions, get_runtime

# Kernel names of the matrix work (cuBLAS/cuDNN/CUTLASS on NVIDIA, oneDNN/MKL on CPUs): a
# coarse split, enough to tell "the GEMMs are slow" from "the time is elsewhere".
MATRIX_WORDS = ("gemm", "conv", "cutlass", "xmma", "wgmma", "sm90", "cudnn", "mkldnn", "addmm")
TOP = 12


def _is_matrix(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in MATRIX_WORDS)


def profile_cell(
    backend: Backend, device: Device, precision: Precision, batch: int, size: int, classes: int,
    iters: int,
) -> dict[str, Any]:  # fmt: skip
    loaded = load_model(seed=0, num_classes=classes, image_size=size)
    bundle = ModelBundle(loaded, {})
    session = get_runtime(backend).load(bundle, device, precision, SessionOptions())
    prepared = session.prepare(random_inputs(batch, size).batch)  # bench's kind of input
    for _ in range(5):  # cuDNN autotuning and compilation stay out of the profile
        session.run(prepared)
    session.synchronize()
    cuda = device is Device.CUDA
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(iters):
            session.run(prepared)
        session.synchronize()
    wall_us = (time.perf_counter() - start) * 1e6
    session.close()
    if cuda:
        # The kernels themselves (an aten op's device time is its kernels' again: summing both
        # would count each kernel twice), by name.
        kernels: dict[str, tuple[int, float]] = {}
        for e in prof.events():
            if e.device_type == DeviceType.CUDA:
                calls, us = kernels.get(e.name, (0, 0.0))
                kernels[e.name] = (calls + 1, us + e.time_range.elapsed_us())
        rows = [(name, calls, us) for name, (calls, us) in kernels.items()]
    else:  # on a CPU each op's self time is the work, counted once
        rows = [(e.key, e.count, e.self_cpu_time_total) for e in prof.key_averages()]
    rows = sorted((r for r in rows if r[2] > 0), key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    matrix = sum(r[2] for r in rows if _is_matrix(r[0]))
    return {
        "backend": backend.value, "device": device.value, "precision": precision.value,
        "batch": batch, "image_size": size, "iterations": iters,
        "time_kind": "device (CUDA kernels)" if cuda else "host (CPU ops, self time)",
        "per_call_us": round(total / iters, 1),
        "wall_per_call_us": round(wall_us / iters, 1),  # profiled: overhead included
        "matrix_share": round(matrix / total, 3) if total else None,
        "top": [
            {"name": name[:120], "calls": calls, "us_per_call": round(us / iters, 1),
             "share": round(us / total, 3)}
            for name, calls, us in rows[:TOP]
        ],
    }  # fmt: skip


def _print(result: dict[str, Any]) -> None:
    head = (
        f"{result['backend']} {result['device']} {result['precision']} batch {result['batch']}: "
        f"{result['per_call_us']} us/call of {result['time_kind']}, "
        f"{result['wall_per_call_us']} us/call wall (profiled), matrix kernels "
        f"{result['matrix_share']:.0%} of it"
    )
    print(head)
    for row in result["top"]:
        share, us, calls = row["share"], row["us_per_call"], row["calls"]
        print(f"  {share:6.1%} {us:10.1f} us  x{calls:<5} {row['name']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--backend", default="eager")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--batch", default="1,256", help="comma-separated batch sizes")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    backend, device = Backend(args.backend), Device(args.device)
    precision = Precision(args.precision)
    results = []
    for batch in (int(b) for b in args.batch.split(",")):
        result = profile_cell(
            backend, device, precision, batch, args.image_size, args.num_classes, args.iters
        )
        _print(result)
        results.append(result)
    doc = {"torch": torch.__version__, "cells": results}
    if device is Device.CUDA:
        doc["gpu"] = torch.cuda.get_device_name()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
