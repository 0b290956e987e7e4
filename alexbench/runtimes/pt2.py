"""torch.export program: the `.pt2` artifact loaded with torch.export.load."""

from __future__ import annotations

import torch

from alexbench.devices import Device, torch_device
from alexbench.precision import Precision, spec
from alexbench.runtimes.base import ArtifactFormat, Backend, ModelBundle
from alexbench.runtimes.torch_common import TorchRuntime, load_program


class ExportProgramRuntime(TorchRuntime):
    backend = Backend.PT2
    artifact = ArtifactFormat.PT2

    def make_module(
        self, bundle: ModelBundle, device: Device, precision: Precision
    ) -> torch.nn.Module:
        program = load_program(self.artifact_path(bundle))
        # The program's graph has no dtype- or device-specific constants for AlexNet, so its
        # unlifted module can be moved and cast like an nn.Module.
        return program.module().to(torch_device(device), dtype=spec(precision).dtype)
