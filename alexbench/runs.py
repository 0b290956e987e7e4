"""The stored benchmark runs: one summary per results JSON found under some files and folders,
for `alexbench results` (`alexbench.report.render_runs` draws them)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alexbench.bench.compare import is_complete
from alexbench.fileio import read_json
from alexbench.results import READABLE_SCHEMAS, created_utc, json_files
from alexbench.results_shape import cpu_name, results_problem


@dataclass(frozen=True)
class RunSummary:
    """One results file in one line: when, where, with what, and how much of it passed."""

    path: Path  # as found under the paths given
    file: str  # `path` relative to the folder it was found under; a file given: as given
    schema: str
    created: datetime | None  # None when the file's date cannot be read
    host: str | None
    devices: list[str]
    cpu: str | None  # the CPU model, shortened (`short_cpu_name`)
    gpu: str | None
    torch: str | None
    onnxruntime: str | None
    model_source: str  # "seeded 0", "checkpoint best.pt", "weights alexnet.pth"
    num_classes: int | None
    image_size: int | None
    cells_ok: int  # measured and passing parity
    cells_total: int  # every cell in the file, skipped ones included
    statuses: dict[str, int] = field(default_factory=dict)  # cells per status ("ok", "skipped")
    repeat: int = 1
    complete: bool = True  # False: the sweep was interrupted (the finished cells are stored)
    interrupted: str | None = None

    @property
    def model(self) -> str:
        """'seeded 0, 1000 classes, 224 px'."""
        parts = [self.model_source]
        if self.num_classes is not None:
            parts.append(f"{self.num_classes} classes")
        if self.image_size is not None:
            parts.append(f"{self.image_size} px")
        return ", ".join(parts)

    @property
    def machine(self) -> str:
        """The GPU's name when the run used one, else the CPU model."""
        if self.gpu and "cuda" in self.devices:
            return self.gpu
        return self.cpu or "-"


@dataclass(frozen=True)
class Skipped:
    """A JSON file under the paths given that is not a benchmark results file."""

    path: Path
    why: str


@dataclass
class RunListing:
    runs: list[RunSummary]  # by date, oldest first
    skipped: list[Skipped]


_CPU_NOISE = re.compile(r"\((?:R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@.*$")


def short_cpu_name(model: str | None) -> str | None:
    """'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz' -> 'Intel Xeon Platinum 8480+'."""
    if not model:
        return None
    short = " ".join(_CPU_NOISE.sub(" ", model).split())
    return short or model.strip()


def _source(source: Any) -> str:
    if not isinstance(source, dict):
        return "-"
    kind = str(source.get("kind") or "?")
    if kind == "seeded":
        return f"seeded {source.get('seed')}"
    path = source.get("path")
    return f"{kind} {Path(path).name}" if path else kind


def summarize(path: Path, data: dict[str, Any], file: str | None = None) -> RunSummary:
    """The summary of one results document (`data`, as loaded from `path`; shown as `file`)."""
    env = data.get("environment") or {}
    versions = env.get("versions") or {}
    settings = data.get("settings") or {}
    model = data.get("model") or {}
    meta = model.get("meta") or {}
    cells = data.get("cells") or []
    statuses = Counter(str(c.get("status")) for c in cells)
    devices = settings.get("devices") or sorted({str(c.get("device")) for c in cells})
    return RunSummary(
        path=path,
        file=file or str(path),
        schema=str(data.get("schema")),
        created=created_utc(data),  # `_read` refused a `created` that does not parse
        host=env.get("host"),
        devices=[str(d) for d in devices],
        cpu=short_cpu_name(cpu_name(env.get("cpu") or {})),
        gpu=(env.get("gpu") or {}).get("name"),
        torch=versions.get("torch"),
        onnxruntime=versions.get("onnxruntime"),
        model_source=_source(model.get("source")),
        num_classes=meta.get("num_classes"),
        image_size=meta.get("image_size"),
        cells_ok=statuses.get("ok", 0),
        cells_total=len(cells),
        statuses=dict(statuses),
        repeat=int(settings.get("repeat") or 1),
        complete=is_complete(data),
        interrupted=data.get("interrupted"),
    )


INVALID = "not a valid results file"  # why a file with a results schema is not listed


def _read(path: Path) -> dict[str, Any] | str:
    """The results document in `path`, or why it is not one."""
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError) as e:
        return f"unreadable ({getattr(e, 'strerror', None) or e})"
    except ValueError as e:  # JSONDecodeError, or read_json's "nested too deeply"
        return "not valid JSON" if isinstance(e, json.JSONDecodeError) else str(e)
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema not in READABLE_SCHEMAS:
        return f"schema {schema}" if isinstance(schema, str) else "no alexbench schema"
    problem = results_problem(data)
    if problem:  # what `report` and `compare` would refuse is not listed as a run either
        return f"{INVALID} ({problem})"
    return data


def _candidates(paths: Iterable[Path]) -> dict[Path, str]:
    """Each JSON file to look at, with the name to show for it (relative to its folder)."""
    found: dict[Path, str] = {}
    for p in paths:
        for f in json_files(p):
            found.setdefault(f, str(f.relative_to(p)) if p.is_dir() else str(p))
    return found


def list_runs(paths: Sequence[Path]) -> RunListing:
    """Every benchmark results file under `paths` (files, or folders searched recursively for
    *.json), summarised and sorted by date (undated last); other JSON files are listed as
    skipped. A path that does not exist is an InputError."""
    runs: list[RunSummary] = []
    skipped: list[Skipped] = []
    for path, name in _candidates(paths).items():
        data = _read(path)
        if isinstance(data, str):
            skipped.append(Skipped(path, data))
            continue
        try:
            runs.append(summarize(path, data, name))
        except (AttributeError, TypeError, ValueError) as e:  # a malformed field
            skipped.append(Skipped(path, f"malformed ({type(e).__name__}: {e})"))
    oldest = datetime.min.replace(tzinfo=UTC)
    runs.sort(key=lambda r: (r.created is None, r.created or oldest, r.file))
    return RunListing(runs, skipped)
