"""Versioned benchmark results: one JSON (everything, raw latencies included) and one CSV (a row
per cell) per run, written atomically under a name with date, host and device."""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alexbench.errors import InputError
from alexbench.fileio import (
    missing_folders,
    read_json,
    remove_empty_folders,
    write_json,
    write_text,
)
from alexbench.results_shape import (
    BACKENDS,
    DEVICES,
    PRECISIONS,
    cpu_name,
    parse_created,
    recorded_cores,
    results_problem,
)

# /2 added `complete`, `interrupted`, per-cell `repeats` and baseline-relative memory; /1 files
# (no repeats, process-wide memory) are still read.
RESULTS_SCHEMA = "alexbench-results/2"
READABLE_SCHEMAS = ("alexbench-results/1", RESULTS_SCHEMA)

_NUM = {"type": ["number", "null"]}
_CELL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["backend", "device", "precision", "batch", "status", "reason", "stats",
                 "latencies_ns", "timing_method", "cold_start", "memory", "parity", "roofline"],
    "properties": {
        # Literal (importing the enums would import torch); a test keeps them equal. The same
        # tuples make `results_problem` refuse what this schema refuses.
        "backend": {"enum": list(BACKENDS)},
        "device": {"enum": list(DEVICES)},
        "precision": {"enum": list(PRECISIONS)},
        "batch": {"type": "integer", "minimum": 1},
        "status": {"enum": ["ok", "parity_failed", "skipped", "error"]},
        "reason": {"type": "string"},
        # A call takes some time: a 0 ns latency is no measurement (and no point on a log axis).
        "latencies_ns": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "device_ns": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "device_time": {"type": ["object", "null"], "required": ["p50_ms", "iterations"]},
        "timing_method": {"type": "string"},
        "stats": {
            "type": ["object", "null"],
            "required": ["iterations", "p50_ms", "p90_ms", "p99_ms", "throughput",
                         "p50_ci_low_ms", "p50_ci_high_ms", "unstable"],
            "properties": {"iterations": {"type": "integer"}, "p50_ms": _NUM, "throughput": _NUM},
        },
        "cold_start": {
            "type": "object",
            "properties": {"session_create_s": _NUM, "first_inference_ms": _NUM},
        },
        "memory": {"type": "object"},
        "repeats": {
            "type": "array",
            "items": {"type": "object", "required": ["p50_ms", "iterations", "throughput"]},
        },
        "parity": {"type": ["object", "null"]},
        "roofline": {"type": ["object", "null"]},
        # bench --load: one object per load (bench/load.py, `LoadLevel.to_dict`)
        "load": {
            "type": "array",
            "items": {"type": "object",
                      "required": ["load", "requests", "offered_per_s", "p50_ms", "p90_ms",
                                   "p99_ms", "max_ms", "queue_p50_ms", "queue_p99_ms"]},
        },
    },
}  # fmt: skip
RESULTS_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "schema",
        "created",
        "complete",
        "environment",
        "model",
        "settings",
        "ceilings",
        "cells",
    ],
    "properties": {
        "schema": {"const": RESULTS_SCHEMA},
        "created": {"type": "string"},
        # False when SIGINT/SIGTERM stopped the sweep: the cells that finished are all there.
        "complete": {"type": "boolean"},
        "interrupted": {"type": ["string", "null"]},
        "environment": {"type": "object", "required": ["versions", "cpu"]},
        "model": {"type": "object", "required": ["source", "meta", "artifacts"]},
        "settings": {"type": "object", "required": ["backends", "devices", "batches"]},
        "ceilings": {"type": "object"},
        "cells": {"type": "array", "items": _CELL_SCHEMA},
    },
}

CSV_COLUMNS = [
    "backend", "device", "precision", "batch", "status", "iterations", "p50_ms", "p90_ms",
    "p95_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "p50_ci_low_ms", "p50_ci_high_ms",
    "throughput", "wall_throughput", "device_p50_ms", "unstable", "session_create_s",
    "first_inference_ms",
    "repeats", "mem_scope", "mem_resident_bytes", "mem_peak_bytes", "max_abs_err",
    "parity_passed", "gflops", "weight_gbs", "pct_of_ceiling", "exceeds_ceiling", "bound",
    "reason",
    "max_ms",  # added later: at the end, so readers by position keep their columns
]  # fmt: skip


def results_stem(created: datetime, devices: list[str]) -> str:
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname())[:40] or "host"
    return f"{created.strftime('%Y%m%d-%H%M%S')}_{host}_{'+'.join(devices)}"


def csv_rows(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in cells:
        s, p, r = c.get("stats") or {}, c.get("parity") or {}, c.get("roofline") or {}
        cold, mem = c.get("cold_start") or {}, c.get("memory") or {}
        row = {k: c.get(k) for k in ("backend", "device", "precision", "batch", "status")}
        row |= {k: s.get(k) for k in CSV_COLUMNS if k in s}
        row |= {k: cold.get(k) for k in ("session_create_s", "first_inference_ms")}
        row["device_p50_ms"] = (c.get("device_time") or {}).get("p50_ms")
        row["repeats"] = len(c.get("repeats") or []) or (1 if s else 0)
        row |= {
            "mem_scope": mem.get("scope"),
            "mem_resident_bytes": mem.get("resident_bytes"),
            "mem_peak_bytes": mem.get("peak_bytes"),
        }
        row |= {"max_abs_err": p.get("max_abs_err"), "parity_passed": p.get("passed")}
        row |= {
            k: r.get(k)
            for k in ("gflops", "weight_gbs", "pct_of_ceiling", "exceeds_ceiling", "bound")
        }
        row["reason"] = c.get("reason", "")
        if c.get("status") != "ok":
            # A cell that failed parity or whose timed calls were invalid keeps its figures in
            # the JSON (struck through in the tables), but a spreadsheet averages a column
            # whatever the status beside it: its speed is left empty here.
            row |= dict.fromkeys(_SPEED_COLUMNS)
        rows.append(row)
    return rows


# The CSV's figures of speed: empty on a row whose status is not ok.
_SPEED_COLUMNS = [
    "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms",
    "p50_ci_low_ms", "p50_ci_high_ms", "throughput", "wall_throughput", "device_p50_ms",
    "unstable", "gflops", "weight_gbs", "pct_of_ceiling", "exceeds_ceiling", "bound",
]  # fmt: skip


def write_results(results_dir: Path, payload: dict[str, Any]) -> tuple[Path, Path]:
    created = datetime.fromisoformat(payload["created"])
    stem = results_stem(created, payload["settings"]["devices"])
    made = missing_folders(results_dir)
    try:
        return _write_results(results_dir, stem, payload)
    except BaseException:
        remove_empty_folders(made)  # a failed first write leaves no empty folder
        raise


def _write_results(results_dir: Path, stem: str, payload: dict[str, Any]) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    # Two runs finishing in the same second (two processes, one folder) must not overwrite each
    # other: the name is claimed with an exclusive create, then filled atomically. A name whose
    # CSV is taken (an orphan, or anything else) is not free either.
    for n in itertools.count(1):
        name = stem if n == 1 else f"{stem}-{n}"
        json_path, csv_path = results_dir / f"{name}.json", results_dir / f"{name}.csv"
        try:
            os.close(os.open(json_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        if not os.path.lexists(csv_path):
            break
        json_path.unlink()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_rows(payload["cells"]))
    try:
        write_json(json_path, payload)
        write_text(csv_path, buf.getvalue())
    except BaseException:
        # All or nothing: the claimed name is freed, and a JSON whose CSV could not be written
        # goes too, so the folder never holds half a run (`bench` says the cells are not saved
        # and still shows them). The CSV is written atomically: it is absent when it failed.
        json_path.unlink(missing_ok=True)
        raise
    return json_path, csv_path


def load_results(path: Path) -> dict[str, Any]:
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the read forever
        raise InputError(f"{path}: not a regular file")
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable results file ({e})") from None
    if not isinstance(data, dict) or data.get("schema") not in READABLE_SCHEMAS:
        found = data.get("schema") if isinstance(data, dict) else None
        if isinstance(found, str) and found.startswith("alexbench-results/"):
            raise InputError(
                f"{path}: results schema {found}, from another alexbench version; this one "
                f"reads {' and '.join(READABLE_SCHEMAS)} (use the version that wrote it)"
            )
        raise InputError(
            f"{path}: not an alexbench results file (schema {found or 'none'}, "
            f"expected {RESULTS_SCHEMA})"
        )
    problem = results_problem(data)
    if problem:
        raise InputError(f"{path}: not a valid results file ({problem})")
    if any([_centre_on_repeats(cell) for cell in data["cells"]]):
        # The new centre comes from the repeats' medians, which a file without raw latencies
        # cannot show to be true: it must still lie between the cell's fastest and slowest call.
        problem = results_problem(data)
        if problem:
            raise InputError(f"{path}: not a valid results file ({problem})")
    return data


def _centre_on_repeats(cell: dict[str, Any]) -> bool:
    """Files written before a cell's median was centred on its repeats' medians (their stats
    carry no `repeats` count) pooled every repeat's samples: a fast repeat, with more samples in
    the same --min-time, pulled the median towards it, and the pool's order-statistic CI took
    the repeats for one run. Recomputed on reading as `bench` computes it now, so that report,
    compare and the plots show one centre for a cell; p90/p99 and the extremes stay pooled (as
    in new files), and the roofline figures follow the median they are a share of. Returns
    whether it changed the cell."""
    s = cell.get("stats")
    medians = [r.get("p50_ms") for r in cell.get("repeats") or []]
    if not s or "repeats" in s or len(medians) < 2:
        return False
    if not all(isinstance(m, int | float) and m > 0 for m in medians):
        return False  # a hand-edited repeat list: the stored figures are left as they are
    from alexbench.bench.stats import is_unstable, repeats_interval

    pooled = float(s["p50_ms"])
    centre, low, high = repeats_interval(medians)
    s |= {
        "p50_ms": centre,
        "p50_ci_low_ms": low,
        "p50_ci_high_ms": high,
        "throughput": cell["batch"] / (centre / 1e3),
        "unstable": is_unstable(int(s["iterations"]), centre, low, high),
        "repeats": len(medians),
    }
    roof = cell.get("roofline")
    rates = ("roofline_ms", "gflops", "weight_gbs")
    if roof and all(isinstance(roof.get(k), int | float) for k in rates) and pooled > 0:
        scale = pooled / centre  # achieved rates are per second of the median call
        share = 100 * float(roof["roofline_ms"]) / centre
        roof |= {
            "gflops": round(float(roof["gflops"]) * scale, 2),
            "weight_gbs": round(float(roof["weight_gbs"]) * scale, 2),
            "pct_of_ceiling": round(share, 1),
            "exceeds_ceiling": share > 100.0,
        }
    return True


def now() -> datetime:
    return datetime.now(UTC)


def ceilings_dict(ceilings: dict[Any, Any]) -> dict[str, Any]:
    return {getattr(k, "value", k): (asdict(v) if v else None) for k, v in ceilings.items()}


# ---------------------------------------------------------------- several saved runs


@dataclass(frozen=True)
class Run:
    """One saved results file: its name (the file stem) and its contents."""

    name: str
    path: Path
    data: dict[str, Any]


def json_files(path: Path) -> list[Path]:
    """The JSON files a results path names: the file itself, or every regular *.json file in a
    folder and below it. Anything else named *.json in a folder (a FIFO, which would block the
    read forever; a link that leads nowhere; a folder) is passed over."""
    if path.is_dir():
        return [f for f in sorted(path.rglob("*.json")) if f.is_file()]
    if path.is_file():
        return [path]
    if path.is_symlink():
        raise InputError(f"{path}: a link that leads to no file (a loop, or a missing target)")
    if path.exists():
        raise InputError(f"{path}: not a regular file or folder")
    raise InputError(f"{path}: no such file or folder")


def collect_runs(
    paths: list[Path], exclude: frozenset[Path] = frozenset(), allow_empty: bool = False
) -> tuple[list[Run], list[str]]:
    """The results files among `paths` (files, or folders searched recursively), oldest first,
    and one line per JSON file in those folders that is not a results file (skipped). A file
    named explicitly must be a results file; a name shared by two runs is an error, since
    reports and plots tell runs apart by it."""
    runs: list[Run] = []
    skipped: list[str] = []
    for path in paths:
        for candidate in json_files(path):
            if candidate.resolve() in exclude:  # taken by the caller (evaluate reports)
                continue
            try:
                runs.append(Run(candidate.stem, candidate, load_results(candidate)))
            except InputError as e:
                if not path.is_dir():  # a file named explicitly must be a results file
                    raise
                skipped.append(str(e))
    if not runs and not allow_empty:
        where = ", ".join(str(p) for p in paths)
        if skipped:  # say why, when the only candidates were rejected (a broken results file)
            more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
            raise InputError(f"no alexbench results files in {where}; skipped {skipped[0]}{more}")
        raise InputError(f"no alexbench results files in {where} (run `alexbench bench` first)")
    unique = {r.path.resolve(): r for r in runs}
    names = [r.name for r in unique.values()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"two results files are both named {twice[0]}: give one of them")
    # By the time, not the text: "2026-11-27T01:00:00+05:00" is before "2026-11-26T21:00:00Z".
    # Undated runs first (oldest first was always where an unknown date went).
    runs = sorted(unique.values(), key=lambda r: (created_utc(r.data) or _UNDATED, r.name))
    return runs, skipped


_UNDATED = datetime.min.replace(tzinfo=UTC)


def created_utc(data: dict[str, Any]) -> datetime | None:
    """When a run was made, in UTC (None: the file does not say). `load_results` has checked
    that a `created` present parses."""
    value = data.get("created")
    return parse_created(value) if isinstance(value, str) else None


def created_text(data: dict[str, Any], date_only: bool = False) -> str:
    """A run's `created` for the reader, in UTC whatever offset the file wrote it with."""
    created = created_utc(data)
    if created is None:
        return "date unknown"
    return created.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M:%S UTC")


def model_label(data: dict[str, Any]) -> str:
    """'AlexNet, seeded (seed 0), 1000 classes, 224 px' style description of a run's model."""
    model = data.get("model") or {}
    src, meta = model.get("source") or {}, model.get("meta") or {}
    kind = src.get("kind", "?")
    if kind == "seeded":
        what = f"seeded (seed {src.get('seed')})"
    else:
        what = f"{kind} {Path(src['path']).name}" if src.get("path") else str(kind)
    return (
        f"AlexNet, {what}, {meta.get('num_classes', '?')} classes, {meta.get('image_size', '?')} px"
    )


def machine_label(data: dict[str, Any], device: str = "cpu") -> str:
    """The hardware a run's `device` cells ran on: the GPU's name, or the CPU model and cores."""
    env = data.get("environment") or {}
    gpu = env.get("gpu") or {}
    if device == "cuda" and gpu.get("name"):
        return str(gpu["name"])
    cpu = env.get("cpu") or {}
    cores = recorded_cores(cpu)
    # A --threads run is a different setup on the same machine: its label says so, or a
    # 1-thread run stood beside a 2-thread one under the same name.
    threads = ((data.get("settings") or {}).get("options") or {}).get("threads")
    return (
        (cpu_name(cpu) or "?")
        + (f", {cores} cores" if cores else "")
        + (f", --threads {threads}" if threads else "")
    )
