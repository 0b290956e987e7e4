"""The strongest tools run by hand, the way their documentation shows, on the same exported files
alexbench benchmarks: the yardstick for alexbench's best cells (issue 12). Nothing here goes
through alexbench's runtimes; only the model files and the input tensor are shared.

    python benchmarks/peers_by_hand.py --artifacts exports/latest --batch 1,64 --rounds 3 \
        --out results/xeon-2c/peers-by-hand_vm_cpu.json

`--artifacts` is a folder exported with --calib-data (alexnet.onnx, alexnet.int8.onnx,
alexnet.pt2, alexnet.int8.pt2). Each peer is loaded once and compiled for each batch size; then
every peer is timed in turn, `--rounds` times, the order reversed every other round, so slow drift
of a shared machine spreads over all of them. Prints per (peer, batch) the median per-call
latency over rounds (each round's figure is the median of `--seconds` of back-to-back calls) and
images/s = batch / that median.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Runner = Callable[[np.ndarray], object]


def onnxruntime_peer(path: Path) -> Callable[[int], Runner]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # defaults
    return lambda batch: lambda x: sess.run(None, {"input": x})


def openvino_peer(path: Path, precision: str, size: int) -> Callable[[int], Runner]:
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}

    def for_batch(batch: int) -> Runner:
        model = core.read_model(str(path))
        model.reshape([batch, 3, size, size])  # static shapes: OpenVINO's fastest case
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})

    return for_batch


def torch_compile_peer(model: torch.nn.Module, dtype: torch.dtype) -> Callable[[int], Runner]:
    # The recipe Intel's and PyTorch's CPU guides give: eval, channels_last, freezing, compile.
    torch._inductor.config.freezing = True
    module = copy.deepcopy(model).eval().to(dtype=dtype, memory_format=torch.channels_last)
    compiled = torch.compile(module)

    def for_batch(batch: int) -> Runner:
        def run(x: np.ndarray) -> object:
            with torch.inference_mode():
                t = torch.from_numpy(x).to(dtype).contiguous(memory_format=torch.channels_last)
                return compiled(t)

        return run

    return for_batch


def pt2e_int8_peer(path: Path) -> Callable[[int], Runner]:
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401 (lowering)

    torch._inductor.config.freezing = True
    program = torch.export.load(str(path)).module()
    compiled = torch.compile(program)

    def for_batch(batch: int) -> Runner:
        def run(x: np.ndarray) -> object:
            with torch.inference_mode():
                return compiled(torch.from_numpy(x))

        return run

    return for_batch


def median_ms(run: Runner, x: np.ndarray, seconds: float) -> float:
    for _ in range(3):
        run(x)
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.perf_counter_ns()
        run(x)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--peers", default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    art = args.artifacts
    from alexbench.exporters import model_for_artifacts

    model = model_for_artifacts(art).model  # the eager nn.Module the artifacts were made from
    size = json.loads((art / "manifest.json").read_text())["model"]["image_size"]
    peers: dict[str, Callable[[], Callable[[int], Runner]]] = {
        "onnxruntime fp32": lambda: onnxruntime_peer(art / "alexnet.onnx"),
        "onnxruntime int8 (static QDQ)": lambda: onnxruntime_peer(art / "alexnet.int8.onnx"),
        "openvino fp32": lambda: openvino_peer(art / "alexnet.onnx", "f32", size),
        "openvino bf16": lambda: openvino_peer(art / "alexnet.onnx", "bf16", size),
        "openvino int8 (static QDQ)": lambda: openvino_peer(art / "alexnet.int8.onnx", "f32", size),
        "torch.compile fp32 channels_last": lambda: torch_compile_peer(model, torch.float32),
        "torch.compile bf16 channels_last": lambda: torch_compile_peer(model, torch.bfloat16),
        "torch.compile PT2E int8": lambda: pt2e_int8_peer(art / "alexnet.int8.pt2"),
    }
    wanted = list(peers) if args.peers == "all" else args.peers.split(",")
    batches = [int(b) for b in args.batch.split(",")]
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, 3, size, size), dtype=np.float32) for b in batches}
    runners: dict[tuple[str, int], Runner] = {}
    for name in wanted:
        make = peers[name]()
        for b in batches:
            runners[(name, b)] = make(b)
            runners[(name, b)](inputs[b])  # compile / first call, untimed
        print(f"loaded {name}", flush=True)
    samples: dict[tuple[str, int], list[float]] = {k: [] for k in runners}
    keys = list(runners)
    for r in range(args.rounds):
        for key in keys if r % 2 == 0 else keys[::-1]:
            samples[key].append(median_ms(runners[key], inputs[key[1]], args.seconds))
    rows = []
    for (name, b), ms in samples.items():
        p50 = statistics.median(ms)
        rows.append({"peer": name, "batch": b, "p50_ms": p50, "images_per_s": b / p50 * 1e3,
                     "rounds_ms": ms})  # fmt: skip
        print(f"{name:34s} b{b:<3d} {p50:8.2f} ms {b / p50 * 1e3:8.1f} img/s  "
              f"(rounds {', '.join(f'{v:.2f}' for v in ms)})")  # fmt: skip
    if args.out:
        from alexbench.environment import capture

        doc = {
            "machine": capture()["cpu"], "platform": platform.platform(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "command": "python benchmarks/peers_by_hand.py " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
            ),
            "rows": rows,
        }  # fmt: skip
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
