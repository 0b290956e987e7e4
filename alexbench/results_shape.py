"""The structure of a results file (and of an `evaluate --out` document) that its readers rely
on: `report`, `compare`, `results` and the report's pages and plots index into them directly."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from alexbench.fileio import is_int, is_number

# `report`, `compare`, `results` and the report's pages and plots index into a results file
# directly (cell["batch"], cell["stats"]["throughput"], environment["cpu"]["model"]), so a file
# with the right schema value but a broken structure would crash them. `results_problem` checks,
# by hand (jsonschema is optional), what RESULTS_JSON_SCHEMA requires and what those readers
# use, for /1 files as well, except: `created` may be missing (undated runs are reported) and
# `complete` too (/1 files and older /2 ones predate it). Non-finite numbers are written as
# null (a failed cell's parity errors, wall_throughput when no wall clock was taken, cold-start
# and memory figures not measured), so those may be null; every number present must be finite
# (Python's json reads `Infinity`, `NaN` and 1e400 as floats, and a 400-digit integer does not
# fit a float): the tables format them, the plots scale axes by them, compare takes their logs.

CELL_STATUSES = ("ok", "parity_failed", "skipped", "error")
EVALUATE_SCHEMA = "alexbench-evaluate/1"  # the JSON `evaluate --out` writes

# RESULTS_JSON_SCHEMA's enums (alexbench.results) are these; a test keeps them equal to the
# Backend, Device and Precision enums, which are not imported here (they import torch).
BACKENDS = ("eager", "torchscript", "pt2", "onnxruntime", "compile", "openvino")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")
# The variables `environment.env` records: ones that change what is timed without changing any
# code, so that `compare` can name them. The thread pools' sizes and the GPUs in view, and the
# memory allocator: glibc hands every freed block above its mmap threshold (at most 32 MiB) back
# to the kernel, so a forward pass with large activations faults them in again on each call;
# glibc's tunables and jemalloc or tcmalloc (LD_PRELOAD) keep freed memory, which changes eager
# CPU latency.
THREAD_DEVICE_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
ALLOCATOR_ENV = (
    "LD_PRELOAD",
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_CONF",  # jemalloc
    "TCMALLOC_RELEASE_RATE",
)
# Other processes' CPU use when a measurement starts (`others_cpu_cores`) or on average while it
# ran (`others_cpu_cores_during`), as a share of the usable cores, that makes the machine busy:
# bench warns then, compare names such a run.
BUSY_SHARE = 0.25


def is_busy(others: float, cores: int) -> bool:
    """Whether other processes' CPU use (cores' worth) makes a machine of `cores` busy."""
    return others > BUSY_SHARE * cores


def recorded_cores(cpu: dict[str, Any]) -> Any:
    """The cores a run could use, as its `environment.cpu` records them (older files: the
    logical cores only)."""
    return cpu.get("usable_cores") or cpu.get("logical_cores")


_FAMILY_MODEL = re.compile(r"family (\d+) model (\d+)")


def cpu_name(cpu: dict[str, Any]) -> str:
    """The CPU's model name as a run records it; with its family and model numbers when the
    name has no model number: a hypervisor's generic name ('AMD EPYC') is the same for Zen 3, 4
    and 5, whose figures must never stand side by side as one machine's."""
    name = str(cpu.get("model") or "")  # "": not recorded
    found = _FAMILY_MODEL.search(str(cpu.get("id") or ""))
    # A clock speed is no model number: GCP names several Xeon generations "Intel(R) Xeon(R)
    # CPU @ 2.20GHz".
    bare, at, clock = name.partition("@")
    if name and found and not any(ch.isdigit() for ch in bare):
        # before the clock speed, which short names drop
        return f"{bare.rstrip()} (family {found[1]} model {found[2]})" + (
            f" @{clock}" if at else ""
        )
    return name


_STATS_POSITIVE = "p50_ms p90_ms p99_ms throughput"
# Integers past int64 reach numpy (latencies, batches) as objects or OverflowError; no count or
# nanosecond figure of a benchmark comes near it (2**63 ns is 292 years).
_INT_LIMIT = 2**63


def is_finite(v: Any) -> bool:
    """A JSON number that is a finite float too (not a bool, NaN, infinity, nor an integer too
    large for a float)."""
    if not is_number(v):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # math.isfinite(10**400)
        return False


def _is_count(v: Any, low: int) -> bool:
    return is_int(v) and low <= v < _INT_LIMIT


_EXPECTED: dict[str, Callable[[Any], bool]] = {
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a string": lambda v: isinstance(v, str),
    "a boolean": lambda v: isinstance(v, bool),
    "a scalar": lambda v: isinstance(v, str | int | float) and not isinstance(v, bool),
    "a finite number": is_finite,
    "a positive number": lambda v: is_finite(v) and v > 0,
    "a non-negative number": lambda v: is_finite(v) and v >= 0,
    "a positive integer": lambda v: _is_count(v, 1),
    "a non-negative integer": lambda v: _is_count(v, 0),
}
# Lists checked item by item, so that an error names the first bad item (cells[3].latencies_ns[7]).
_ITEMS = {
    "a list of strings": "a string",
    "a list of positive integers": "a positive integer",
    "a list of non-negative integers": "a non-negative integer",
}


class _Invalid(Exception):
    """What is wrong with a document, as a phrase naming the field ("cells[3].batch is ...")."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT_LIMIT:
        return f"an integer of {len(str(abs(value)))} digits"  # not 400 digits in one line
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return "a string"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _field(obj: dict[str, Any], key: str, where: str, expected: str) -> Any:
    """obj[key] when it is what is `expected` ("a finite number", "a list or null"), else _Invalid.
    A key ending in "?" may be absent (then None)."""
    bare = key.removesuffix("?")
    name = f"{where}.{bare}" if where else bare
    if bare not in obj:
        if bare != key:
            return None
        raise _Invalid(f"{name} is missing")
    value = obj[bare]
    base = expected.removesuffix(" or null")
    if value is None and base != expected:
        return value
    if base in _ITEMS and isinstance(value, list):
        for i, item in enumerate(value):
            if not _EXPECTED[_ITEMS[base]](item):
                raise _Invalid(f"{name}[{i}] is {_kind(item)}, expected {_ITEMS[base]}")
        return value
    if base not in _ITEMS and _EXPECTED[base](value):
        return value
    raise _Invalid(f"{name} is {_kind(value)}, expected {expected}")


def _one_of(obj: dict[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> str:
    """obj[key] when it is one of `allowed`, else _Invalid naming them."""
    value = _field(obj, key, where, "a string")
    if value not in allowed:
        raise _Invalid(f"{where}.{key} is {value!r}, expected one of {', '.join(allowed)}")
    return value


def parse_created(value: str) -> datetime:
    """A results file's `created` (ISO-8601) as an aware UTC time: `bench` writes UTC with its
    offset; a time without one is taken as UTC. ValueError when it is not ISO-8601."""
    created = datetime.fromisoformat(value)
    return created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)


def _fields(obj: dict[str, Any], keys: str, where: str, expected: str) -> None:
    """_field for each of the space-separated `keys`."""
    for key in keys.split():
        _field(obj, key, where, expected)


def _objects(value: list[Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """The items of a list, each named by its index, when every one is an object."""
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Invalid(f"{where}[{i}] is {_kind(item)}, expected an object")
        out.append((f"{where}[{i}]", item))
    return out


def results_problem(data: dict[str, Any]) -> str | None:
    """What makes a results document (one with a readable schema) unusable by the commands that
    read it, as a phrase naming the field; None when it is fine."""
    try:
        _check_results(data)
    except _Invalid as e:
        return str(e)
    return None


def _check_results(d: dict[str, Any]) -> None:
    env = _field(d, "environment", "", "an object")
    cpu = _field(env, "cpu", "environment", "an object")
    _field(cpu, "model", "environment.cpu", "a string or null")
    # compare sets the flags against each other and prints the rest (machine differences)
    _field(cpu, "flags?", "environment.cpu", "a list of strings or null")
    _field(cpu, "id?", "environment.cpu", "a string or null")
    _fields(cpu, "logical_cores? usable_cores?", "environment.cpu", "a positive integer or null")
    versions = _field(env, "versions", "environment", "an object")
    for name in versions:
        _field(versions, name, "environment.versions", "a string or null")
    _fields(env, "host? platform?", "environment", "a string or null")
    # compare subtracts these to warn of a busier machine (a difference of samples: may dip
    # below 0 by a rounding error)
    keys = "others_cpu_cores? others_cpu_cores_during? load_average_1m? load_average_1m_after?"
    _fields(env, keys, "environment", "a finite number or null")
    gpu = _field(env, "gpu?", "environment", "an object or null")
    if gpu:
        _field(gpu, "name", "environment.gpu", "a string")
        _fields(gpu, "capability? driver? cuda? cudnn?", "environment.gpu", "a scalar or null")
    model = _field(d, "model", "", "an object")
    _fields(model, "source meta artifacts", "model", "an object or null")
    _field(model.get("source") or {}, "path?", "model.source", "a string or null")
    _field(d, "asked_not_measured?", "", "a list or null")
    settings = _field(d, "settings", "", "an object")
    _fields(settings, "backends devices batches precisions?", "settings", "a list or null")
    _field(settings, "repeat?", "settings", "a positive integer or null")
    _fields(settings, "run_length? options?", "settings", "an object or null")
    run_length = settings.get("run_length") or {}
    # the report rebuilds the command from these (`--min-time 0.5`)
    keys = "warmup? min_seconds? min_iters? max_iters?"
    _fields(run_length, keys, "settings.run_length", "a non-negative number or null")
    _field(settings, "command?", "settings", "a string or null")
    ceilings = _field(d, "ceilings", "", "an object or null") or {}
    for device in ceilings:
        c = _field(ceilings, device, "ceilings", "an object or null") or {}
        gemm = _field(c, "gemm_gflops?", f"ceilings.{device}", "an object or null") or {}
        for dtype in gemm:
            _field(gemm, dtype, f"ceilings.{device}.gemm_gflops", "a positive number or null")
        keys = "read_bandwidth_gbs? bandwidth_gbs?"
        _fields(c, keys, f"ceilings.{device}", "a positive number or null")
    created = _field(d, "created?", "", "a string or null")
    if created is not None:
        try:
            parse_created(created)
        except ValueError:  # runs are sorted and dated by it
            shown = created if len(created) <= 40 else created[:40] + "..."
            raise _Invalid(f"created is {shown!r}, expected an ISO-8601 date and time") from None
    _field(d, "complete?", "", "a boolean")
    _field(d, "interrupted?", "", "a string or null")
    seen: dict[tuple[Any, ...], str] = {}
    for where, cell in _objects(_field(d, "cells", "", "a list"), "cells"):
        _check_cell(cell, where)
        _check_in_settings(cell, settings, where)
        # compare matches cells by this key and the report lists each: a second cell of one
        # key would be shown twice by one and silently replace the first in the other.
        key = (cell["backend"], cell["device"], cell["precision"], cell["batch"])
        if key in seen:
            label = "/".join(str(k) for k in key[:3]) + f"/b{key[3]}"
            raise _Invalid(f"{where} repeats {seen[key]} ({label}): one cell per backend, "
                           "device, precision and batch")  # fmt: skip
        seen[key] = where


def _check_cell(c: dict[str, Any], where: str) -> None:
    _one_of(c, "backend", where, BACKENDS)
    device = _one_of(c, "device", where, DEVICES)
    _one_of(c, "precision", where, PRECISIONS)
    _fields(c, "reason timing_method", where, "a string")
    _field(c, "batch", where, "a positive integer")
    status = _one_of(c, "status", where, CELL_STATUSES)
    _field(c, "runs?", where, "a positive integer")
    stats = _field(c, "stats", where, "an object or null")
    if status == "ok" and not stats:
        empty = "null" if stats is None else "empty"
        raise _Invalid(f"{where}.stats is {empty}, but the cell's status is ok (measured)")
    if stats:
        # Whatever the status: `bench` keeps the stats of a cell timed and then found invalid
        # (status error), and the legend, the CSV and the recentring on repeats read them.
        _field(stats, "iterations", f"{where}.stats", "a positive integer")
        _fields(stats, _STATS_POSITIVE, f"{where}.stats", "a positive number")
        # null: too few samples for a 95% CI of the median
        _fields(
            stats, "p50_ci_low_ms p50_ci_high_ms", f"{where}.stats", "a positive number or null"
        )
        _field(stats, "unstable", f"{where}.stats", "a boolean")
        # Checked against the samples when the file has them, and possible when it has not.
        keys = "min_ms? max_ms? mean_ms? p95_ms?"
        _fields(stats, keys, f"{where}.stats", "a positive number or null")
        _field(stats, "std_ms?", f"{where}.stats", "a non-negative number or null")
        _field(stats, "repeats?", f"{where}.stats", "a positive integer or null")
        wall = "wall_throughput" if device == "cuda" else "wall_throughput?"  # CUDA tables
        _field(stats, wall, f"{where}.stats", "a positive number or null")
    # The latency plot draws these on a log scale and compare bootstraps their median: a call
    # takes some time (the schema says the same).
    _field(c, "latencies_ns", where, "a list of positive integers")
    _field(c, "device_ns?", where, "a list of non-negative integers")
    device_time = _field(c, "device_time?", where, "an object or null")
    if device_time:
        _field(device_time, "p50_ms", f"{where}.device_time", "a positive number")
    repeats = _field(c, "repeats?", where, "a list or null") or []
    for name, rep in _objects(repeats, f"{where}.repeats"):
        _field(rep, "p50_ms", name, "a positive number or null")
    if stats:
        # The repeats against their samples first: an edited repeat median was blamed on
        # stats.p50_ms, which is computed from it (an outside audit).
        if c["latencies_ns"]:
            _check_repeats_agree(repeats, c["latencies_ns"], f"{where}.repeats")
        _check_stats_agree(stats, repeats, int(c["batch"]), f"{where}.stats")
        _check_latencies_agree(stats, repeats, c["latencies_ns"], f"{where}.stats")
        if not c["latencies_ns"]:  # stripped: nothing to recompute the figures from, but
            _check_percentiles_ordered(stats, f"{where}.stats")  # they must be possible
    cold = _field(c, "cold_start", where, "an object or null") or {}
    keys = "session_create_s? first_inference_ms?"
    _fields(cold, keys, f"{where}.cold_start", "a non-negative number or null")
    memory = _field(c, "memory", where, "an object or null") or {}
    # above the cell's baseline: may be negative (the baseline held more)
    keys = "resident_bytes? peak_bytes? cuda_max_allocated_bytes? rss_peak_bytes?"
    _fields(memory, keys, f"{where}.memory", "a finite number or null")
    parity = _field(c, "parity", where, "an object or null")
    if status == "ok" and not parity:  # compared and gated as a pass that was never checked
        raise _Invalid(
            f"{where}.parity is {'null' if parity is None else 'empty'}, but the cell's status "
            "is ok (a cell is ok only once its outputs passed parity): the file was edited?"
        )
    if parity:
        passed = _field(parity, "passed", f"{where}.parity", "a boolean")
        # the tables show PASS/FAIL from the status, the pages from parity: an ok cell must
        # have passed. (A parity_failed cell may hold a numeric pass: bench fails a cell whose
        # file is the wrong one, or whose output batch is wrong, beside outputs that matched.)
        if status == "ok" and not passed:
            raise _Invalid(
                f"{where}.status is {status} but its parity.passed is {str(passed).lower()}: "
                "the file was edited?"
            )
        _fields(parity, "min_cosine top1_agreement", f"{where}.parity", "a finite number")
        keys = "max_abs_err max_rel_err threshold"
        _fields(parity, keys, f"{where}.parity", "a finite number or null")
        _check_parity_agrees(parity, f"{where}.parity")
    roofline = _field(c, "roofline", where, "an object or null")
    if roofline:
        _field(roofline, "pct_of_ceiling", f"{where}.roofline", "a finite number")
        _field(roofline, "bound", f"{where}.roofline", "a string")
        _field(roofline, "exceeds_ceiling?", f"{where}.roofline", "a boolean")
        # drawn on log-log axes; roofline_ms is what recentring divides by
        keys = "gflops? weight_gbs? peak_gflops? read_bandwidth_gbs? roofline_ms?"
        _fields(roofline, keys, f"{where}.roofline", "a positive number or null")
        _field(roofline, "ceiling_dtype?", f"{where}.roofline", "a string or null")
        if stats:
            _check_roofline_agrees(roofline, float(stats["p50_ms"]), f"{where}.roofline")
    # bench --load: the load table reads these
    levels = _field(c, "load?", where, "a list or null") or []
    if levels and status != "ok":  # bench times only passing cells under load
        raise _Invalid(f"{where}.load holds figures, but the cell's status is {status}")
    for name, level in _objects(levels, f"{where}.load"):
        _field(level, "requests", name, "a positive integer")
        _fields(level, "load offered_per_s p50_ms p90_ms p99_ms max_ms", name, "a positive number")
        _fields(level, "queue_p50_ms queue_p99_ms", name, "a non-negative number")
        keys = "queue_mean_ms? queue_mean_expected_ms?"
        _fields(level, keys, name, "a non-negative number or null")
        keys = "served_per_s? images_per_s? busy_share? service_p50_ms? harness_late_p99_ms? "
        keys += "nominal_per_s?"
        _fields(level, keys, name, "a non-negative number or null")


def _check_percentiles_ordered(stats: dict[str, Any], where: str) -> None:
    """min <= p90 <= p95 <= p99 <= max, and the mean between the extremes (p50 is checked in
    `_check_stats_agree`: with repeats it is their medians' centre, which may pass p90)."""
    order = [
        k for k in ("min_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms") if is_finite(stats.get(k))
    ]
    for lo, hi in itertools.pairwise(order):
        if stats[lo] > stats[hi] * (1 + AGREE):
            raise _Invalid(
                f"{where}.{lo} {stats[lo]:g} is above its {hi} {stats[hi]:g}: the file was edited?"
            )
    low, mean, high = (stats.get(k) for k in ("min_ms", "mean_ms", "max_ms"))
    if all(is_finite(v) for v in (low, mean, high)) and not (
        low * (1 - AGREE) <= mean <= high * (1 + AGREE)
    ):
        raise _Invalid(
            f"{where}.mean_ms {mean:g} is outside its fastest and slowest call ({low:g} to "
            f"{high:g} ms): the file was edited?"
        )


def _check_parity_agrees(parity: dict[str, Any], where: str) -> None:
    """The parity figures are possible, and a pass is within its own error threshold: the
    pages print the figures beside PASS (an edit to max_abs_err 5.0 read "5.00e+00 ... PASS").
    The cosine and top-1 limits depend on the precision's tolerance row, not recorded here."""
    cosine, agreement = float(parity["min_cosine"]), float(parity["top1_agreement"])
    if not -1 - AGREE <= cosine <= 1 + AGREE or not 0 <= agreement <= 1:
        raise _Invalid(
            f"{where}: min_cosine {cosine:g} or top1_agreement {agreement:g} is impossible (a "
            "cosine lies in [-1, 1], an agreement in [0, 1]): the file was edited?"
        )
    err, threshold = parity.get("max_abs_err"), parity.get("threshold")
    if parity["passed"] and is_finite(err) and is_finite(threshold) and err > threshold:
        raise _Invalid(
            f"{where}.passed is true, but its max_abs_err {err:g} is above its threshold "
            f"{threshold:g}: the file was edited?"
        )


AGREE = 1e-6  # relative slack for figures `bench` derives from one another (float rounding)


def _check_stats_agree(stats: dict[str, Any], repeats: list[Any], batch: int, where: str) -> None:
    """A cell's figures are derived from one another when `bench` writes them: throughput is
    batch / p50, p50 lies between the fastest and slowest call and between the repeats'
    medians (their geometric mean; in older files the pooled median, which lies there too).
    report shows p50 and throughput while compare judges by the repeats, so a file where one
    was edited would show one figure and be judged by another: refused instead."""
    p50 = float(stats["p50_ms"])
    implied = batch * 1e3 / p50
    if abs(float(stats["throughput"]) / implied - 1) > AGREE:
        raise _Invalid(
            f"{where}.throughput {stats['throughput']:g} disagrees with its p50_ms {p50:g} "
            f"(batch {batch} / p50 = {implied:g} images/s): the file was edited?"
        )
    reps = [r for r in repeats if isinstance(r, dict)]
    walls = [(r.get("wall_s"), r.get("wall_iterations", r.get("iterations"))) for r in reps]
    if (
        reps
        and is_finite(stats.get("wall_throughput"))
        and all(is_finite(w) and w > 0 and _is_count(n, 1) for w, n in walls)
    ):
        # the throughput loop's images over its wall clock, summed over the repeats
        implied = batch * sum(n for _, n in walls) / sum(w for w, _ in walls)
        if not _agree(stats["wall_throughput"], implied):
            raise _Invalid(
                f"{where}.wall_throughput {stats['wall_throughput']:g} disagrees with its "
                f"repeats' wall clock ({implied:g} images/s): the file was edited?"
            )
    medians = [float(r["p50_ms"]) for r in reps if is_finite(r.get("p50_ms"))]
    ranges = [(stats.get("min_ms"), stats.get("max_ms"), "its fastest and slowest call")]
    if medians:
        ranges.append((min(medians), max(medians), "its repeats' medians"))
    for low, high, what in ranges:
        if (
            is_finite(low)
            and is_finite(high)
            and not (low * (1 - AGREE) <= p50 <= high * (1 + AGREE))
        ):
            raise _Invalid(
                f"{where}.p50_ms {p50:g} is outside {what} ({low:g} to {high:g} ms): the file "
                "was edited?"
            )


def _check_in_settings(cell: dict[str, Any], settings: dict[str, Any], where: str) -> None:
    """A cell's backend, device, precision and batch are among those its run asked for (report
    and compare describe the run by its settings: a CUDA cell in a CPU-only run is an edit)."""
    for axis, key in (("backends", "backend"), ("devices", "device"),
                      ("precisions", "precision"), ("batches", "batch")):  # fmt: skip
        asked = settings.get(axis)
        if isinstance(asked, list) and cell[key] not in asked:
            listed = ", ".join(str(v) for v in asked) or "nothing"
            raise _Invalid(
                f"{where}.{key} is {cell[key]!r}, which settings.{axis} ({listed}) does not "
                "list: the file was edited?"
            )


# Figures recomputed from the raw latencies: `bench` writes them exactly (1e-6 would do), but a
# copy rescaled by a script rounds its latencies to whole nanoseconds. 0.1% is far below any
# difference a table shows or compare calls.
LATENCY_AGREE = 1e-3


def _agree(value: Any, truth: float) -> bool:
    return not is_finite(value) or abs(float(value) - truth) <= LATENCY_AGREE * abs(truth)


def _check_latencies_agree(
    stats: dict[str, Any], repeats: list[Any], latencies_ns: list[int], where: str
) -> None:
    """Every figure `bench` computes from the raw latencies matches them (`compute_stats`): the
    tables show the figures, compare's bootstrap and the plots read the latencies. The median
    of a repeated cell is its repeats' geometric mean (older files: the pooled median)."""
    if not latencies_ns:  # stripped from the file: compare says "no interval", nothing to check
        return
    import numpy as np

    if int(stats["iterations"]) != len(latencies_ns):
        raise _Invalid(
            f"{where}.iterations {stats['iterations']} disagrees with its {len(latencies_ns)} "
            "latencies_ns: the file was edited?"
        )
    from alexbench.bench.stats import compute_stats

    medians = [
        float(r["p50_ms"]) for r in repeats if isinstance(r, dict) and is_finite(r.get("p50_ms"))
    ]
    # Every figure as `bench` computed it, in one pass over the samples: the interval and the
    # `~` flag from the repeats' medians where the file centres on them (`stats.repeats`), else
    # from the samples (a narrowed interval showed a steady cell whose repeats differed by 40%).
    centred = _is_count(stats.get("repeats"), 2) and len(medians) >= 2
    truth = compute_stats(latencies_ns, 1, 1, None, medians if centred else ()).to_dict()
    centres = [float(np.median(latencies_ns)) / 1e6]
    if len(medians) >= 2:
        centres.append(math.exp(sum(math.log(m) for m in medians) / len(medians)))
    figures = [
        ("p50_ms", centres, "median"),
        ("min_ms", [truth["min_ms"]], "fastest"),
        ("max_ms", [truth["max_ms"]], "slowest"),
        ("p90_ms", [truth["p90_ms"]], "90th percentile"),
        ("p95_ms", [truth["p95_ms"]], "95th percentile"),
        ("p99_ms", [truth["p99_ms"]], "99th percentile"),
    ]
    for key, truths, what in figures:
        if not any(_agree(stats.get(key), t) for t in truths):
            raise _Invalid(
                f"{where}.{key} {stats[key]:g} disagrees with its latencies_ns (their {what}: "
                f"{truths[0]:g} ms): the file was edited?"
            )
    low, high = stats.get("p50_ci_low_ms"), stats.get("p50_ci_high_ms")
    centre = float(stats["p50_ms"])
    if is_finite(low) and is_finite(high) and not low * (1 - AGREE) <= centre <= high * (1 + AGREE):
        raise _Invalid(
            f"{where}.p50_ms {centre:g} is outside its 95% interval ({low:g} to {high:g} ms): "
            "the file was edited?"
        )
    if "repeats" not in stats and len(latencies_ns) <= 5:
        # Files from before stats.repeats stored [fastest, slowest] where now there is none.
        low_ms, high_ms = min(latencies_ns) / 1e6, max(latencies_ns) / 1e6
        stored = (stats.get("p50_ci_low_ms"), stats.get("p50_ci_high_ms"))
        if (
            all(is_finite(v) for v in stored)
            and _agree(stored[0], low_ms)
            and _agree(stored[1], high_ms)
        ):
            truth |= {"p50_ci_low_ms": low_ms, "p50_ci_high_ms": high_ms}
    for key, what in (
        ("p50_ci_low_ms", "95% interval"),
        ("p50_ci_high_ms", "95% interval"),
        ("mean_ms", "mean"),
        ("std_ms", "standard deviation"),
    ):
        value, expected = stats.get(key), truth[key]
        if key in stats and (value is None) != (expected is None):
            shown = "none" if expected is None else f"{expected:g} ms"
            raise _Invalid(f"{where}.{key} disagrees with its latencies_ns (their {what}: {shown})")
        if expected is not None and not _agree(value, expected):
            raise _Invalid(
                f"{where}.{key} {value:g} disagrees with its latencies_ns (their {what}: "
                f"{expected:g} ms): the file was edited?"
            )
    if isinstance(stats.get("unstable"), bool) and stats["unstable"] != truth["unstable"]:
        raise _Invalid(
            f"{where}.unstable is {str(stats['unstable']).lower()}, but its interval and "
            "sample count say otherwise: the file was edited?"
        )


def _check_repeats_agree(repeats: list[Any], latencies_ns: list[int], where: str) -> None:
    """A cell's `latencies_ns` holds its repeats' samples in repeat order, `iterations` of
    each: each repeat's median is its own samples' median (compare judges runs by those
    medians, so an edited one moved a verdict while the tables showed the recorded samples)."""
    reps = [r for r in repeats if isinstance(r, dict)]
    counts = [r.get("iterations") for r in reps]
    if not reps or not all(is_int(n) and n > 0 for n in counts):
        return  # older files: repeats without their sample counts
    if sum(counts) != len(latencies_ns):
        raise _Invalid(
            f"{where}' iterations add up to {sum(counts)}, but it has "
            f"{len(latencies_ns)} latencies_ns: the file was edited?"
        )
    import numpy as np

    raw = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    start = 0
    for i, (rep, n) in enumerate(zip(reps, counts, strict=True)):
        median = float(np.median(raw[start : start + n]))
        start += n
        if not _agree(rep.get("p50_ms"), median):
            raise _Invalid(
                f"{where}[{i}].p50_ms {rep['p50_ms']:g} disagrees with its "
                f"{n} latencies_ns (their median: {median:g} ms): the file was edited?"
            )


def _check_roofline_agrees(roofline: dict[str, Any], p50_ms: float, where: str) -> None:
    """pct_of_ceiling is 100 * roofline_ms / p50 (rounded to 0.1; roofline_ms to 4 decimals),
    and exceeds_ceiling says whether it is above 100: the table's `!` is read from it."""
    pct = float(roofline["pct_of_ceiling"])
    bound_ms = roofline.get("roofline_ms")
    if is_finite(bound_ms):
        implied = 100 * float(bound_ms) / p50_ms
        if abs(pct - implied) > 0.06 + 0.005 * implied:
            raise _Invalid(
                f"{where}.pct_of_ceiling {pct:g} disagrees with roofline_ms / p50_ms "
                f"({implied:.1f}%): the file was edited?"
            )
    exceeds = roofline.get("exceeds_ceiling")
    if isinstance(exceeds, bool) and (pct >= 100.1 if not exceeds else pct < 99.95):
        raise _Invalid(
            f"{where}.exceeds_ceiling is {str(exceeds).lower()} but pct_of_ceiling is {pct:g}: "
            "the file was edited?"
        )


def evaluation_problem(data: dict[str, Any]) -> str | None:
    """What makes an `evaluate --out` document unusable by `report --out` (its accuracy table
    indexes every cell's backend, precision and status), as a phrase; None when it is fine."""
    try:
        _field(data, "reference?", "", "an object or null")
        model = _field(data, "model?", "", "an object or null") or {}
        _fields(model, "source? meta?", "model", "an object or null")
        _field(model.get("source") or {}, "path?", "model.source", "a string or null")
        _field(data, "data?", "", "a string or null")
        for where, c in _objects(_field(data, "cells", "", "a list"), "cells"):
            _fields(c, "backend precision status", where, "a string")
            _fields(c, "top1? top5? agreement?", where, "a finite number or null")
            _field(c, "seconds?", where, "a non-negative number")
            _field(c, "reason?", where, "a string or null")
    except _Invalid as e:
        return str(e)
    return None
