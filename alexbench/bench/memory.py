"""Peak memory per cell: process RSS high-water mark on CPU, allocator peak on CUDA."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from alexbench.devices import Device

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peaks(device: Device) -> bool:
    """Reset the peak counters; returns whether the CPU peak (VmHWM) could be reset."""
    if device is Device.CUDA:
        import torch

        torch.cuda.reset_peak_memory_stats()
    try:
        # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0), so the peak is per cell.
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def read_peaks(device: Device, hwm_was_reset: bool) -> dict[str, Any]:
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    out: dict[str, Any] = {
        "rss_peak_bytes": hwm * 1024 if hwm is not None else None,
        "rss_peak_is_per_cell": hwm_was_reset,  # False: peak since process start
        "rss_bytes": rss * 1024 if rss is not None else None,
    }
    if device is Device.CUDA:
        import torch

        out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        out["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
        with contextlib.suppress(RuntimeError):
            free, total = torch.cuda.mem_get_info()
            out["cuda_device_used_bytes"] = total - free
    return out
