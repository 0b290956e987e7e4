"""TorchScript: the traced, frozen `.pt` artifact loaded with torch.jit.load."""

from __future__ import annotations

import warnings

import torch

from alexbench.devices import Device
from alexbench.errors import ExportError
from alexbench.precision import Precision
from alexbench.runtimes.base import (
    ArtifactFormat,
    Backend,
    ModelBundle,
    Runtime,
    Session,
    SessionOptions,
)
from alexbench.runtimes.torch_common import TorchModuleSession, apply_torch_settings, cast_support


class TorchScriptRuntime(Runtime):
    backend = Backend.TORCHSCRIPT
    artifact = ArtifactFormat.TORCHSCRIPT

    def supports(self, device: Device, precision: Precision) -> str | None:
        if precision in (Precision.FP16, Precision.BF16):
            return "the frozen artifact holds fp32 constants (freezing inlines the weights)"
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
        path = bundle.artifacts.get(ArtifactFormat.TORCHSCRIPT)
        if path is None:
            raise ExportError("no TorchScript artifact in the bundle (run `alexbench export`)")
        # map_location moves the frozen constants to the target device at load time.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            module = torch.jit.load(str(path), map_location=device.value)
        return TorchModuleSession(module, device, precision, settings, opts)
