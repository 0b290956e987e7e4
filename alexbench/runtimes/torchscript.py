"""TorchScript: the traced, frozen `.pt` artifact loaded with torch.jit.load."""

from __future__ import annotations

import warnings

import torch

from alexbench.devices import Device
from alexbench.precision import Precision
from alexbench.runtimes.base import ArtifactFormat, Backend, ModelBundle
from alexbench.runtimes.torch_common import TorchRuntime, cast_support


class TorchScriptRuntime(TorchRuntime):
    backend = Backend.TORCHSCRIPT
    artifact = ArtifactFormat.TORCHSCRIPT
    converts_layout = False  # freezing inlined the weights as constants in NCHW

    def supports(self, device: Device, precision: Precision) -> str | None:
        if precision in (Precision.FP16, Precision.BF16):
            return "the frozen artifact holds fp32 constants (freezing inlines the weights)"
        return cast_support(device, precision)

    def make_module(
        self, bundle: ModelBundle, device: Device, precision: Precision
    ) -> torch.nn.Module:
        path = self.artifact_path(bundle)
        # map_location moves the frozen constants to the target device at load time.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            return torch.jit.load(str(path), map_location=device.value)
