"""torch.export program (.pt2): the artifact that keeps working as TorchScript is deprecated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from alexbench.exporters.base import ExportRequest, Interface, save_program

suffix = ".pt2"

# Exported from a positional example, the program's module takes its input positionally only
# (a keyword fails its input check); its output is a bare tensor.
interface = Interface(None, None, "torch.export.load(path).module()(x)")


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    program = torch.export.export(
        request.model.eval(),
        (request.example_input(),),
        dynamic_shapes={"x": {0: request.batch_dim()}},
    )
    save_program(program, path, request.metadata)
    return {"exporter": "torch.export.export"}
