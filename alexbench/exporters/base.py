"""What every exporter shares: the export request and the one exporter signature."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from alexbench.fileio import signals_held
from alexbench.model import AlexNet

DEFAULT_OPSET = 18
# The example batch used for tracing. It must be >= 2: torch.export specialises a dimension
# whose example size is 0 or 1 to a constant, which would silently drop the dynamic batch.
EXAMPLE_BATCH = 2
# Both int8 formats (ONNX QDQ and PT2E) measure activation ranges on real images.
NEEDS_CALIBRATION = "int8 needs real images to calibrate: pass --calib-data DIR (an image folder)"
MAX_DYNAMIC_BATCH = 1 << 16
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Every format is fed float32 NCHW images and returns float32 logits: the fp16 variant keeps its
# inputs and outputs fp32 and int8 quantises inside, so a consumer never casts (a test reads
# each file's own types against these).
IO_DTYPE, LAYOUT = "float32", "NCHW"


@dataclass(frozen=True)
class Interface:
    """How a consumer calls one exported file, as the manifest records it. A name is None where
    the file has none to call it by: a .pt2 program takes its input positionally (it was
    exported from a positional example) and the torch formats return a bare tensor."""

    input_name: str | None
    output_name: str | None
    usage: str  # one line a consumer can follow

    def record_fields(self) -> dict[str, Any]:
        """The manifest record's fields it decides. They depend on the format, not on the
        file's bytes, so a reused file's record is brought up to date with them too."""
        return {
            "input_name": self.input_name,
            "output_name": self.output_name,
            "usage": self.usage,
            "input_dtype": IO_DTYPE,
            "output_dtype": IO_DTYPE,
            "layout": LAYOUT,
            # Keyed by name; an unnamed (positional) input or output by its place.
            "dynamic_axes": {
                self.input_name or "args[0]": {0: "batch"},
                self.output_name or "output": {0: "batch"},
            },
        }


ONNX_INTERFACE = Interface(
    INPUT_NAME,
    OUTPUT_NAME,
    f'onnxruntime.InferenceSession(path).run(["{OUTPUT_NAME}"], {{"{INPUT_NAME}": x}})[0]',
)


# The int8 exporter's work folder in the artifact folder: named so that the next export there
# removes it when a process was killed outright (exporters/__init__.py).
WORK_PREFIX = ".alexnet.work."


# The torch files' copy of the ONNX files' metadata_props, as an archive entry of this name:
# torch.jit.load(path, _extra_files={TORCH_METADATA: ""}) or torch.export.load(path,
# extra_files={TORCH_METADATA: ""}) fills the dict with its JSON.
TORCH_METADATA = "alexbench.json"


def torch_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The extra files a .pt / .pt2 carries: the metadata props as one JSON object."""
    return {TORCH_METADATA: json.dumps(metadata, sort_keys=True)}


def save_program(
    program: torch.export.ExportedProgram, path: Path, metadata: dict[str, str]
) -> None:
    """torch.export.save, less what ties the file to this machine and this save: each node's
    stack trace (absolute paths of alexbench's and torch's sources, which ONNX files do not
    carry) and the archive's folder name, which a saved path names after the file (here a
    temporary's, with a process id); through a file object it is "archive", so the same model
    gives the same bytes. Also each node's `from_node` provenance (which graph pass made it), whose
    graph ids are Python object ids: the PT2E int8 program differed on every export."""
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
        node.meta.pop("from_node", None)
    with signals_held(), open(path, "wb") as f:
        torch.export.save(program, f, extra_files=torch_metadata(metadata))


class OnnxExporter(StrEnum):
    DYNAMO = "dynamo"  # torch.onnx.export(dynamo=True): torch.export + onnxscript
    LEGACY = "legacy"  # the TorchScript-based exporter, for older stacks


@dataclass(frozen=True)
class ExportRequest:
    model: AlexNet
    image_size: int
    num_classes: int
    opset: int = DEFAULT_OPSET
    onnx_exporter: OnnxExporter = OnnxExporter.DYNAMO
    # Real, normalised images (N, 3, H, W) for int8 calibration, and where they came from.
    calibration: np.ndarray | None = None
    calibration_desc: str = ""
    calibration_dir: str = ""  # the folder they were drawn from, absolute
    onnx_path: Path | None = None  # the fp32 ONNX file the fp16/int8 variants derive from
    # Written into every file (ONNX: metadata_props; torch: `TORCH_METADATA`): what a consumer
    # needs to feed the model.
    metadata: dict[str, str] = field(default_factory=dict)

    def example_input(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.randn(EXAMPLE_BATCH, 3, self.image_size, self.image_size, generator=g)

    def batch_dim(self) -> Any:
        return torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)


class Exporter(Protocol):
    """Write one artifact to `path` (a temporary name; the caller renames it) and return
    format-specific manifest fields ("exporter"; "opset", "calibration" where they apply)."""

    suffix: str
    interface: Interface  # how a consumer calls the file

    def __call__(self, request: ExportRequest, path: Path) -> dict[str, Any]: ...
