"""Capture the environment a result was produced in: versions, CPU, GPU, thread settings."""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from alexbench.exporters.manifest import package_version, stack_versions
from alexbench.results_shape import ALLOCATOR_ENV, THREAD_DEVICE_ENV, is_busy

# The flags that decide which kernels run: AVX-512 / VNNI / BF16 / AMX paths in oneDNN and MLAS.
CPU_FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)


@lru_cache(maxsize=1)
def _cpuinfo_fields() -> dict[str, str] | None:
    """Each /proc/cpuinfo key's first value (the first CPU's), read once per process; None
    where the file cannot be read."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return None
    return fields


def cpuinfo() -> tuple[str, frozenset[str]] | None:
    """The first CPU's model name and instruction-set flags (None where /proc/cpuinfo cannot
    be read)."""
    fields = _cpuinfo_fields()
    if fields is None:
        return None
    return fields.get("model name", ""), frozenset(fields.get("flags", "").split())


def cpu_identity() -> str | None:
    """Vendor, family, model and stepping of the first CPU ("GenuineIntel family 6 model 207
    stepping 2"): cloud VMs often name every generation alike ("Intel(R) Xeon(R) Processor"),
    and these numbers still tell them apart. None where /proc/cpuinfo does not say."""
    fields = _cpuinfo_fields() or {}
    if "cpu family" not in fields or "model" not in fields:
        return None
    parts = [fields.get("vendor_id", "")]
    parts += [f"family {fields['cpu family']}", f"model {fields['model']}"]
    if "stepping" in fields:
        parts.append(f"stepping {fields['stepping']}")
    return " ".join(p for p in parts if p)


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    model, flags = cpuinfo() or ("", frozenset())
    model = model or platform.processor() or platform.machine()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "model": model,
        "id": cpu_identity(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
    }


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        # --no-optional-locks: a status refreshes the index under .git/index.lock, which makes a
        # `git commit` in that checkout fail while a bench starts, and is left behind when the
        # write is cut short (a full disk, a file-size limit).
        dirty = subprocess.run(
            [
                "git",
                "--no-optional-locks",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_info() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "count": torch.cuda.device_count(),
    }
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        info["driver"] = None
    return info


def ort_providers() -> list[str]:
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except ImportError:
        return []


def openvino_version() -> str | None:
    """OpenVINO's version when it is importable (an optional runtime), else None."""
    return package_version("openvino") if importlib.util.find_spec("openvino") else None


def load_average() -> float | None:
    """1-minute load average: a benchmark on a busy machine measures the other work too."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def available_memory_bytes() -> int | None:
    """Memory the kernel says a new allocation can get without swapping (MemAvailable), or None
    where /proc/meminfo does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _descendants_cpu_seconds() -> float:
    """CPU seconds of this process's live descendants (torch.compile's compiler and worker pool,
    image-decoding workers), each with the time of the children it has reaped; 0 without /proc.
    A child this process has reaped is in os.times()'s children_* instead."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        # "pid (comm) state ppid ... utime stime cutime cstime ...": comm may hold spaces
        rest = text[text.rfind(")") + 2 :].split()
        try:
            pid, ppid = int(entry.name), int(rest[1])
            seconds[pid] = sum(int(v) for v in rest[11:15]) / ticks
        except (IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(pid)
    total, frontier = 0.0, list(children.get(os.getpid(), []))
    while frontier:  # a process tree: each pid has one parent, so none is reached twice
        pid = frontier.pop()
        total += seconds[pid]
        frontier += children.get(pid, [])
    return total


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and every process it started: the measurement's own work,
    which must not count as other processes' use of the machine (a cold torch.compile's
    compiler processes read as 0.6 of 2 cores busy)."""
    own = os.times()
    reaped = own.children_user + own.children_system
    return own.user + own.system + reaped + _descendants_cpu_seconds()


def _cpu_busy_seconds() -> tuple[float, float] | None:
    """(CPU seconds the cores this process may run on have been busy, of which this process and
    the processes it started), or None where /proc/stat is not there. Cores outside the
    affinity (a container's cpuset) are left out: work there does not slow the cells."""
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    busy, cores = 0, 0
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            if mine is not None and int(name[3:]) not in mine:
                continue
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            fields = [int(v) for v in values[:8]]
            busy += sum(fields) - fields[3] - fields[4]
            cores += 1
    except (OSError, ValueError, IndexError):
        return None
    if not cores:
        return None
    return busy / os.sysconf("SC_CLK_TCK"), _own_cpu_seconds()


def others_cpu_now(seconds: float = 0.5) -> float | None:
    """Cores' worth of CPU the other processes (and the hypervisor's steal) used over the next
    `seconds`, this process sleeping meanwhile (its own threads, e.g. an OpenMP pool still
    spinning, are left out)."""
    mark = cpu_mark()
    if mark is None:
        return None
    time.sleep(seconds)
    return others_cpu_since(mark)


def machine_busy(others: float | None) -> str | None:
    """Why the machine is busy (`the machine is busy (...)`) when other processes are using the
    CPU now (`others`: `others_cpu_now()`), else None. The 1-minute load average alone lags by
    minutes: right after a sweep or an export it reads busy on an idle machine, so it decides
    only where the CPU time could not be sampled."""
    load, cores = load_average(), usable_cores()
    parts = [] if others is None else [f"{others:.1f} of {cores} cores in use by others"]
    if load is not None:
        parts.append(f"load average {load:.2f}")
    # Without /proc/stat (others None) the load average decides.
    by_load = load is not None and load > 0.5 * cores
    busy = is_busy(others, cores) if others is not None else by_load
    return f"the machine is busy ({', '.join(parts)})" if busy else None


def cpu_mark() -> tuple[float, float, float] | None:
    """Where the CPU counters stand now (busy seconds, this process's seconds, the clock), for
    `others_cpu_since`; None where /proc/stat is not there."""
    counters = _cpu_busy_seconds()
    return None if counters is None else (*counters, time.monotonic())


def others_cpu_since(mark: tuple[float, float, float] | None) -> float | None:
    """Cores' worth of CPU the other processes used on average since `mark` (`cpu_mark()`): a
    sample taken when a measurement starts misses work that starts during it."""
    now = None if mark is None else _cpu_busy_seconds()
    if mark is None or now is None:
        return None
    elapsed = time.monotonic() - mark[2]
    if elapsed <= 0:
        return None
    return max(0.0, (now[0] - mark[0]) - (now[1] - mark[1])) / elapsed


def busy_during_warning(others: float | None, what: str) -> str | None:
    """The warning a measurement prints when it ends, if other processes used more than a
    quarter of the cores on average while it ran (`others`: `others_cpu_since`)."""
    cores = usable_cores()
    if others is None or not is_busy(others, cores):
        return None
    return (
        f"other processes used {others:.1f} of {cores} cores on average during {what}: "
        "its timings are noisy; rerun on a quiet machine"
    )


def busy_warning(others: float | None) -> str | None:
    """The warning a measurement prints when `machine_busy(others)`."""
    busy = machine_busy(others)
    return None if busy is None else f"{busy}: timings will be noisy"


def capture_before_measuring(threads: int | None = None) -> tuple[dict[str, Any], str | None]:
    """The environment as a measurement starts, with other processes' CPU use sampled then
    (`others_cpu_cores`), and the busy-machine warning (None on an idle machine). `threads`:
    the `--threads` every cell will set."""
    others = others_cpu_now()
    return capture(threads) | {"others_cpu_cores": others}, busy_warning(others)


def capture(threads: int | None = None) -> dict[str, Any]:
    """`threads`: the intra-op thread count the measurement sets (`--threads`); torch's own
    count otherwise. Recording torch's count before the cells set theirs said 2 for a
    `--threads 1` run, in the file and in the report's Environment table."""
    return {
        "load_average_1m": load_average(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        # openvino is an optional runtime, so it is not among the export stack's versions.
        "versions": {**stack_versions(), "openvino": openvino_version()},
        "git_commit": git_commit(),
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onnxruntime_providers": ort_providers(),
        # Set to "" is unset for each of them (LD_PRELOAD= preloads nothing).
        "env": {
            k: os.environ[k] for k in (*THREAD_DEVICE_ENV, *ALLOCATOR_ENV) if os.environ.get(k)
        },
    }
