"""Memory that belongs to a cell: measured above a baseline taken before its session loads.

- CPU: process RSS. `resident` = RSS after load + first run - baseline; `peak` = the RSS high-water
  mark during timing (VmHWM, reset through /proc/self/clear_refs) - baseline, and never less than
  `resident` (the cell held that much before timing: an OpenVINO bf16 cell on an AMD EPYC VM read
  550 MiB resident and a 549 MiB peak, once its first call's scratch memory was handed back).
- CUDA, torch runtimes: torch's caching allocator, the same two figures in *reserved* bytes (what
  the process holds on the device through torch): a CUDA graph's activations live in its private
  pool, reserved but not allocated between replays, so allocated bytes left them out of the peak.
- CUDA, ONNX Runtime: its arena is outside torch's allocator, so device-wide used memory
  (`torch.cuda.mem_get_info`) is the only honest reading; it includes other processes and cannot
  give a peak, so `peak` is the reading after timing (ORT's arena grows and is not returned).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from alexbench.devices import Device

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class MemoryScope(StrEnum):
    PROCESS_RSS = "process RSS"
    TORCH_CUDA_ALLOCATOR = "torch CUDA allocator, reserved"
    CUDA_DEVICE_USED = "CUDA device used (all processes)"


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim and mallopt), looked up once
    (find_library runs external tools); None elsewhere (macOS, musl)."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    return None


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so that the baseline is not
    inflated by an earlier cell's leftovers (which the next session would silently reuse)."""
    gc.collect()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _reset_hwm() -> bool:
    try:
        # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0), so the peak is this cell's.
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _cuda_used(device_wide: bool) -> int | None:
    import torch

    if not device_wide:
        return torch.cuda.memory_reserved()
    with contextlib.suppress(RuntimeError):
        free, total = torch.cuda.mem_get_info()
        return total - free
    return None


@dataclass
class CellMemory:
    """Tracks one cell: `baseline()` before load, `loaded()` after the first run, `timing_started()`
    and `timing_done()` around the timed loop."""

    device: Device
    device_wide: bool  # CUDA only: the runtime allocates outside torch (ONNX Runtime)
    baseline_bytes: int | None = None
    host_baseline_bytes: int | None = None
    resident_bytes: int | None = None
    host_resident_bytes: int | None = None
    peak_bytes: int | None = None
    host_peak_bytes: int | None = None
    hwm_per_cell: bool = False

    @property
    def scope(self) -> MemoryScope:
        if self.device is Device.CPU:
            return MemoryScope.PROCESS_RSS
        return (
            MemoryScope.CUDA_DEVICE_USED if self.device_wide else MemoryScope.TORCH_CUDA_ALLOCATOR
        )

    def _read(self) -> int | None:
        if self.device is Device.CPU:
            return _status_bytes("VmRSS")
        return _cuda_used(self.device_wide)

    def baseline(self) -> None:
        release_freed_memory()
        if self.device is Device.CUDA:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        self.baseline_bytes = self._read()
        self.host_baseline_bytes = _status_bytes("VmRSS")

    def cell_started(self) -> None:
        """Before a cell's first call: the allocator's cache of the session's earlier batch
        sizes handed back, so that reserved bytes count this cell's memory, not theirs (a live
        CUDA graph's pool is not in the cache: it stays counted, as it stays held)."""
        if self.device is Device.CUDA and not self.device_wide:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()

    def loaded(self) -> None:
        self.resident_bytes = _minus(self._read(), self.baseline_bytes)
        self.host_resident_bytes = _minus(_status_bytes("VmRSS"), self.host_baseline_bytes)

    def timing_started(self) -> None:
        self.hwm_per_cell = _reset_hwm()
        if self.device is Device.CUDA and not self.device_wide:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def timing_done(self) -> None:
        host_peak = _status_bytes("VmHWM") if self.hwm_per_cell else None
        self.host_peak_bytes = _minus(host_peak, self.host_baseline_bytes)
        if self.device is Device.CPU:
            self.peak_bytes = self.host_peak_bytes
        elif self.device_wide:
            self.peak_bytes = _minus(_cuda_used(True), self.baseline_bytes)
        else:
            import torch

            self.peak_bytes = _minus(torch.cuda.max_memory_reserved(), self.baseline_bytes)
        # A peak is the highest reading the cell had, so it includes the one after its first run.
        self.peak_bytes = _at_least(self.peak_bytes, self.resident_bytes)
        self.host_peak_bytes = _at_least(self.host_peak_bytes, self.host_resident_bytes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scope": self.scope.value,
            "baseline_bytes": self.baseline_bytes,
            "resident_bytes": self.resident_bytes,
            "peak_bytes": self.peak_bytes,
        }
        if self.device is Device.CUDA:
            out |= {
                "host_resident_bytes": self.host_resident_bytes,
                "host_peak_bytes": self.host_peak_bytes,
            }
        return out


def _at_least(peak: int | None, resident: int | None) -> int | None:
    return peak if peak is None or resident is None else max(peak, resident)


def _minus(value: int | None, base: int | None) -> int | None:
    # Clamped at 0: freeing an earlier cell's memory can take RSS below the baseline.
    return None if value is None or base is None else max(value - base, 0)


# A per-image cost is read only between two batches far enough apart that the allocator's
# granularity cannot pass for it (batches 1 and 2 differ by one image's activations).
MIN_FORECAST_SPAN = 8


@dataclass(frozen=True)
class PeakForecast:
    """A CPU cell's peak memory above its session's baseline at `batch`, extrapolated linearly
    from the peaks measured at two smaller batches of the same session."""

    batch: int
    peak_bytes: int
    per_image_bytes: float
    basis: tuple[int, int]


def forecast_peak(measured: dict[int, int], batch: int) -> PeakForecast | None:
    """From `measured` (batch: peak bytes) at the two largest batches below `batch`, when they are
    at least MIN_FORECAST_SPAN apart and the larger is at least twice the smaller; else None.
    A per-image cost read as negative (noise) forecasts the larger batch's own peak."""
    smaller = sorted((b, p) for b, p in measured.items() if b < batch)
    if len(smaller) < 2:
        return None
    (b1, p1), (b2, p2) = smaller[-2:]
    if b2 - b1 < MIN_FORECAST_SPAN or b2 < 2 * b1:
        return None
    per_image = max((p2 - p1) / (b2 - b1), 0.0)
    return PeakForecast(batch, round(p2 + per_image * (batch - b2)), per_image, (b1, b2))


# A session's first large batch has no two smaller batches to forecast from (`--batch 1,2048`),
# so two small untimed calls are made first, at PROBE_BATCHES, when the batch might not fit: when
# PROBE_FACTOR times its input's bytes (eager fp32 peaks measured about 5.3x: 3.2 MiB per
# 224-px image) exceeds the memory available. torch.compile is not probed: each new shape
# would compile again.
PROBE_BATCHES = (8, 32)
PROBE_FACTOR = 16


def worth_probing(batch: int, input_bytes_per_image: int) -> bool:
    from alexbench.environment import available_memory_bytes

    available = available_memory_bytes()
    return (
        batch > 2 * PROBE_BATCHES[-1]
        and available is not None
        and batch * input_bytes_per_image * PROBE_FACTOR > available
    )


def probe_peaks(run_at: Callable[[int], object], memory: CellMemory, batch: int) -> dict[int, int]:
    """Peak memory above `memory`'s baseline at each of PROBE_BATCHES below `batch`: one untimed
    `run_at(b)` each (a session's call at batch b, its inputs prepared inside), to forecast
    `batch` from. Empty when a probe fails (the batch is then run unforecast)."""
    peaks: dict[int, int] = {}
    for b in (b for b in PROBE_BATCHES if b < batch):
        probe = dataclasses.replace(memory)
        try:
            probe.timing_started()
            run_at(b)
            probe.timing_done()
        except Exception:
            return {}
        if probe.peak_bytes is not None:
            peaks[b] = probe.peak_bytes
    return peaks


def cpu_shortfall(forecast: PeakForecast, baseline_bytes: int | None) -> str | None:
    """Why the forecast cell would not fit in memory, or None: what it needs beyond what the
    process holds now (above the session's baseline) against the memory available. Linux does
    not fail an allocation that does not fit; it kills the process, and every finished cell of
    the run with it, so such a cell is not run."""
    from alexbench.environment import available_memory_bytes

    release_freed_memory()
    rss, available = _status_bytes("VmRSS"), available_memory_bytes()
    if rss is None or available is None or baseline_bytes is None:
        return None
    need = forecast.peak_bytes - max(rss - baseline_bytes, 0)
    if need <= available:
        return None
    b1, b2 = forecast.basis
    return (
        f"not run: batch {forecast.batch} would need about {need / 2**30:,.1f} GiB more memory "
        f"({forecast.per_image_bytes / 2**20:,.1f} MiB per image, from the peaks at batches {b1} "
        f"and {b2}), more than the {available / 2**30:,.1f} GiB available; out of memory, the "
        "kernel would kill the whole run"
    )
