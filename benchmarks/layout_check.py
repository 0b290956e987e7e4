"""Memory layout A/B for the PyTorch runtimes on this machine: NCHW (contiguous) against NHWC
(channels_last), per precision and batch size, eager PyTorch, in one process with alternating
rounds so both sides see the same machine state.

    python benchmarks/layout_check.py --batch 1,64 --precision fp32,bf16 --rounds 5 --seconds 2

Prints one line per (precision, batch): the median per-call latency of each layout and the
median over rounds of the channels_last / contiguous ratio (< 1: channels_last is faster), and
writes the same as JSON with --out. Decisions about the runtimes' default layout come from this
ratio, measured on the machine the results are quoted for.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from alexbench.environment import capture
from alexbench.model import build_alexnet

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def timed(module: torch.nn.Module, x: torch.Tensor, seconds: float) -> float:
    """Median per-call latency in ms over `seconds` of back-to-back calls (after 3 warm-ups)."""
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        samples: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(samples) < 5:
            t0 = time.perf_counter_ns()
            module(x)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = build_alexnet(num_classes=1000, seed=0).eval()
    rows = []
    for name in args.precision.split(","):
        dtype = DTYPES[name]
        nchw = base.to(dtype=dtype)
        nhwc = build_alexnet(num_classes=1000, seed=0).eval().to(dtype=dtype)
        nhwc = nhwc.to(memory_format=torch.channels_last)
        for batch in [int(b) for b in args.batch.split(",")]:
            x = torch.randn(batch, 3, 224, 224).to(dtype)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            ratios, a_ms, b_ms = [], [], []
            for r in range(args.rounds):
                order = [("nchw", nchw, x), ("nhwc", nhwc, x_cl)]
                got = {}
                for label, module, inp in order if r % 2 == 0 else order[::-1]:
                    got[label] = timed(module, inp, args.seconds)
                a_ms.append(got["nchw"])
                b_ms.append(got["nhwc"])
                ratios.append(got["nhwc"] / got["nchw"])
            row = {
                "precision": name,
                "batch": batch,
                "contiguous_ms": statistics.median(a_ms),
                "channels_last_ms": statistics.median(b_ms),
                "ratio_channels_last_over_contiguous": statistics.median(ratios),
                "ratios": ratios,
            }
            rows.append(row)
            ratio = row["ratio_channels_last_over_contiguous"]
            print(
                f"{name} b{batch}: contiguous {row['contiguous_ms']:.2f} ms, channels_last "
                f"{row['channels_last_ms']:.2f} ms, ratio {ratio:.3f} "
                f"(rounds: {', '.join(f'{v:.3f}' for v in ratios)})",
                flush=True,
            )
    if args.out:
        env = capture()
        doc = {
            "machine": env["cpu"],
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "rows": rows,
        }
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
