"""Roofline: the model's work (FLOPs, weight bytes) and the machine's ceilings (GEMM FLOP/s per
dtype, read bandwidth), measured once per machine and thread count, and cached.

Per cell we report achieved GFLOP/s and weight GB/s and the percentage of the roofline bound:
at batch 1 AlexNet reads 244 MB of fp32 weights for 1.4 GFLOP, so it is bandwidth-bound; at large
batch the weights are reused and the GEMM/conv ceiling binds.

The ceilings are meant to be upper bounds on what any cell can reach, so that the roofline time
is a lower bound on its latency and the percentage is at most 100%:

- GEMM: per dtype, the best of every GEMM the installed libraries offer (torch, numpy, ONNX
  Runtime, OpenVINO; int8 through `torch._int_mm` and ORT's u8s8 kernels), at every size tried.
  No dtype is credited below the fp32 ceiling: any library can compute a narrower type through
  fp32.
- Bandwidth: read-only bandwidth (weights are only read), measured over working sets from a few
  MiB to at least 4x the last-level cache. A cell is bounded with the bandwidth of the largest
  working set not bigger than its weights: weights that fit in the cache are read from it.
- Threads: measured with the thread count the cell runs with (torch, ORT, numpy's BLAS).

A cell above 100% is flagged (`exceeds_ceiling`): it means a ceiling was not measured as high as
the machine can go, not that the cell beat the hardware.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from alexbench.devices import Device, synchronize, torch_device
from alexbench.environment import (
    available_memory_bytes,
    cpu_info,
    gpu_info,
    load_average,
    machine_busy,
    others_cpu_now,
)
from alexbench.errors import AlexbenchError
from alexbench.fileio import is_number, read_json, write_json
from alexbench.model import AlexNet
from alexbench.precision import Precision

BYTES_PER_PARAM = {
    Precision.FP32: 4,
    Precision.TF32: 4,
    Precision.FP16: 2,
    Precision.BF16: 2,
    Precision.INT8: 1,
}
# The dtype whose GEMM ceiling applies to each precision.
CEILING_DTYPE = {
    Precision.FP32: "fp32",
    Precision.TF32: "tf32",
    Precision.FP16: "fp16",
    Precision.BF16: "bf16",
    Precision.INT8: "int8",
}
# Bumped whenever `Ceilings` or the way it is measured changes: older cache files are measured
# again instead of being trusted.
CACHE_FORMAT = 4  # 3: oneDNN 1x1-conv GEMMs added to fp32 and bf16; 4: OpenVINO's

MIB = 1 << 20
# GEMM sizes (square n x n x n) and timed repetitions per size.
CPU_GEMM_SIZES = {True: (1024, 2048), False: (1024, 2048, 3072)}  # keyed by `quick`
CUDA_GEMM_SIZES = {True: (4096, 8192), False: (4096, 8192, 12288)}
GEMM_REPS = {True: 3, False: 5}
# A library's GEMM of a type other than fp32 that runs below fp32's rate, and whose next size would
# take longer than this to measure, stops at that size. Such a kernel is a slow fallback (fp16
# torch.mm on a CPU without AVX-512 FP16: 1-2.5 GFLOP/s, one core; the full sizes took over 10
# minutes on an AMD EPYC VM, 35 s in all with this stop); the fp32 floor applies to it anyway.
GEMM_SIZE_BUDGET_S = 10.0
# On a CPU, every GEMM of a type other than fp32 is first timed at this size (a warm-up and the
# best of PROBE_REPS calls) beside fp32's best library timed the same way: one that runs under a
# PROBE_MARGIN-th of fp32's rate there is a fallback whose value cannot matter (fp32's floor
# applies), and measuring it at the first size cost 25 of the quick measurement's 35 s on an AMD
# EPYC without AVX-512 (fp16 and bf16 torch.mm at 0.9 GFLOP/s, torch._int_mm at 2). Compared at
# the same size because a small GEMM fills fewer cores: fp32 itself reads 3-5x below its own best
# there. Not on CUDA, where a small GEMM is launch-bound.
PROBE_N = 512
PROBE_REPS = 2
PROBE_MARGIN = 4.0
# Read-bandwidth working sets: from READ_MIN_MIB up, multiplied by this step (4 quick, 2 full),
# then one buffer of at least 4x the last-level cache (main memory).
READ_MIN_MIB = 4
READ_STEP = {True: 4, False: 2}
READ_REPS = {True: 3, False: 5}


@dataclass(frozen=True)
class LayerWork:
    name: str
    flops: int  # per image
    params: int


@lru_cache(maxsize=16)
def model_layers(num_classes: int, image_size: int) -> tuple[LayerWork, ...]:
    """FLOPs per image and parameter count of every conv/linear layer, from FlopCounterMode.
    On the meta device: shapes only, no weights to initialise (0.4-1.5 s a bench on a CPU)."""
    with torch.device("meta"):
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
    threads: int  # torch / ORT / numpy-BLAS threads the ceilings were measured with
    gemm_gflops: dict[str, float]  # dtype -> ceiling in GFLOP/s (int8: GOP/s), best of sources
    gemm_source: dict[str, str]  # dtype -> what reached it, e.g. "onnxruntime n=2048"
    gemm_by_source: dict[str, dict[str, float]]  # dtype -> source -> its best GFLOP/s
    read_bandwidth_gbs: float  # read-only GB/s over the largest buffer (>= 4x LLC: memory)
    read_bandwidth_by_mib: dict[str, float]  # working set in MiB (str keys: JSON) -> read GB/s
    copy_bandwidth_gbs: float  # (read + write bytes) / s of a tensor copy; not used by the bound
    llc_bytes: int  # last-level cache (CPU) or L2 (GPU) size the buffer was sized from
    quick: bool
    # 1-minute load average when the measurement started: other work on a busy machine lowers
    # the ceilings, and cells timed later, on a quieter machine, may then exceed them.
    load_average_1m: float | None
    measured_at: str
    method: str
    cache_format: int = CACHE_FORMAT

    def read_bandwidth_for(self, working_set_bytes: int) -> tuple[float, int]:
        """(GB/s, MiB measured) for reading `working_set_bytes` repeatedly: the bandwidth of the
        largest measured working set that is not bigger. Reading less data is never slower, so
        this is an upper bound. Below the smallest measured set, the smallest set's figure."""
        sizes = sorted(int(k) for k in self.read_bandwidth_by_mib)
        if not sizes:
            return self.read_bandwidth_gbs, 0
        fitting = [s for s in sizes if s * MIB <= working_set_bytes]
        mib = fitting[-1] if fitting else sizes[0]
        return self.read_bandwidth_by_mib[str(mib)], mib


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alexbench" / "ceilings"


def _machine_key(device: Device) -> str:
    if device is Device.CUDA:
        g = gpu_info() or {}
        return f"{g.get('name')}|cuda {g.get('cuda')}"
    # The model name alone is not enough: VMs of different generations share one ("Intel(R)
    # Xeon(R) Processor"), and their GEMM peaks and bandwidths differ.
    c = cpu_info()
    return f"{c['model']}|{c.get('id')}|{'+'.join(c['flags'])}|{c['usable_cores']} cores"


def _best_seconds(fn: Callable[[], Any], device: Device, reps: int) -> float:
    fn()  # warm-up
    synchronize(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _gflops(n: int, seconds: float) -> float:
    return 2 * n**3 / seconds / 1e9


def _next_size_seconds(gflops: float, next_n: int, reps: int) -> float:
    """Estimated time to measure size `next_n` (a warm-up and `reps` calls) at the rate `gflops`
    reached on the size before it."""
    return (reps + 1) * 2 * next_n**3 / (gflops * 1e9) if gflops > 0 else float("inf")


# --- threads -------------------------------------------------------------------------------------


def _openblas_controls() -> list[tuple[Callable[[], int], Callable[[int], None]]]:
    """(get, set) thread-count functions of every OpenBLAS loaded in this process (numpy's), found
    the way threadpoolctl does it, without depending on it. Empty when there is none (numpy on
    MKL or Accelerate, or no /proc): numpy's threads are then not controlled."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted(
        {
            line.split()[-1]
            for line in maps.splitlines()
            if "openblas" in line.rsplit("/", 1)[-1].lower() and line.split()[-1].startswith("/")
        }
    )
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LAZY)
        except OSError:
            continue
        for prefix, suffix in [
            ("scipy_openblas_", "64_"),
            ("scipy_openblas_", ""),
            ("openblas_", "64_"),
            ("openblas_", ""),
        ]:
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                controls.append((get, set_))
                break
    return controls


@contextlib.contextmanager
def _thread_count(threads: int) -> Iterator[bool]:
    """torch (and so MKL / OpenMP / oneDNN) and numpy's OpenBLAS at `threads` threads, restored
    afterwards. Yields whether numpy may be measured: see below."""
    old_torch = torch.get_num_threads()
    blas = _openblas_controls()
    old_blas = [get() for get, _ in blas]
    torch.set_num_threads(threads)
    for _, set_ in blas:
        set_(threads)
    try:
        # If numpy's threads cannot be limited, it runs with its own default (one per core). A
        # GEMM measured with more threads than the cell uses is still an upper bound for the
        # cell, only a looser one, and it would make the per-thread-count ceiling lie about what
        # `--threads 1` could reach (a single-thread cell would read ~50% of a two-thread
        # ceiling on two cores). So numpy is left out unless the cell has every core anyway.
        usable = cpu_info()["usable_cores"] or os.cpu_count() or 1
        yield bool(blas) or threads >= usable
    finally:
        torch.set_num_threads(old_torch)
        for (_, set_), n in zip(blas, old_blas, strict=True):
            set_(n)


# --- GEMM sources: each returns fn(n, reps) -> best GFLOP/s ------------------------------------

GemmFn = Callable[[int, int], float]
_TORCH_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def _torch_gemm(dtype: str, device: Device) -> GemmFn:
    def run(n: int, reps: int) -> float:
        dev, tdtype = torch_device(device), _TORCH_DTYPES[dtype]
        a = torch.randn(n, n, device=dev).to(tdtype)
        b = torch.randn(n, n, device=dev).to(tdtype)
        c = torch.empty(n, n, device=dev, dtype=tdtype)
        old_tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"  # fp32 means full fp32 on CUDA
        try:
            return _gflops(n, _best_seconds(lambda: torch.mm(a, b, out=c), device, reps))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old_tf32

    return run


def _torch_int8_gemm(device: Device) -> GemmFn:
    """`torch._int_mm`: int8 x int8 -> int32 (CPU: oneDNN/VNNI; CUDA: cuBLASLt, which needs
    more than 16 rows and sizes that are multiples of 8: every size used here qualifies)."""

    def run(n: int, reps: int) -> float:
        dev = torch_device(device)
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev)
        c = torch.empty(n, n, dtype=torch.int32, device=dev)
        return _gflops(n, _best_seconds(lambda: torch._int_mm(a, b, out=c), device, reps))

    return run


def _torch_conv_gemm(dtype: str) -> GemmFn:
    """A 1x1 convolution as a GEMM (M = H*W = n, K = in channels = n, N = out channels = n) on
    CPU: it runs in oneDNN, the library the model's convolutions run in, whose GEMM can beat
    torch.mm's BLAS (on an AMD EPYC VM fp32 torch.mm, MKL, reached 135 GFLOP/s while eager's fp32
    convolutions ran at ~210: the ceiling read below the cells)."""

    def run(n: int, reps: int) -> float:
        tdtype = _TORCH_DTYPES[dtype]
        x = torch.randn(1, n, n, 1).to(tdtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(n, n, 1, 1).to(tdtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return _gflops(n, _best_seconds(lambda: torch.conv2d(x, w), Device.CPU, reps))

    return run


def _numpy_gemm() -> GemmFn:
    def run(n: int, reps: int) -> float:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        return _gflops(n, _best_seconds(lambda: np.matmul(a, b, out=c), Device.CPU, reps))

    return run


# ORT GEMM graphs: A (n x n) is the input, B a constant initialiser as a model's weights are (so
# ORT pre-packs it). The int8 model is QDQ with uint8 activations and int8 weights, which ORT runs
# as QLinearConv / QLinearMatMul / QGemm on MLAS's u8s8 kernels; MatMulInteger u8s8 is the plain
# integer GEMM on the same kernels. Both are measured; the faster counts.
_ORT_KINDS = ("fp32", "int8-matmulinteger", "int8-qlinearmatmul")


def _ort_model(kind: str, n: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(serialised model, input A, preallocated output) for one ORT GEMM graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "fp32":
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        a_type, out = TensorProto.FLOAT, np.empty((n, n), dtype=np.float32)
        out_type, node = TensorProto.FLOAT, helper.make_node("MatMul", ["A", "B"], ["C"])
        inits = [numpy_helper.from_array(b, "B")]
    else:
        a = rng.integers(0, 256, (n, n), dtype=np.uint8)
        b = rng.integers(-127, 128, (n, n), dtype=np.int8)
        a_type = TensorProto.UINT8
        inits = [numpy_helper.from_array(b, "B")]
        if kind == "int8-matmulinteger":
            out, out_type = np.empty((n, n), dtype=np.int32), TensorProto.INT32
            node = helper.make_node("MatMulInteger", ["A", "B"], ["C"])
        else:
            out, out_type = np.empty((n, n), dtype=np.uint8), TensorProto.UINT8
            scalars = {"sa": np.float32(0.02), "za": np.uint8(128), "sb": np.float32(0.01)}
            scalars |= {"zb": np.int8(0), "sy": np.float32(4.0), "zy": np.uint8(128)}
            inits += [numpy_helper.from_array(np.array(v), k) for k, v in scalars.items()]
            inputs = ["A", "sa", "za", "B", "sb", "zb", "sy", "zy"]
            node = helper.make_node("QLinearMatMul", inputs, ["C"])
    graph = helper.make_graph(
        [node],
        f"gemm_{kind}",
        [helper.make_tensor_value_info("A", a_type, [n, n])],
        [helper.make_tensor_value_info("C", out_type, [n, n])],
        initializer=inits,
    )
    # Opset 17 / IR 8: well inside what every supported ORT release runs.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString(), a, out


def _ort_gemm(kind: str, threads: int) -> GemmFn:
    def run(n: int, reps: int) -> float:
        import onnxruntime as ort

        model, a, out = _ort_model(kind, n)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        # IO binding into preallocated buffers: no output allocation or copy is timed.
        binding = sess.io_binding()
        binding.bind_cpu_input("A", a)
        binding.bind_output("C", "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        return _gflops(n, _best_seconds(lambda: sess.run_with_iobinding(binding), Device.CPU, reps))

    return run


def _openvino_gemm(dtype: str, threads: int) -> GemmFn:
    """OpenVINO's CPU plugin on a MatMul with constant weights (which it runs as the
    FullyConnected primitive a model's linear layers use), compiled and run as the openvino
    runtime's cells are (their settings; outputs shared, not copied out). A runtime's cells
    are bounded by its own GEMM too: on an AMD EPYC family 26 VM an openvino fp32 cell read
    104% of a ceiling measured without it (470 GFLOP/s from ONNX Runtime). The next
    measurement, with it, gave ONNX Runtime 497 and OpenVINO 502: most of that gap was the
    measurement's own spread between runs, a few percent."""

    def run(n: int, reps: int) -> float:
        import openvino as ov

        from alexbench.runtimes.openvino import HINT_TYPES, ov_config, ov_core

        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        ops = ov.opset13
        param = ops.parameter([n, n], ov.Type.f32, name="A")
        model = ov.Model([ops.matmul(param, ops.constant(b), False, False)], [param], "gemm")
        hint = HINT_TYPES[Precision(dtype)]
        compiled = ov_core().compile_model(model, "CPU", ov_config(hint, threads))
        request = compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(a, shared_memory=True))
        call = lambda: request.infer(share_outputs=True)  # noqa: E731 (as the cells call it)
        return _gflops(n, _best_seconds(call, Device.CPU, reps))

    return run


def _installed(*modules: str) -> bool:
    """Whether these modules are installed, found without importing them. One that is found but
    fails to import fails its measurement, which the ceilings name as unavailable: a cache
    then counts it as tried (`_libraries_missing_from`)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _gemm_sources(device: Device, threads: int, numpy_ok: bool) -> dict[str, dict[str, GemmFn]]:
    """dtype -> library -> measurement, for every GEMM installed for `device`."""
    if device is Device.CUDA:
        # ONNX Runtime's CUDA GEMMs are cuBLAS too: torch's cover them.
        sources: dict[str, dict[str, GemmFn]] = {
            d: {"torch.mm": _torch_gemm(d, device)} for d in ("fp32", "tf32", "fp16", "bf16")
        }
        sources["int8"] = {"torch._int_mm": _torch_int8_gemm(device)}
        return sources
    fp32: dict[str, GemmFn] = {
        "torch.mm": _torch_gemm("fp32", device),
        "torch 1x1 conv (oneDNN)": _torch_conv_gemm("fp32"),
    }
    if numpy_ok:
        fp32["numpy"] = _numpy_gemm()
    int8: dict[str, GemmFn] = {"torch._int_mm": _torch_int8_gemm(device)}
    if _installed("onnx", "onnxruntime"):
        fp32["onnxruntime"] = _ort_gemm("fp32", threads)
        int8["onnxruntime MatMulInteger u8s8"] = _ort_gemm("int8-matmulinteger", threads)
        int8["onnxruntime QLinearMatMul u8s8"] = _ort_gemm("int8-qlinearmatmul", threads)
    bf16: dict[str, GemmFn] = {
        "torch.mm": _torch_gemm("bf16", device),
        "torch 1x1 conv (oneDNN)": _torch_conv_gemm("bf16"),
    }
    # The optional runtime: its int8 runs QDQ models, whose GEMM the u8s8 sources above bound.
    if _installed("openvino"):
        fp32["openvino"] = _openvino_gemm("fp32", threads)
        bf16["openvino"] = _openvino_gemm("bf16", threads)
    return {
        "fp32": fp32,
        # CPU tf32 cells compute in fp32 (TF32 is a CUDA tensor-core mode): the fp32 floor below
        # gives them the fp32 ceiling.
        "tf32": {},
        "fp16": {"torch.mm": _torch_gemm("fp16", device)},
        "bf16": bf16,
        "int8": int8,
    }


# --- bandwidth -----------------------------------------------------------------------------------


def _llc_bytes(device: Device) -> int:
    """The last-level cache (CPU: from sysfs; GPU: L2), or 0 when unknown."""
    if device is Device.CUDA:
        return int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0)
    best_level, size = -1, 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        if kind.lower() == "instruction" or not text:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        value = int(text.rstrip("KMG")) * mult
        if level > best_level:
            best_level, size = level, value
    if size:
        return size
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return max(0, os.sysconf("SC_LEVEL3_CACHE_SIZE"))
    return 0


def _free_bytes(device: Device) -> int:
    if device is Device.CUDA:
        return int(torch.cuda.mem_get_info()[0])
    available = available_memory_bytes()
    return 4 << 30 if available is None else available


def _read_sizes_mib(device: Device, quick: bool, llc: int) -> list[int]:
    """Working sets from READ_MIN_MIB up, then a main-memory one: >= 4x LLC (and >= 256 MiB on a
    CPU, 1 GiB on a GPU when the cache size is unknown or small), capped so that it and the copy's
    second buffer take at most half the free memory."""
    floor_mib = 1024 if device is Device.CUDA else 256
    big = max(math.ceil(4 * llc / MIB), floor_mib)
    big = max(READ_MIN_MIB, min(big, _free_bytes(device) // 4 // MIB))
    sizes, s = [], READ_MIN_MIB
    while 2 * s <= big:  # a ladder step within 2x of the big buffer adds nothing
        sizes.append(s)
        s *= READ_STEP[quick]
    return [*sizes, big]


def _read_bandwidth(x: torch.Tensor, device: Device, reps: int) -> float:
    """GB/s reading every byte of `x` (fp32, 1-D) repeatedly; bytes counted = bytes read. Best of
    a sum and a dot product with itself (each element loaded once), each repeated for ~256 MiB
    (CPU) or 4 GiB (GPU) per timing so that small, cache-resident sets time above clock noise."""
    nbytes = x.numel() * x.element_size()
    target = (4 << 30) if device is Device.CUDA else (256 * MIB)
    passes = max(1, math.ceil(target / nbytes))
    best = 0.0
    for kernel in (torch.sum, lambda t: torch.dot(t, t)):

        def fn(kernel: Callable[[torch.Tensor], torch.Tensor] = kernel) -> None:
            for _ in range(passes):
                kernel(x)

        best = max(best, passes * nbytes / _best_seconds(fn, device, reps) / 1e9)
    return best


def _copy_bandwidth(x: torch.Tensor, device: Device, reps: int) -> float:
    """(read + write bytes) / s of `dst.copy_(x)`: kept for reference, not used by the bound."""
    dst = torch.empty_like(x)
    seconds = _best_seconds(lambda: dst.copy_(x), device, reps)
    return 2 * x.numel() * x.element_size() / seconds / 1e9


# --- measuring and caching -----------------------------------------------------------------------


def measure_ceilings(
    device: Device,
    threads: int | None = None,
    quick: bool = False,
    gemm_sizes: Sequence[int] | None = None,
    read_sizes_mib: Sequence[int] | None = None,
) -> Ceilings:
    """Measure GEMM ceilings per dtype and read bandwidths with `threads` threads (None: torch's
    current count). `gemm_sizes` / `read_sizes_mib` override the defaults (the last read size is
    the main-memory one); tests use small ones."""
    cuda = device is Device.CUDA
    n_threads = threads or torch.get_num_threads()
    sizes = tuple(gemm_sizes or (CUDA_GEMM_SIZES if cuda else CPU_GEMM_SIZES)[quick])
    reps = GEMM_REPS[quick]
    llc = _llc_bytes(device)
    read_sizes = list(read_sizes_mib or _read_sizes_mib(device, quick, llc))
    load = load_average()
    t_start = time.perf_counter()
    by_source: dict[str, dict[str, float]] = {}
    best: dict[str, tuple[float, str]] = {}
    failed: list[str] = []
    stopped: list[str] = []
    probed: list[str] = []
    fp32_fn: GemmFn | None = None  # the library that reached best["fp32"]
    fp32_probe: float | None = None  # its GFLOP/s at PROBE_N, once asked for
    with _thread_count(n_threads) as numpy_ok:
        for dtype, sources in _gemm_sources(device, n_threads, numpy_ok).items():
            by_source[dtype] = {}
            for source, fn in sources.items():
                if dtype != "fp32" and not cuda and fp32_fn is not None and sizes[0] > PROBE_N:
                    try:
                        probe = fn(PROBE_N, PROBE_REPS)
                    except Exception as e:
                        failed.append(f"{dtype} {source}: {type(e).__name__}")
                        continue
                    if fp32_probe is None:
                        fp32_probe = fp32_fn(PROBE_N, PROBE_REPS)
                    if probe * PROBE_MARGIN < fp32_probe:
                        by_source[dtype][source] = round(probe, 1)
                        probed.append(f"{dtype} {source} {probe:.1f}")
                        continue
                for i, n in enumerate(sizes):
                    try:
                        value = fn(n, reps)
                    except Exception as e:  # a library without this kernel here: skip it
                        failed.append(f"{dtype} {source}: {type(e).__name__}")
                        break
                    if value > by_source[dtype].get(source, 0.0):
                        by_source[dtype][source] = round(value, 1)
                    if value > best.get(dtype, (0.0, ""))[0]:
                        best[dtype] = (value, f"{source} n={n}")
                        fp32_fn = fn if dtype == "fp32" else fp32_fn
                    # Only a type below fp32's rate stops: fp32's floor applies to it anyway,
                    # while a slow machine's own fp32 GEMM must reach its larger sizes.
                    below_fp32 = dtype != "fp32" and value < best.get("fp32", (0.0, ""))[0]
                    if (
                        below_fp32
                        and i + 1 < len(sizes)
                        and _next_size_seconds(value, sizes[i + 1], reps) > GEMM_SIZE_BUDGET_S
                    ):
                        stopped.append(f"{dtype} {source} at n={n} ({value:.1f} GFLOP/s)")
                        break
        # No dtype below fp32: a kernel can always compute a narrower type through fp32, so a
        # slower narrow GEMM in one library (bf16 torch.mm on a CPU without AMX) is not a bound
        # for another library's conv in that type.
        if "fp32" in best:
            fp32_value, fp32_source = best["fp32"]
            for dtype in by_source:
                if best.get(dtype, (0.0, ""))[0] < fp32_value:
                    best[dtype] = (fp32_value, f"fp32 {fp32_source}")
        gemm_seconds = time.perf_counter() - t_start
        dev = torch_device(device)
        read_reps = READ_REPS[quick]
        buffer = torch.ones(max(read_sizes) * MIB // 4, dtype=torch.float32, device=dev)
        raw = {
            mib: _read_bandwidth(buffer[: mib * MIB // 4], device, read_reps) for mib in read_sizes
        }
        # Reading a smaller working set repeatedly is never slower than reading a larger one, so
        # each set is credited at least every larger set's bandwidth: a measurement that a busy
        # machine slowed down cannot pull the bound below what a larger set reached.
        by_mib = {
            str(mib): round(max(v for m, v in raw.items() if m >= mib), 1) for mib in sorted(raw)
        }
        copy = round(_copy_bandwidth(buffer, device, read_reps), 1)
        del buffer
    total = time.perf_counter() - t_start
    big = max(read_sizes)
    method = (
        f"GEMM: best of {reps} per size, n in {list(sizes)}, per dtype over "
        + "; ".join(f"{d}: {', '.join(s) or 'fp32'}" for d, s in by_source.items())
        + f". Read: best of sum / self-dot, best of {read_reps}, working sets"
        f" {sorted(read_sizes)} MiB, each credited at least any larger set's"
        f" (LLC {llc / MIB:.0f} MiB); copy of {big} MiB counts read + write."
        f" {_threads_text(n_threads)}; {gemm_seconds:.1f} s GEMM, {total:.1f} s total;"
        f" load average {load} at the start."
    )
    if failed:
        method += " Unavailable: " + ", ".join(failed) + "."
    if stopped:
        method += (
            f" Below fp32 and stopped before a size that would take over"
            f" {GEMM_SIZE_BUDGET_S:.0f} s: " + ", ".join(stopped) + "."
        )
    if probed:
        method += (
            f" Under 1/{PROBE_MARGIN:.0f} of fp32's {fp32_probe:.1f} GFLOP/s at n={PROBE_N}"
            f" (best of {PROBE_REPS}), so not measured further: " + ", ".join(probed) + "."
        )
    return Ceilings(
        device=device.value,
        machine=_machine_key(device),
        threads=n_threads,
        gemm_gflops={d: round(v, 1) for d, (v, _) in best.items()},
        gemm_source={d: s for d, (_, s) in best.items()},
        gemm_by_source=by_source,
        read_bandwidth_gbs=by_mib[str(big)],
        read_bandwidth_by_mib=by_mib,
        copy_bandwidth_gbs=copy,
        llc_bytes=llc,
        quick=quick,
        load_average_1m=load,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        method=method,
    )


def _cache_path(device: Device, threads: int) -> Path:
    safe = "".join(ch if ch.isalnum() else "-" for ch in _machine_key(device))
    return _cache_dir() / f"{device.value}-{safe}-t{threads}.json"


def _load_cached(path: Path, quick: bool) -> Ceilings | None:
    """The cached ceilings, or None when absent, unreadable, of an older format, or quick ones
    when a full measurement is asked for."""
    if not path.is_file():
        return None
    try:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("cache_format") != CACHE_FORMAT:
            return None
        ceilings = Ceilings(**data)
    except (OSError, ValueError, TypeError):
        return None
    if not _well_formed(ceilings) or (ceilings.quick and not quick):
        return None  # a cache edited by hand or by other code is measured again, not trusted
    if ceilings.device == Device.CPU.value and _libraries_missing_from(ceilings):
        return None  # measured before a runtime was installed: its GEMM may be the fastest
    return ceilings


# The optional CPU runtimes whose GEMM is a ceiling source: one installed after the cache was
# measured (pip install 'alexbench[openvino]') has cells that may beat the cached ceiling.
_OPTIONAL_CPU_SOURCES = ("onnxruntime", "openvino")


def _libraries_missing_from(ceilings: Ceilings) -> list[str]:
    """The optional runtimes installed now that the cached fp32 ceiling did not try (one that
    was tried and failed is named in its method's "Unavailable:" list: not tried again)."""
    measured = ceilings.gemm_by_source.get("fp32", {})
    return [
        name
        for name in _OPTIONAL_CPU_SOURCES
        if name not in measured and f"fp32 {name}: " not in ceilings.method and _installed(name)
    ]


def _well_formed(c: Ceilings) -> bool:
    """Every value of the types the roofline computes with: a string where a number belongs
    crashed `bench` after its sweep, losing every cell."""

    def number(v: Any) -> bool:
        return is_number(v) and math.isfinite(v)

    def numbers(d: Any) -> bool:
        return isinstance(d, dict) and all(number(v) and v >= 0 for v in d.values())

    return (
        all(isinstance(v, str) for v in (c.device, c.machine, c.measured_at, c.method))
        and all(isinstance(v, int) and number(v) for v in (c.threads, c.llc_bytes))
        and c.threads > 0
        and c.llc_bytes >= 0
        and number(c.read_bandwidth_gbs)
        and c.read_bandwidth_gbs > 0
        and number(c.copy_bandwidth_gbs)
        and numbers(c.gemm_gflops)
        and isinstance(c.gemm_source, dict)
        and all(isinstance(v, str) for v in c.gemm_source.values())
        and isinstance(c.gemm_by_source, dict)
        and all(numbers(d) for d in c.gemm_by_source.values())
        and numbers(c.read_bandwidth_by_mib)
        and all(k.isdigit() for k in c.read_bandwidth_by_mib)
        and isinstance(c.quick, bool)
        and (c.load_average_1m is None or number(c.load_average_1m))
    )


def load_or_measure(
    device: Device,
    threads: int | None = None,
    force: bool = False,
    quick: bool = False,
    on_not_cached: Callable[[str], None] | None = None,
) -> Ceilings:
    """The ceilings for `device` at `threads` threads (None: torch's current count), from the
    per-machine, per-thread-count cache or measured now (and cached, unless other processes were
    using the CPU: CPU ceilings measured then are too low, and every later run on a quiet machine
    would be scored against them, above 100% of its "ceiling"; they serve this run only, and
    `on_not_cached` is told why)."""
    n_threads = threads or torch.get_num_threads()
    path = _cache_path(device, n_threads)
    if not force:
        cached = _load_cached(path, quick)
        if cached is not None:
            return cached
    busy = machine_busy(others_cpu_now()) if device is Device.CPU else None
    ceilings = measure_ceilings(device, n_threads, quick=quick)
    if busy is not None:
        if on_not_cached is not None:
            on_not_cached(busy)
        return ceilings
    with contextlib.suppress(AlexbenchError, OSError):  # a read-only home must not stop a run
        write_json(path, asdict(ceilings))
    return ceilings


@dataclass(frozen=True)
class RooflinePoint:
    gflops: float  # achieved GFLOP/s
    weight_gbs: float  # weight bytes read per second (once per batch), GB/s
    bound: str  # which limit dominates the roofline time: "compute" or "memory"
    roofline_ms: float  # the fastest this batch could run on this machine (per-layer roofline)
    pct_of_ceiling: float  # roofline time / measured time, in percent (not clamped)
    exceeds_ceiling: bool  # pct_of_ceiling > 100: a ceiling was measured too low; not a result
    ceiling_used: str  # the ceilings, their sources and thread count, in words
    ceiling_dtype: str  # which GEMM ceiling applied
    peak_gflops: float  # that ceiling
    read_bandwidth_gbs: float  # the read bandwidth applied (for the model's weight working set)
    ceiling_threads: int  # thread count the ceilings were measured with

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _threads_text(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def roofline_point(
    layers: tuple[LayerWork, ...],
    batch: int,
    precision: Precision,
    seconds_per_batch: float,
    ceilings: Ceilings | None,
) -> RooflinePoint | None:
    """Per-layer roofline: each conv/linear needs at least max(FLOPs / peak, weight bytes /
    read bandwidth); the sum is the fastest possible batch. Convolutions are compute-bound, the
    fully-connected layers (96% of the weights) memory-bound at small batch. Activation traffic
    is not counted, so the bound is optimistic and the percentage conservative.

    The bandwidth is the one measured for a working set no bigger than all the weights at this
    precision (they are read every batch, so they stay in whatever cache holds them). None when
    no ceiling for this precision's dtype was measured."""
    if ceilings is None or seconds_per_batch <= 0:
        return None
    dtype = CEILING_DTYPE[precision]
    peak_gflops = ceilings.gemm_gflops.get(dtype, 0.0)
    weight_bytes = sum(lw.params for lw in layers) * BYTES_PER_PARAM[precision]
    bandwidth_gbs, mib = ceilings.read_bandwidth_for(weight_bytes)
    peak, bandwidth = peak_gflops * 1e9, bandwidth_gbs * 1e9
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
    roofline_s = compute_s + memory_s
    share = 100 * roofline_s / seconds_per_batch
    pct = round(share, 1)
    source = ceilings.gemm_source.get(dtype, "?")
    return RooflinePoint(
        gflops=round(total_flops / seconds_per_batch / 1e9, 2),
        weight_gbs=round(weight_bytes / seconds_per_batch / 1e9, 2),
        bound="compute" if compute_s >= memory_s else "memory",
        roofline_ms=round(roofline_s * 1e3, 4),
        pct_of_ceiling=pct,
        exceeds_ceiling=share > 100.0,  # before rounding: 100.04% is above the bound too
        ceiling_used=(
            f"{dtype} GEMM {peak_gflops:,.0f} {'GOP/s' if dtype == 'int8' else 'GFLOP/s'} "
            f"({source}); read {bandwidth_gbs} GB/s ({mib} MiB working set, weights "
            f"{weight_bytes / MIB:.0f} MiB); {_threads_text(ceilings.threads)}"
        ),
        ceiling_dtype=dtype,
        peak_gflops=peak_gflops,
        read_bandwidth_gbs=bandwidth_gbs,
        ceiling_threads=ceilings.threads,
    )
