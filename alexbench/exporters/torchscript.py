"""TorchScript: torch.jit.trace, then freeze (weights inlined as constants, no Python needed)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from alexbench.exporters.base import ExportRequest

suffix = ".pt"


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    model = request.model.eval()
    # TorchScript is deprecated upstream (hence the .pt2 artifact); silence the reminders.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # check_trace re-runs the trace on the example and compares: a cheap sanity check.
        traced = torch.jit.trace(model, request.example_input(), check_trace=True)
        frozen = torch.jit.freeze(traced)
        torch.jit.save(frozen, str(path))
    return {"exporter": "torch.jit.trace + torch.jit.freeze"}
