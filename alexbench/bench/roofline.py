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


@lru_cache(maxsize=16)
def model_work(num_classes: int, image_size: int) -> tuple[int, int]:
    """(FLOPs per image, parameter count), counted once with FlopCounterMode."""
    model = AlexNet(num_classes).eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    params = sum(p.numel() for p in model.parameters())
    return int(counter.get_total_flops()), params


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
        method=f"best of {reps}: torch.mm {n}x{n} per dtype; tensor copy of {size >> 20} MiB",
    )


def _cache_path(device: Device) -> Path:
    safe = "".join(ch if ch.isalnum() else "-" for ch in _machine_key(device))
    return _cache_dir() / f"{device.value}-{safe}-t{torch.get_num_threads()}.json"


def load_or_measure(device: Device, force: bool = False, quick: bool = True) -> Ceilings:
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
    intensity: float  # FLOPs per weight byte at this batch
    bound: str  # "compute" or "memory"
    pct_of_ceiling: float  # achieved / binding ceiling, in percent
    ceiling_used: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roofline_point(
    flops_per_image: int,
    params: int,
    batch: int,
    precision: Precision,
    seconds_per_batch: float,
    ceilings: Ceilings | None,
) -> RooflinePoint | None:
    if ceilings is None or seconds_per_batch <= 0:
        return None
    flops = flops_per_image * batch
    weight_bytes = params * BYTES_PER_PARAM[precision]
    gflops = flops / seconds_per_batch / 1e9
    gbs = weight_bytes / seconds_per_batch / 1e9
    dtype = CEILING_DTYPE[precision]
    peak = ceilings.gemm_gflops.get(dtype) or ceilings.gemm_gflops.get("fp32", 0.0)
    intensity = flops / weight_bytes
    ridge = peak / ceilings.bandwidth_gbs if ceilings.bandwidth_gbs else float("inf")
    if intensity < ridge:
        pct, bound, used = 100 * gbs / ceilings.bandwidth_gbs, "memory", "bandwidth"
    else:
        pct, bound, used = 100 * gflops / peak, "compute", f"{dtype} GEMM"
    return RooflinePoint(
        round(gflops, 2), round(gbs, 2), round(intensity, 2), bound, round(pct, 1), used
    )
