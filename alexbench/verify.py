"""The parity suite: every runtime x device x precision against the fp32 eager CPU reference,
plus the dynamic-batch check (batch 1, 2, an odd size and the largest requested)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from alexbench.artifact_checks import file_problems
from alexbench.bench.memory import (
    CellMemory,
    cpu_shortfall,
    forecast_peak,
    probe_peaks,
    worth_probing,
)
from alexbench.devices import Device
from alexbench.errors import InputError
from alexbench.inputs import InputSet
from alexbench.parity import ParityResult, compare
from alexbench.precision import PRECISIONS, Precision
from alexbench.runtimes import Backend, ModelBundle, SessionOptions, cell_unavailable, get_runtime


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    UNSUPPORTED = "unsupported"


@dataclass
class BatchCheck:
    batch: int
    shape_ok: bool
    parity: ParityResult

    @property
    def passed(self) -> bool:
        return self.shape_ok and self.parity.passed


@dataclass
class Cell:
    backend: Backend
    device: Device
    precision: Precision
    status: Status
    parity: ParityResult | None = None
    batches: list[BatchCheck] = field(default_factory=list)
    load_seconds: float | None = None
    message: str = ""
    session_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend.value,
            "device": self.device.value,
            "precision": self.precision.value,
            "status": self.status.value,
            "parity": self.parity.to_dict() if self.parity else None,
            "dynamic_batch": [
                {"batch": b.batch, "shape_ok": b.shape_ok, "passed": b.passed, **b.parity.to_dict()}
                for b in self.batches
            ],
            "load_seconds": self.load_seconds,
            "message": self.message,
            "session": self.session_info,
        }


def dynamic_batch_sizes(largest: int) -> list[int]:
    """1, 2, an odd size, and the largest: each exercises a different path in the kernels."""
    odd = 3 if largest > 3 else None
    if largest > 5 and largest % 2 == 0:
        odd = largest - 1
    # Never above `largest`: with one sample there is no batch of 2 to compare.
    return sorted(b for b in {1, 2, largest} | ({odd} if odd else set()) if b <= largest)


def _probing(backend: Backend, device: Device, batch: np.ndarray) -> CellMemory | None:
    """A CPU cell whose whole batch might not fit in memory (`worth_probing`): its memory, the
    baseline taken now, before its session loads; None for the others, which skip the baseline's
    garbage collection and heap trim (about 0.15 s a cell). torch.compile is not probed: each
    new shape would compile again."""
    if (
        device is not Device.CPU
        or backend is Backend.COMPILE
        or not worth_probing(len(batch), batch[:1].nbytes)
    ):
        return None
    memory = CellMemory(device, device_wide=False)
    memory.baseline()
    return memory


def memory_shortfall(session: Any, batch: np.ndarray, memory: CellMemory | None) -> str | None:
    """Why the session's call on the whole `batch` would not fit in memory, forecast from two
    small untimed calls (`memory`: from `_probing`, None: not probed), or None. Linux does not
    fail such an allocation: it kills the process, every finished cell with it (--batch 40000
    at 64 px reached 8.6 GB)."""
    if memory is None:
        return None
    probed = probe_peaks(lambda b: session(batch[:b]), memory, len(batch))
    forecast = forecast_peak(probed, len(batch))
    return cpu_shortfall(forecast, memory.baseline_bytes) if forecast else None


def reference_logits(bundle: ModelBundle, inputs: InputSet) -> np.ndarray:
    memory = _probing(Backend.EAGER, Device.CPU, inputs.batch)
    session = get_runtime(Backend.EAGER).load(bundle, Device.CPU, Precision.FP32)
    short = memory_shortfall(session, inputs.batch, memory)
    if short:
        raise InputError(
            f"--batch {len(inputs.batch)}: the fp32 reference cannot run here: "
            + short.removeprefix("not run: ")
        )
    return session(inputs.batch)


def run_cell(
    bundle: ModelBundle,
    backend: Backend,
    device: Device,
    precision: Precision,
    inputs: InputSet,
    reference: np.ndarray,
    options: SessionOptions | None = None,
) -> Cell:
    runtime = get_runtime(backend)
    if backend is Backend.ONNXRUNTIME:
        # The file itself, not ORT's optimised copy of it from an earlier session: a cache
        # entry damaged on disk (its size intact) failed a correct file (an outside audit).
        runtime.cache = False  # type: ignore[attr-defined]
    reason = cell_unavailable(runtime, bundle, device, precision, checking=True)
    if reason:
        return Cell(backend, device, precision, Status.UNSUPPORTED, message=reason)
    cell = Cell(backend, device, precision, Status.ERROR)
    notes = [runtime.supports(device, precision) and runtime.checks_only(device, precision)]
    if runtime.artifact is not None and runtime.artifact_for(precision) is None:
        # A PASS here says nothing of the exported file: say so beside it.
        notes.append(
            f"made from the PyTorch model at load (cast to {precision.value}): the exported "
            "file is not read at this precision"
        )
    note = "; ".join(n for n in notes if n)
    session = None
    memory = _probing(backend, device, inputs.batch)
    try:
        start = time.perf_counter()
        session = runtime.load(bundle, device, precision, options)
        cell.load_seconds = round(time.perf_counter() - start, 3)
        cell.session_info = session.info()
        short = memory_shortfall(session, inputs.batch, memory)
        if short:
            session.close()
            cell.message = short
            return cell
        out = session(inputs.batch)
        cell.parity = compare(reference, out, precision)
        for b in dynamic_batch_sizes(len(inputs.batch)):
            session(inputs.batch[:b])  # the first call at a shape may compile; not under check
            session.timing_started()
            sub = session(inputs.batch[:b])
            # Right numbers from the wrong code (torch.compile fallen back to eager) still fail.
            problem = session.timing_problem()
            if problem:
                raise RuntimeError(problem)
            shape_ok = sub.shape == (b, reference.shape[1])
            cell.batches.append(BatchCheck(b, shape_ok, compare(reference[:b], sub, precision)))
        session.close()
    except Exception as e:  # one broken cell must not hide the others
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        cell.message = f"{type(e).__name__}: {first}"
        if session is not None:  # its device memory and graph pools, before the next cell
            with contextlib.suppress(Exception):
                session.close()
        return cell
    bad = [b.batch for b in cell.batches if not b.passed]
    wrong_file = file_problems(cell.session_info, bundle, precision, runtime)
    if cell.parity.passed and not bad and not wrong_file:
        cell.status = Status.PASS
        cell.message = note or ""
    else:
        cell.status = Status.FAIL
        parts = [cell.parity.reason] if cell.parity.reason else []
        if bad:
            parts.append(f"dynamic batch failed at {bad}")
        if wrong_file:
            parts.append(wrong_file)
        cell.message = "; ".join(parts)
    return cell


@dataclass
class VerifyReport:
    cells: list[Cell]
    inputs: InputSet
    bundle: ModelBundle

    @property
    def passed(self) -> bool:
        ran = [c for c in self.cells if c.status is not Status.UNSUPPORTED]
        return bool(ran) and all(c.status is Status.PASS for c in ran)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "inputs": {
                "kind": self.inputs.kind,
                "description": self.inputs.description,
                "shape": list(self.inputs.batch.shape),
            },
            "tolerances": {p.value: asdict(s.tolerance) for p, s in PRECISIONS.items()},
            "cells": [c.to_dict() for c in self.cells],
        }


def run_verify(
    bundle: ModelBundle,
    backends: Sequence[Backend],
    devices: Sequence[Device],
    precisions: Sequence[Precision],
    inputs: InputSet,
    options: SessionOptions | None = None,
    on_cell: Callable[[Backend, Device, Precision], None] | None = None,
) -> VerifyReport:
    reference = reference_logits(bundle, inputs)
    cells = []
    for device in devices:
        for backend in backends:
            for precision in precisions:
                if on_cell:
                    on_cell(backend, device, precision)
                cells.append(
                    run_cell(bundle, backend, device, precision, inputs, reference, options)
                )
    return VerifyReport(cells, inputs, bundle)
