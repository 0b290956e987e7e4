"""The structure of a results file (and of an `evaluate --out` document) that its readers rely
on: `report`, `compare`, `results` and the report's pages and plots index into them directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alexbench.fileio import is_int, is_number

# `report`, `compare`, `results` and the report's pages and plots index into a results file
# directly (cell["batch"], cell["stats"]["throughput"], environment["cpu"]["model"]), so a file
# with the right schema value but a broken structure would crash them. `results_problem` checks,
# by hand (jsonschema is optional), what RESULTS_JSON_SCHEMA requires and what those readers
# use, for /1 files as well, except: `created` may be missing (undated runs are reported) and
# `complete` too (/1 files and older /2 ones predate it). Non-finite numbers are written as
# null (a failed cell's parity errors, wall_throughput when no wall clock was taken, cold-start
# and memory figures not measured), so those may be null; the latency figures of a timed cell
# are finite in any file `bench` writes, and the tables and plots format and divide by them.

CELL_STATUSES = ("ok", "parity_failed", "skipped", "error")
_TIMED_STATUSES = ("ok", "parity_failed")  # cells whose stats the tables and plots show
_STATS_POSITIVE = "p50_ms p90_ms p99_ms throughput"


_EXPECTED: dict[str, Callable[[Any], bool]] = {
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a string": lambda v: isinstance(v, str),
    "a boolean": lambda v: isinstance(v, bool),
    "a number": is_number,
    "a positive number": lambda v: is_number(v) and v > 0,  # NaN is not > 0
    "a positive integer": lambda v: is_int(v) and v >= 1,
    "a list of numbers": lambda v: isinstance(v, list) and all(is_number(x) for x in v),
}


class _Invalid(Exception):
    """What is wrong with a document, as a phrase naming the field ("cells[3].batch is ...")."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return "a string"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _field(obj: dict[str, Any], key: str, where: str, expected: str) -> Any:
    """obj[key] when it is what is `expected` ("a number", "a number or null"), else _Invalid.
    A key ending in "?" may be absent (then None)."""
    bare = key.removesuffix("?")
    name = f"{where}.{bare}" if where else bare
    if bare not in obj:
        if bare != key:
            return None
        raise _Invalid(f"{name} is missing")
    value = obj[bare]
    base = expected.removesuffix(" or null")
    if (value is None and base != expected) or _EXPECTED[base](value):
        return value
    raise _Invalid(f"{name} is {_kind(value)}, expected {expected}")


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
    _field(cpu, "flags?", "environment.cpu", "a list or null")
    versions = _field(env, "versions", "environment", "an object")
    for name in versions:
        _field(versions, name, "environment.versions", "a string or null")
    _fields(env, "host? platform?", "environment", "a string or null")
    gpu = _field(env, "gpu?", "environment", "an object or null")
    if gpu:
        _field(gpu, "name", "environment.gpu", "a string")
    model = _field(d, "model", "", "an object")
    _fields(model, "source meta artifacts", "model", "an object or null")
    _field(model.get("source") or {}, "path?", "model.source", "a string or null")
    settings = _field(d, "settings", "", "an object")
    _fields(settings, "backends devices batches precisions?", "settings", "a list or null")
    _field(settings, "repeat?", "settings", "a positive integer or null")
    _fields(settings, "run_length? options?", "settings", "an object or null")
    _field(settings, "command?", "settings", "a string or null")
    ceilings = _field(d, "ceilings", "", "an object or null") or {}
    for device in ceilings:
        c = _field(ceilings, device, "ceilings", "an object or null") or {}
        gemm = _field(c, "gemm_gflops?", f"ceilings.{device}", "an object or null") or {}
        for dtype in gemm:
            _field(gemm, dtype, f"ceilings.{device}.gemm_gflops", "a number or null")
        _fields(c, "read_bandwidth_gbs? bandwidth_gbs?", f"ceilings.{device}", "a number or null")
    _field(d, "created?", "", "a string or null")
    _field(d, "complete?", "", "a boolean")
    _field(d, "interrupted?", "", "a string or null")
    for where, cell in _objects(_field(d, "cells", "", "a list"), "cells"):
        _check_cell(cell, where)


def _check_cell(c: dict[str, Any], where: str) -> None:
    _fields(c, "backend device precision reason timing_method", where, "a string")
    _field(c, "batch", where, "a positive integer")
    status = _field(c, "status", where, "a string")
    if status not in CELL_STATUSES:
        raise _Invalid(f"{where}.status is {status!r}, expected one of {', '.join(CELL_STATUSES)}")
    _field(c, "runs?", where, "a positive integer")
    stats = _field(c, "stats", where, "an object or null")
    if status == "ok" and not stats:
        empty = "null" if stats is None else "empty"
        raise _Invalid(f"{where}.stats is {empty}, but the cell's status is ok (measured)")
    if stats and status in _TIMED_STATUSES:
        _field(stats, "iterations", f"{where}.stats", "a positive integer")
        _fields(stats, _STATS_POSITIVE, f"{where}.stats", "a positive number")
        # null: too few samples for a 95% CI of the median
        _fields(
            stats, "p50_ci_low_ms p50_ci_high_ms", f"{where}.stats", "a positive number or null"
        )
        _field(stats, "unstable", f"{where}.stats", "a boolean")
        wall = "wall_throughput" if c["device"] == "cuda" else "wall_throughput?"  # CUDA tables
        _field(stats, wall, f"{where}.stats", "a number or null")
    _fields(c, "latencies_ns device_ns?", where, "a list of numbers")
    device_time = _field(c, "device_time?", where, "an object or null")
    if device_time:
        _field(device_time, "p50_ms", f"{where}.device_time", "a number")
    repeats = _field(c, "repeats?", where, "a list or null") or []
    for name, rep in _objects(repeats, f"{where}.repeats"):
        _field(rep, "p50_ms", name, "a positive number or null")
    cold = _field(c, "cold_start", where, "an object or null") or {}
    _fields(
        cold, "session_create_s? first_inference_ms?", f"{where}.cold_start", "a number or null"
    )
    memory = _field(c, "memory", where, "an object or null") or {}
    keys = "resident_bytes? peak_bytes? cuda_max_allocated_bytes? rss_peak_bytes?"
    _fields(memory, keys, f"{where}.memory", "a number or null")
    parity = _field(c, "parity", where, "an object or null")
    if parity:
        _field(parity, "passed", f"{where}.parity", "a boolean")
        _fields(parity, "min_cosine top1_agreement", f"{where}.parity", "a number")
        _fields(parity, "max_abs_err max_rel_err threshold", f"{where}.parity", "a number or null")
    roofline = _field(c, "roofline", where, "an object or null")
    if roofline:
        _field(roofline, "pct_of_ceiling", f"{where}.roofline", "a number")
        _field(roofline, "bound", f"{where}.roofline", "a string")
        _field(roofline, "exceeds_ceiling?", f"{where}.roofline", "a boolean")
        keys = "gflops? weight_gbs? peak_gflops? read_bandwidth_gbs?"
        _fields(roofline, keys, f"{where}.roofline", "a number or null")
        _field(roofline, "ceiling_dtype?", f"{where}.roofline", "a string or null")


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
            _fields(c, "top1? top5? agreement?", where, "a number or null")
            _field(c, "seconds?", where, "a number")
            _field(c, "reason?", where, "a string or null")
    except _Invalid as e:
        return str(e)
    return None
