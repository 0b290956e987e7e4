"""Roofline: the model's work (FLOPs, weight bytes) and the machine's ceilings (GEMM FLOP/s per
dtype, memory bandwidth), measured once per machine and cached.

Per cell we report achieved GFLOP/s and weight GB/s and the percentage of the ceiling that binds:
at batch 1 AlexNet reads 244 MB of fp32 weights for 1.4 GFLOP, so it is bandwidth-bound; at large
batch the weights are reused and the GEMM/conv ceiling binds.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from alexbench.devices import Device, synchronize, torch_device
from alexbench.environment import cpu_info, gpu_info
from alexbench.errors import AlexbenchError
from alexbench.fileio import write_json
from alexbench.model import AlexNet
from alexbench.precision import Precision

BYTES_PER_PARAM = {
    Precision.FP32: 4,
    Precision.TF32: 4,
    Precision.FP16: 2,
    Precision.BF16: 2,
    Precision.INT8: 1,
}
# The dtype whose GEMM ceiling applies to each precision (int8 measured as bf16's: no portable
# int8 GEMM in torch; stated in the results as the ceiling used).
CEILING_DTYPE = {
    Precision.FP32: "fp32",
    Precision.TF32: "tf32",
    Precision.FP16: "fp16",
    Precision.BF16: "bf16",
    Precision.INT8: "bf16",
}


@dataclass(frozen=True)
class LayerWork:
    name: str
    flops: int  # per image
    params: int


@lru_cache(maxsize=16)
def model_layers(num_classes: int, image_size: int) -> tuple[LayerWork, ...]:
    """FLOPs per image and parameter count of every conv/linear layer, from FlopCounterMode."""
    model = AlexNet(num_classes).eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    counts = counter.get_flop_counts()
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            flops = sum(counts.get(f"{type(model).__name__}.{name}", {}).values())
            params = sum(p.numel() for p in module.parameters())
            layers.append(LayerWork(name, int(flops), params))
    return tuple(layers)


def model_work(num_classes: int, image_size: int) -> tuple[int, int]:
    """(FLOPs per image, parameter count)."""
    layers = model_layers(num_classes, image_size)
    return sum(lw.flops for lw in layers), sum(lw.params for lw in layers)


@dataclass(frozen=True)
class Ceilings:
    device: str
    machine: str
    threads: int
    gemm_gflops: dict[str, float]  # dtype -> best measured GFLOP/s
    bandwidth_gbs: float  # best measured copy bandwidth (read + write bytes) in GB/s
    measured_at: str
    method: str


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alexbench" / "ceilings"


def _machine_key(device: Device) -> str:
    if device is Device.CUDA:
        g = gpu_info() or {}
        return f"{g.get('name')}|cuda {g.get('cuda')}"
    c = cpu_info()
    return f"{c['model']}|{c['usable_cores']} cores"


def _best_seconds(fn: Any, device: Device, reps: int) -> float:
    fn()  # warm-up
    synchronize(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_ceilings(device: Device, quick: bool = False) -> Ceilings:
    dev = torch_device(device)
    cuda = device is Device.CUDA
    n = 8192 if cuda else (1024 if quick else 2048)
    reps = 3 if quick else 7
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if cuda:
        dtypes |= {"tf32": torch.float32, "fp16": torch.float16}
    gemm: dict[str, float] = {}
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, dtype in dtypes.items():
            torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
            a = torch.randn(n, n, device=dev).to(dtype)
            b = torch.randn(n, n, device=dev).to(dtype)
            seconds = _best_seconds(lambda a=a, b=b: torch.mm(a, b), device, reps)
            if name == "fp32" and not cuda:
                # torch's BLAS is not always the fastest on a CPU (MKL takes slow paths on some
                # AMD parts); the machine's ceiling is the best GEMM any library reaches.
                an, bn = a.numpy(), b.numpy()
                seconds = min(seconds, _best_seconds(lambda an=an, bn=bn: an @ bn, device, reps))
            gemm[name] = round(2 * n**3 / seconds / 1e9, 1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
    # Bandwidth: copy a buffer far larger than the last-level cache; bytes = read + write.
    size = (1 << 30) if cuda else (1 << 28 if quick else 1 << 29)
    src = torch.empty(size // 4, dtype=torch.float32, device=dev).fill_(1.0)
    dst = torch.empty_like(src)
    seconds = _best_seconds(lambda: dst.copy_(src), device, reps)
    bandwidth = round(2 * size / seconds / 1e9, 1)
    return Ceilings(
        device=device.value,
        machine=_machine_key(device),
        threads=torch.get_num_threads(),
        gemm_gflops=gemm,
        bandwidth_gbs=bandwidth,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        method=f"best of {reps}: {n}x{n} GEMM per dtype (torch.mm; numpy too for cpu fp32); "
        f"tensor copy of {size >> 20} MiB",
    )


def _cache_path(device: Device) -> Path:
    safe = "".join(ch if ch.isalnum() else "-" for ch in _machine_key(device))
    return _cache_dir() / f"{device.value}-{safe}-t{torch.get_num_threads()}.json"


def load_or_measure(device: Device, force: bool = False, quick: bool = False) -> Ceilings:
    path = _cache_path(device)
    if not force and path.is_file():
        try:
            return Ceilings(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass  # unreadable cache: measure again
    ceilings = measure_ceilings(device, quick=quick)
    with contextlib.suppress(AlexbenchError, OSError):  # a read-only home must not stop a run
        write_json(path, asdict(ceilings))
    return ceilings


@dataclass(frozen=True)
class RooflinePoint:
    gflops: float  # achieved GFLOP/s
    weight_gbs: float  # weight bytes read per second (once per batch), GB/s
    bound: str  # which limit dominates the roofline time: "compute" or "memory"
    roofline_ms: float  # the fastest this batch could run on this machine (per-layer roofline)
    pct_of_ceiling: float  # roofline time / measured time, in percent
    ceiling_used: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roofline_point(
    layers: tuple[LayerWork, ...],
    batch: int,
    precision: Precision,
    seconds_per_batch: float,
    ceilings: Ceilings | None,
) -> RooflinePoint | None:
    """Per-layer roofline: each conv/linear needs at least max(FLOPs / peak, weight bytes /
    bandwidth); the sum is the fastest possible batch. Convolutions are compute-bound, the
    fully-connected layers (96% of the weights) memory-bound at small batch. Activation traffic
    is not counted, so the bound is optimistic and the percentage conservative."""
    if ceilings is None or seconds_per_batch <= 0:
        return None
    dtype = CEILING_DTYPE[precision]
    peak = (ceilings.gemm_gflops.get(dtype) or ceilings.gemm_gflops.get("fp32", 0.0)) * 1e9
    bandwidth = ceilings.bandwidth_gbs * 1e9
    if peak <= 0 or bandwidth <= 0:
        return None
    compute_s = memory_s = 0.0
    for lw in layers:
        c = lw.flops * batch / peak
        m = lw.params * BYTES_PER_PARAM[precision] / bandwidth
        if c >= m:
            compute_s += c
        else:
            memory_s += m
    total_flops = sum(lw.flops for lw in layers) * batch
    weight_bytes = sum(lw.params for lw in layers) * BYTES_PER_PARAM[precision]
    roofline_s = compute_s + memory_s
    return RooflinePoint(
        gflops=round(total_flops / seconds_per_batch / 1e9, 2),
        weight_gbs=round(weight_bytes / seconds_per_batch / 1e9, 2),
        bound="compute" if compute_s >= memory_s else "memory",
        roofline_ms=round(roofline_s * 1e3, 4),
        pct_of_ceiling=round(100 * roofline_s / seconds_per_batch, 1),
        ceiling_used=f"{dtype} GEMM {peak / 1e9:.0f} GFLOP/s, {ceilings.bandwidth_gbs} GB/s",
    )
