"""manifest.json: what was exported, from what, by which versions; and whether it is stale."""

from __future__ import annotations

import hashlib
import json
import math
import platform
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from alexbench.checkpoint import MAX_NUM_CLASSES, SourceKind
from alexbench.errors import InputError
from alexbench.fileio import is_int, is_number, read_json, write_json
from alexbench.model import MAX_IMAGE_SIZE, MAX_SEED, MIN_IMAGE_SIZE

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "alexbench-manifest/2"
# /1 lacked `usage` and named every format's input "input" and output "logits"; it is still
# read, and the next export brings its records up to date (exporters._with_interface).
READABLE_SCHEMAS = ("alexbench-manifest/1", MANIFEST_SCHEMA)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def stack_versions() -> dict[str, str | None]:
    import torch

    ort = package_version("onnxruntime-gpu") or package_version("onnxruntime")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": package_version("onnx"),
        "onnxscript": package_version("onnxscript"),
        "onnxruntime": ort,
        "torchao": package_version("torchao"),
        "alexbench": package_version("alexbench"),
    }


def config_key(fields: dict[str, Any]) -> str:
    """Hash of everything that determines an artifact's bytes; equal key + intact file = reuse."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass
class ArtifactRecord:
    format: str
    path: str  # file name, relative to the manifest's directory
    sha256: str
    size_bytes: int
    # The names a consumer calls the file by (None: positional input, bare tensor output).
    input_name: str | None
    input_shape: list[int | str]
    output_name: str | None
    output_shape: list[int | str]
    dynamic_axes: dict[str, dict[int, str]]
    exporter: str
    opset: int | None
    export_seconds: float
    config_key: str
    calibration: str = ""  # int8 only: the images the quantisation ranges were measured on
    calibration_dir: str = ""  # int8 only: the folder they were drawn from ("": not recorded)
    calibration_images: int = 0  # int8 only: how many (drawn seeded from the folder's front)
    usage: str = ""  # how to call the file, in one line (manifests before it lack it)
    # What the input and output tensors hold ("" in manifests before it): NCHW float32 images.
    input_dtype: str = ""
    output_dtype: str = ""
    layout: str = ""
    # The stack that wrote this file (the manifest's top-level versions are the last export's:
    # a file reused from an earlier export keeps its own here).
    versions: dict[str, str | None] = field(default_factory=dict)
    exported_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )


@dataclass
class Manifest:
    source: dict[str, Any]  # ModelSource.to_dict() + weights_sha256
    model: dict[str, Any]  # ModelMeta as a dict
    versions: dict[str, str | None] = field(default_factory=stack_versions)
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    schema: str = MANIFEST_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["artifacts"] = {k: _record_dict(v) for k, v in self.artifacts.items()}
        return d

    def save(self, directory: Path) -> Path:
        return write_json(directory / MANIFEST_NAME, self.to_dict())

    @classmethod
    def load(cls, directory: Path) -> Manifest | None:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            d = read_json(path)
            _check_shape(d)
            arts = {k: _record(v) for k, v in d.get("artifacts", {}).items()}
            return cls(d["source"], d["model"], d.get("versions") or {}, arts)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{path}: unreadable manifest ({e}); delete it to re-export") from e


_SOURCE_KINDS = tuple(k.value for k in SourceKind)
_RECORD_FIELDS = frozenset(f.name for f in fields(ArtifactRecord))


# Written only where set (int8 records): versions before them refuse a record with a field they
# do not know, and must still read the folders this one writes for other formats.
_OMITTED_WHEN_UNSET = ("calibration_dir", "calibration_images")


def _record_dict(record: ArtifactRecord) -> dict[str, Any]:
    d = asdict(record)
    return {k: v for k, v in d.items() if k not in _OMITTED_WHEN_UNSET or v}


def _record(values: dict[str, Any]) -> ArtifactRecord:
    """A record as this version knows it: a field that a later version added (calibration_dir
    was one) is left out, not fatal; one this version needs and lacks still is (TypeError)."""
    return ArtifactRecord(**{k: v for k, v in values.items() if k in _RECORD_FIELDS})


def _check_shape(d: Any) -> None:
    """What the readers of a manifest index, checked once here (ValueError says what is wrong).
    An artifact's path must be a bare file name: `export --force` deletes the files a manifest
    lists, and runtimes load them, so a path may never leave the folder."""
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    if d.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"schema {d.get('schema')!r}")
    source, model, arts = d.get("source"), d.get("model"), d.get("artifacts", {})
    if not isinstance(source, dict) or source.get("kind") not in _SOURCE_KINDS:
        raise ValueError("source must be an object with kind " + "/".join(_SOURCE_KINDS))
    if source["kind"] != "seeded" and not isinstance(source.get("path"), str):
        raise ValueError(f"a {source['kind']} source needs its path")
    if not isinstance(model, dict):
        raise ValueError("model must be an object")
    for key, low, high in (
        ("num_classes", 1, MAX_NUM_CLASSES),
        ("image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
    ):
        if not (is_int(model.get(key)) and low <= model[key] <= high):
            raise ValueError(f"model.{key} must be an integer from {low} to {high:,}")
    for key in ("mean", "std"):  # model_for_artifacts normalises with them
        values = model.get(key)
        if not (
            isinstance(values, list)
            and len(values) == 3
            and all(is_number(v) and math.isfinite(v) for v in values)
            and (key == "mean" or all(v > 0 for v in values))
        ):
            raise ValueError(f"model.{key} must be 3 finite numbers{' above 0' * (key == 'std')}")
    seed = source.get("seed")
    seed_ok = seed is None or (is_int(seed) and 0 <= seed <= MAX_SEED)
    if source["kind"] == "seeded" and not seed_ok:
        raise ValueError(f"source.seed must be an integer from 0 to {MAX_SEED:,}")
    if not isinstance(arts, dict) or not all(isinstance(v, dict) for v in arts.values()):
        raise ValueError("artifacts must be an object of records")
    for fmt, record in arts.items():
        name = record.get("path")
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise ValueError(f"artifact {fmt}: path {name!r} is not a file name in the folder")
