"""manifest.json: what was exported, from what, by which versions; and whether it is stale."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from alexbench.errors import InputError
from alexbench.fileio import write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "alexbench-manifest/1"


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
    input_name: str
    input_shape: list[int | str]
    output_name: str
    output_shape: list[int | str]
    dynamic_axes: dict[str, dict[int, str]]
    exporter: str
    opset: int | None
    export_seconds: float
    config_key: str
    calibration: str = ""  # int8 only: the images the quantisation ranges were measured on
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
        d["artifacts"] = {k: asdict(v) for k, v in self.artifacts.items()}
        return d

    def save(self, directory: Path) -> Path:
        return write_json(directory / MANIFEST_NAME, self.to_dict())

    @classmethod
    def load(cls, directory: Path) -> Manifest | None:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            if d.get("schema") != MANIFEST_SCHEMA:
                raise ValueError(f"schema {d.get('schema')!r}")
            arts = {k: ArtifactRecord(**v) for k, v in d.get("artifacts", {}).items()}
            return cls(d["source"], d["model"], d.get("versions", {}), arts)
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: unreadable manifest ({e}); delete it to re-export") from e
