"""The benchmark matrix: backend x device x precision x batch, each cell parity-checked first.

One session per (backend, device, precision) is created and timed as cold start; each batch size
then gets its first-inference latency (compilation happens here for torch.compile), warm-up, the
timed run, and one more untimed call on another input: every row of that call and of the first
is checked against the fp32 eager reference.

`--repeat N` runs the whole matrix N times, one repeat after the other (interleaved, so slow drift
of the machine spreads over every cell), and `merge_repeats` pools each cell's repeats: the
spread between repeats is what `compare` uses as between-run noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from alexbench.artifact_checks import file_problems
from alexbench.bench.load import LoadLevel, arrival_gaps, merge_levels, time_open_loop
from alexbench.bench.memory import (
    CellMemory,
    cpu_shortfall,
    forecast_peak,
    probe_peaks,
    release_freed_memory,
    worth_probing,
)
from alexbench.bench.roofline import Ceilings, RooflinePoint, model_layers, roofline_point
from alexbench.bench.stats import LatencyStats, compute_stats
from alexbench.bench.timer import RunLength, time_session
from alexbench.devices import Device
from alexbench.environment import available_memory_bytes
from alexbench.errors import InputError
from alexbench.model import IN_CHANNELS
from alexbench.parity import ParityResult, compare
from alexbench.precision import Precision
from alexbench.runtimes import Backend, ModelBundle, SessionOptions, cell_unavailable, get_runtime

# Parity covers every row of two calls per cell, on different inputs: the first (cold) call and
# one after timing. A few rows of the first call alone passed a model that computed 4 images
# and copied them into the rest of the batch (9x eager's speed, PASS), and could not see a
# replay that answers a stale input.
PARITY_INPUTS = (0, 1)  # the rotating inputs checked
REFERENCE_CHUNK = 64  # rows per eager call while the reference is made (bounded memory)
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
    repeat: int = 1  # the whole matrix this many times, one repeat after the other
    # Loads (fractions of a cell's one-at-a-time rate) each passing cell is also timed at, with
    # open-loop Poisson arrivals (bench/load.py); empty: none.
    loads: Sequence[float] = ()


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
    device_ns: list[int] = field(default_factory=list)  # CUDA events per call, when measurable
    timing_method: str = ""
    session_create_s: float | None = None  # only on the first batch a session ran (its cold start)
    first_inference_ms: float | None = None  # first call at this batch size (compiles, for compile)
    memory: dict[str, Any] = field(default_factory=dict)
    parity: ParityResult | None = None
    roofline: RooflinePoint | None = None
    session_info: dict[str, Any] = field(default_factory=dict)
    repeat: int = 0  # which repeat produced this result (0-based); merged cells keep the first
    repeats: list[dict[str, Any]] = field(default_factory=list)  # per repeat: p50, iterations
    runs: int = 1  # how many repeats reached this cell (skipped and crashed ones included)
    load: list[LoadLevel] = field(default_factory=list)  # latency under load, per load asked

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
            "device_ns": self.device_ns,
            "device_time": _device_time(self.device_ns),
            "timing_method": self.timing_method,
            "cold_start": {
                "session_create_s": self.session_create_s,
                "first_inference_ms": self.first_inference_ms,
            },
            "repeats": self.repeats,
            "runs": self.runs,
            "memory": self.memory,
            "parity": self.parity.to_dict() if self.parity else None,
            "roofline": self.roofline.to_dict() if self.roofline else None,
            "session": self.session_info,
            "load": [level.to_dict(self.batch) for level in self.load],
        }


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or "out of memory" in text or "failed to allocate" in text


def error_reason(e: BaseException) -> str:
    """One line for a failure: "out of memory", or the exception's type and first line."""
    if _is_oom(e):
        return "out of memory"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{type(e).__name__}: {first}"[:300]


def count_cells(spec: BenchSpec) -> int:
    """Cells of one repeat (the progress bar counts `count_cells * spec.repeat`)."""
    return len(spec.devices) * len(spec.backends) * len(spec.precisions) * len(spec.batches)


def run_sweep(
    bundle: ModelBundle,
    spec: BenchSpec,
    ceilings: dict[Device, Ceilings | None],
    on_cell: Callable[[CellResult | None, str], None] | None = None,
) -> list[CellResult]:
    """Run every cell of every repeat and return the merged cells, roofline attached."""
    cells = list(iter_sweep(bundle, spec, on_cell))
    return finish_cells(cells, bundle.loaded.meta.num_classes, bundle.loaded.meta.image_size,
                        ceilings)  # fmt: skip


def finish_cells(
    results: Sequence[CellResult],
    num_classes: int,
    image_size: int,
    ceilings: dict[Device, Ceilings | None],
) -> list[CellResult]:
    """Merge the repeats of each cell and place every timed cell on the roofline."""
    layers = model_layers(num_classes, image_size)
    cells = merge_repeats(results)
    for c in cells:
        if c.stats is not None:
            try:
                c.roofline = roofline_point(
                    layers, c.batch, c.precision, c.stats.p50_ms / 1e3, ceilings.get(c.device)
                )
            except Exception:  # an annotation: its failure must not lose the measured cells
                c.roofline = None
    return cells


def _pool_shape(batches: Sequence[int], image_size: int) -> tuple[int, int, int, int]:
    """One rotating input: every cell's batch is cut from the front of it."""
    return (max(batches), IN_CHANNELS, image_size, image_size)


def check_input_pool(batches: Sequence[int], image_size: int) -> None:
    """Refuse, before any work, a batch size whose rotating inputs alone cannot be held in
    memory: every cell's inputs are cut from one pool sized to the largest batch, so it failed
    as out of memory before the first cell, smaller batches unmeasured."""
    shape = _pool_shape(batches, image_size)
    need = ROTATING_INPUTS * math.prod(shape) * 4  # fp32
    available = available_memory_bytes()
    if available is not None and need > available:
        raise InputError(
            f"--batch {shape[0]}: its {ROTATING_INPUTS} input batches alone need "
            f"{need / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB of memory "
            "available"
        )


@dataclass
class Reference:
    """One input pool and the eager fp32 CPU logits of its PARITY_INPUTS batches, made as cells
    need their rows (in chunks of REFERENCE_CHUNK: rows are independent) and kept for the next
    cell: all of a large pool up front cost minutes before the first cell, and for a batch
    the memory guard then refused."""

    bundle: ModelBundle
    pool: list[np.ndarray]
    logits: list[np.ndarray] = field(default_factory=list)

    def rows(self, n: int) -> list[np.ndarray]:
        have = len(self.logits[0]) if self.logits else 0
        if n > have:
            eager = get_runtime(Backend.EAGER).load(self.bundle, Device.CPU, Precision.FP32)
            try:
                chunks = range(have, n, REFERENCE_CHUNK)
                new = [
                    np.concatenate(
                        [eager(self.pool[i][j : min(j + REFERENCE_CHUNK, n)]) for j in chunks]
                    )
                    for i in PARITY_INPUTS
                ]
            finally:
                eager.close()
                # Made inside a cell (after timing): what it freed must not sit in the heap,
                # counted in the next cells' memory figures.
                release_freed_memory()
            if self.logits:
                new = [np.concatenate([a, b]) for a, b in zip(self.logits, new, strict=True)]
            self.logits = new
        return [r[:n] for r in self.logits]


def iter_sweep(
    bundle: ModelBundle,
    spec: BenchSpec,
    on_cell: Callable[[CellResult | None, str], None] | None = None,
    references: dict[tuple[int, tuple[int, ...]], Reference] | None = None,
) -> Iterator[CellResult]:
    """Yield each cell of each repeat as it finishes, so a caller that is interrupted keeps every
    finished cell; `on_cell(None, label)` reports what is about to run. `references`: kept by a
    caller that sweeps one bundle many times (tune), keyed by seed and pool shape."""
    meta = bundle.loaded.meta
    shape = _pool_shape(spec.batches, meta.image_size)
    key = (spec.seed, shape)
    reference = (references or {}).get(key)
    if reference is None:
        rng = np.random.default_rng(spec.seed)
        pool = [rng.standard_normal(shape, dtype=np.float32) for _ in range(ROTATING_INPUTS)]
        reference = Reference(bundle, pool)
        if references is not None:
            references[key] = reference
    pool = reference.pool

    def label(text: str) -> None:
        if on_cell:
            on_cell(None, text)

    for repeat in range(spec.repeat):
        tag = f"[{repeat + 1}/{spec.repeat}] " if spec.repeat > 1 else ""
        for device in spec.devices:
            for backend in spec.backends:
                runtime = get_runtime(backend)
                for precision in spec.precisions:
                    name = f"{tag}{backend.value}/{device.value}/{precision.value}"
                    reason = cell_unavailable(runtime, bundle, device, precision)
                    if reason:
                        for b in spec.batches:
                            yield CellResult(
                                backend, device, precision, b, CellStatus.SKIPPED, reason,
                                repeat=repeat,
                            )  # fmt: skip
                        continue
                    label(f"{name}: loading")
                    yield from _session_cells(
                        bundle, spec, (backend, device, precision), pool, reference, repeat,
                        lambda batch, name=name: label(f"{name}/b{batch}"),
                    )  # fmt: skip


def _session_cells(
    bundle: ModelBundle,
    spec: BenchSpec,
    cell_key: tuple[Backend, Device, Precision],
    pool: list[np.ndarray],
    reference: Reference,
    repeat: int,
    label: Callable[[int], None],
) -> Iterator[CellResult]:
    """One session, loaded once, measured at every batch size, then closed."""
    backend, device, precision = cell_key
    # ORT allocates CUDA memory outside torch: only device-wide readings see it.
    memory = CellMemory(device, device_wide=backend is Backend.ONNXRUNTIME)
    memory.baseline()
    try:
        t0 = time.perf_counter()
        session = get_runtime(backend).load(bundle, device, precision, spec.options)
        create_s = time.perf_counter() - t0
    except Exception as e:  # a runtime that cannot load is that cell's error
        for b in spec.batches:
            yield CellResult(*cell_key, b, CellStatus.ERROR, error_reason(e), repeat=repeat)
        return
    peaks: dict[int, int] = {}  # CPU: batch -> measured peak, to forecast larger batches
    try:
        for i, batch in enumerate(spec.batches):
            label(batch)
            cell = CellResult(*cell_key, batch, CellStatus.ERROR, repeat=repeat)
            if i == 0:  # the session's creation is paid once, by its first batch
                cell.session_create_s = round(create_s, 4)
            forecast = forecast_peak(peaks, batch) if device is Device.CPU else None
            probed: dict[int, int] = {}
            if (
                forecast is None
                and device is Device.CPU
                and backend is not Backend.COMPILE
                and worth_probing(batch, pool[0][:1].nbytes)
            ):
                probed = probe_peaks(functools.partial(_probe_call, session, pool), memory, batch)
                forecast = forecast_peak(probed, batch)
            short = cpu_shortfall(forecast, memory.baseline_bytes) if forecast else None
            if short is not None:  # CUDA raises a catchable out-of-memory error instead
                cell.reason = short
                yield cell
                continue
            try:
                prepared = _measure(
                    cell, session, pool, reference, spec.run_length, dataclasses.replace(memory),
                    bundle,
                )  # fmt: skip
                if cell.status is CellStatus.OK and spec.loads:
                    # The timed loops' inputs: warm already (a CUDA graph per input address).
                    _measure_load(cell, session, prepared, spec)
            except Exception as e:  # OOM or a runtime failure: record, go on
                cell.status, cell.reason = CellStatus.ERROR, error_reason(e)
                cell.load = []  # no figure under load from a cell that failed
                _release_device(device)
            if cell.memory.get("peak_bytes") is not None:
                peaks[batch] = cell.memory["peak_bytes"]
            if probed and cell.memory:  # its first call then followed the probes' calls
                cell.memory["probe_peaks"] = {str(b): p for b, p in sorted(probed.items())}
            yield cell
    finally:
        # A sticky CUDA error can make cleanup raise too: it must not take the finished cells
        # with it (they are already with the caller).
        with contextlib.suppress(Exception):
            session.close()
        del session
        gc.collect()


def _probe_call(session: Any, pool: list[np.ndarray], batch: int) -> None:
    """One untimed call at `batch`, its inputs prepared as a cell's are (the whole pool), for
    `probe_peaks`."""
    prepared = [session.prepare(x[:batch]) for x in pool]
    session.to_numpy(session.run(prepared[0]))


def _release_device(device: Device) -> None:
    if device is Device.CUDA:
        import torch

        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


def _measure(
    cell: CellResult,
    session: Any,
    pool: list[np.ndarray],
    reference: Reference,
    run_length: RunLength,
    memory: CellMemory,
    bundle: ModelBundle,
) -> list[Any]:
    """Time the cell and check its outputs; returns the prepared inputs it was timed on."""
    memory.cell_started()
    prepared = [session.prepare(x[: cell.batch]) for x in pool]
    t0 = time.perf_counter_ns()
    out = session.run(prepared[0])
    logits = session.to_numpy(out)  # materialised: the first call really finished
    cell.first_inference_ms = round((time.perf_counter_ns() - t0) / 1e6, 3)
    memory.loaded()
    memory.timing_started()
    timing = time_session(session, prepared, run_length)
    memory.timing_done()
    # After timing, untimed: another input, through the path the timed calls took (a replay).
    again = session.to_numpy(session.run(prepared[PARITY_INPUTS[1]]))
    outputs = [logits, again]
    expected = reference.rows(cell.batch)
    if all(o.shape[0] == cell.batch for o in outputs):
        cell.parity = compare(
            np.concatenate(expected), np.concatenate(outputs), cell.precision, len(outputs)
        )
    else:
        cell.parity = compare(expected[0], logits, cell.precision)
    cell.session_info = session.info()
    cell.latencies_ns = timing.latencies_ns.tolist()
    cell.device_ns = [] if timing.device_ns is None else timing.device_ns.tolist()
    cell.timing_method = timing.method
    cell.stats = compute_stats(
        timing.latencies_ns, cell.batch, timing.wall_ns, timing.wall_iterations
    )
    cell.repeats = [_repeat_summary(cell.stats, timing.wall_ns, timing.wall_iterations)]
    cell.memory = memory.to_dict()
    if timing.problem:
        # The timed calls ran something other than what the cell names: never quote that speed.
        cell.status, cell.reason = CellStatus.ERROR, timing.problem
    elif bad := [o.shape[0] for o in outputs if o.shape[0] != cell.batch]:
        cell.status, cell.reason = CellStatus.PARITY_FAILED, f"output batch {bad[0]}"
    elif not cell.parity.passed:
        cell.status, cell.reason = CellStatus.PARITY_FAILED, cell.parity.reason
    elif wrong_file := file_problems(
        cell.session_info, bundle, cell.precision, get_runtime(cell.backend)
    ):
        # Right numbers from the wrong file (fp32 in the int8 slot) or a file that tells its
        # consumers the wrong preprocessing: verify fails it, so its speed is not quoted here.
        cell.status, cell.reason = CellStatus.PARITY_FAILED, wrong_file
    else:
        cell.status = CellStatus.OK
    return prepared


def _measure_load(cell: CellResult, session: Any, prepared: list[Any], spec: BenchSpec) -> None:
    """The cell's latency at each of `spec.loads`, on the inputs it was timed on (a cell that
    failed parity gets none: the speed of a wrong answer is not quoted)."""
    assert cell.stats is not None
    mean_ns = cell.stats.mean_ms * 1e6
    for load in spec.loads:
        gaps = arrival_gaps(spec.seed, load, cell.repeat)
        cell.load.append(time_open_loop(session, prepared, load, mean_ns, spec.run_length, gaps))
    if problem := session.timing_problem():  # e.g. a recompile inside the loaded calls
        cell.status, cell.reason, cell.load = CellStatus.ERROR, problem, []


def _repeat_summary(stats: LatencyStats, wall_ns: int, wall_iterations: int) -> dict[str, Any]:
    return {
        "p50_ms": stats.p50_ms,
        "iterations": stats.iterations,
        "throughput": stats.throughput,
        "wall_s": wall_ns / 1e9,
        "wall_iterations": wall_iterations,
    }


def _device_time(device_ns: list[int]) -> dict[str, Any] | None:
    """Median device time (CUDA events) and its sample count; None where not measured."""
    if not device_ns:
        return None
    return {"p50_ms": float(np.median(device_ns)) / 1e6, "iterations": len(device_ns)}


# Worst first: a merged cell takes the worst status any of its repeats had.
_SEVERITY = [CellStatus.ERROR, CellStatus.PARITY_FAILED, CellStatus.OK, CellStatus.SKIPPED]


def merge_repeats(results: Sequence[CellResult]) -> list[CellResult]:
    """One cell per key: latencies pooled in repeat order, `repeats` listing each repeat's median;
    the cell's median and its CI are over those medians (`compute_stats`).

    Cold start, parity and memory come from the first repeat; the status is the worst of any
    repeat (a crash or a parity failure in repeat 3 is not hidden by repeats 1 and 2).
    """
    groups: dict[tuple[str, str, str, int], list[CellResult]] = {}
    for r in results:
        groups.setdefault(r.key, []).append(r)
    merged = []
    for group in groups.values():
        group.sort(key=lambda r: r.repeat)
        first = group[0]
        if len(group) == 1:
            merged.append(first)
            continue
        out = dataclasses.replace(first, repeats=[], latencies_ns=[], device_ns=[], load=[])
        out.runs = len(group)
        worst = min(group, key=lambda r: _SEVERITY.index(r.status))
        out.status = worst.status
        if worst.status is not first.status:
            out.reason = f"repeat {worst.repeat + 1}: {worst.reason}"
            # The evidence of the failure, not repeat 1's pass, goes with the failed status.
            out.parity = worst.parity or out.parity
            out.session_info = worst.session_info or out.session_info
        timed = [r for r in group if r.stats is not None]
        for r in timed:
            out.latencies_ns.extend(r.latencies_ns)
            out.device_ns.extend(r.device_ns)
            out.repeats.extend(r.repeats)
        # Only a cell ok in every repeat is quoted under load (the tables show ok cells' only).
        ok = out.status is CellStatus.OK
        out.load = merge_levels([r.load for r in timed if r.load]) if ok else []
        if timed:
            wall_ns = sum(int(rep["wall_s"] * 1e9) for rep in out.repeats)
            wall_iters = sum(rep.get("wall_iterations", rep["iterations"]) for rep in out.repeats)
            out.stats = compute_stats(
                np.asarray(out.latencies_ns),
                first.batch,
                wall_ns,
                wall_iters,
                [float(rep["p50_ms"]) for rep in out.repeats],
            )
            peaks = [r.memory.get("peak_bytes") for r in timed if r.memory.get("peak_bytes")]
            if peaks:
                out.memory = dict(first.memory, peak_bytes=max(peaks))
        merged.append(out)
    return merged
