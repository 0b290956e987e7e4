"""The benchmark matrix: backend x device x precision x batch, each cell parity-checked first.

One session per (backend, device, precision) is created and timed as cold start; each batch size
then gets its first-inference latency (compilation happens here for torch.compile), a parity
check of a few samples against the fp32 eager reference, warm-up, and the timed run.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from alexbench.bench.memory import read_peaks, reset_peaks
from alexbench.bench.roofline import Ceilings, RooflinePoint, model_layers, roofline_point
from alexbench.bench.stats import LatencyStats, compute_stats
from alexbench.bench.timer import RunLength, time_session
from alexbench.devices import Device
from alexbench.parity import ParityResult, compare
from alexbench.precision import Precision
from alexbench.runtimes import Backend, ModelBundle, SessionOptions, cell_unavailable, get_runtime

PARITY_SAMPLES = 4  # rows of each cell's first output compared with the reference
ROTATING_INPUTS = 3  # distinct pre-made batches cycled through while timing


class CellStatus(StrEnum):
    OK = "ok"
    PARITY_FAILED = "parity_failed"  # timed, but the speed of a wrong answer is not quoted
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass(frozen=True)
class BenchSpec:
    backends: Sequence[Backend]
    devices: Sequence[Device]
    precisions: Sequence[Precision]
    batches: Sequence[int]
    run_length: RunLength = field(default_factory=RunLength)
    options: SessionOptions = field(default_factory=SessionOptions)
    seed: int = 0


@dataclass
class CellResult:
    backend: Backend
    device: Device
    precision: Precision
    batch: int
    status: CellStatus
    reason: str = ""
    stats: LatencyStats | None = None
    latencies_ns: list[int] = field(default_factory=list)
    timing_method: str = ""
    session_create_s: float | None = None
    first_inference_ms: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    parity: ParityResult | None = None
    roofline: RooflinePoint | None = None
    session_info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.backend.value, self.device.value, self.precision.value, self.batch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend.value,
            "device": self.device.value,
            "precision": self.precision.value,
            "batch": self.batch,
            "status": self.status.value,
            "reason": self.reason,
            "stats": self.stats.to_dict() if self.stats else None,
            "latencies_ns": self.latencies_ns,
            "timing_method": self.timing_method,
            "cold_start": {
                "session_create_s": self.session_create_s,
                "first_inference_ms": self.first_inference_ms,
            },
            "memory": self.memory,
            "parity": self.parity.to_dict() if self.parity else None,
            "roofline": self.roofline.to_dict() if self.roofline else None,
            "session": self.session_info,
        }


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or "out of memory" in text or "failed to allocate" in text


def _error_reason(e: BaseException) -> str:
    if _is_oom(e):
        return "out of memory"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{type(e).__name__}: {first}"[:300]


def count_cells(spec: BenchSpec) -> int:
    return len(spec.devices) * len(spec.backends) * len(spec.precisions) * len(spec.batches)


def run_sweep(
    bundle: ModelBundle,
    spec: BenchSpec,
    ceilings: dict[Device, Ceilings | None],
    on_cell: Callable[[CellResult | None, str], None] | None = None,
) -> list[CellResult]:
    """Run every cell; `on_cell(result, next_label)` reports progress."""
    meta = bundle.loaded.meta
    rng = np.random.default_rng(spec.seed)
    shape = (max(spec.batches), 3, meta.image_size, meta.image_size)
    pool = [rng.standard_normal(shape, dtype=np.float32) for _ in range(ROTATING_INPUTS)]
    parity_x = pool[0][:PARITY_SAMPLES]
    eager = get_runtime(Backend.EAGER).load(bundle, Device.CPU, Precision.FP32)
    reference = eager(parity_x)
    del eager
    layers = model_layers(meta.num_classes, meta.image_size)

    results: list[CellResult] = []

    def emit(r: CellResult) -> None:
        results.append(r)
        if on_cell:
            on_cell(r, "")

    for device in spec.devices:
        for backend in spec.backends:
            runtime = get_runtime(backend)
            for precision in spec.precisions:
                reason = cell_unavailable(runtime, bundle, device, precision)
                if reason:
                    for b in spec.batches:
                        emit(CellResult(backend, device, precision, b, CellStatus.SKIPPED, reason))
                    continue
                if on_cell:
                    on_cell(None, f"{backend.value}/{device.value}/{precision.value}: loading")
                try:
                    t0 = time.perf_counter()
                    session = runtime.load(bundle, device, precision, spec.options)
                    create_s = time.perf_counter() - t0
                except Exception as e:  # a runtime that cannot load is that cell's error
                    for b in spec.batches:
                        r = CellResult(backend, device, precision, b, CellStatus.ERROR)
                        r.reason = _error_reason(e)
                        emit(r)
                    continue
                for batch in spec.batches:
                    if on_cell:
                        on_cell(None, f"{backend.value}/{device.value}/{precision.value}/b{batch}")
                    cell = CellResult(backend, device, precision, batch, CellStatus.ERROR)
                    cell.session_create_s = round(create_s, 4)
                    try:
                        _measure(cell, session, pool, reference, spec.run_length)
                        ceil = ceilings.get(device)
                        if cell.stats is not None:
                            cell.roofline = roofline_point(
                                layers, batch, precision, cell.stats.p50_ms / 1e3, ceil
                            )
                    except Exception as e:  # OOM or a runtime failure: record it, go on
                        cell.status, cell.reason = CellStatus.ERROR, _error_reason(e)
                        if device is Device.CUDA:
                            import torch

                            torch.cuda.empty_cache()
                    emit(cell)
                session.close()
                del session
                gc.collect()
    return results


def _measure(
    cell: CellResult,
    session: Any,
    pool: list[np.ndarray],
    reference: np.ndarray,
    run_length: RunLength,
) -> None:
    hwm_reset = reset_peaks(cell.device)
    prepared = [session.prepare(x[: cell.batch]) for x in pool]
    cell.session_info = session.info()
    t0 = time.perf_counter_ns()
    out = session.run(prepared[0])
    logits = session.to_numpy(out)  # materialised: the first call really finished
    cell.first_inference_ms = round((time.perf_counter_ns() - t0) / 1e6, 3)
    n = min(PARITY_SAMPLES, cell.batch)
    cell.parity = compare(reference[:n], logits[:n], cell.precision)
    timing = time_session(session, prepared, run_length)
    cell.latencies_ns = timing.latencies_ns.tolist()
    cell.timing_method = timing.method
    cell.stats = compute_stats(timing.latencies_ns, cell.batch, timing.wall_ns)
    cell.memory = read_peaks(cell.device, hwm_reset)
    if logits.shape[0] != cell.batch:
        cell.status, cell.reason = CellStatus.PARITY_FAILED, f"output batch {logits.shape[0]}"
    elif cell.parity.passed:
        cell.status = CellStatus.OK
    else:
        cell.status, cell.reason = CellStatus.PARITY_FAILED, cell.parity.reason
