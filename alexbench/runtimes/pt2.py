"""torch.export program: the `.pt2` artifact loaded with torch.export.load."""

from __future__ import annotations

import torch

from alexbench.devices import Device, torch_device
from alexbench.errors import ExportError
from alexbench.precision import Precision, spec
from alexbench.runtimes.base import (
    ArtifactFormat,
    Backend,
    ModelBundle,
    Runtime,
    Session,
    SessionOptions,
)
from alexbench.runtimes.torch_common import TorchModuleSession, apply_torch_settings, cast_support


class ExportProgramRuntime(Runtime):
    backend = Backend.PT2
    artifact = ArtifactFormat.PT2

    def supports(self, device: Device, precision: Precision) -> str | None:
        return cast_support(device, precision)

    def load(
        self,
        bundle: ModelBundle,
        device: Device,
        precision: Precision,
        options: SessionOptions | None = None,
    ) -> Session:
        opts = options or SessionOptions()
        settings = apply_torch_settings(device, precision, opts)
        path = bundle.artifacts.get(ArtifactFormat.PT2)
        if path is None:
            raise ExportError("no torch.export artifact in the bundle (run `alexbench export`)")
        program = torch.export.load(str(path))
        # The program's graph has no dtype- or device-specific constants for AlexNet, so its
        # unlifted module can be moved and cast like an nn.Module.
        module = program.module().to(torch_device(device), dtype=spec(precision).dtype)
        return TorchModuleSession(module, device, precision, settings, opts)
