"""PyTorch eager: the reference runtime."""

from __future__ import annotations

import copy

from alexbench.devices import Device, torch_device
from alexbench.precision import Precision, spec
from alexbench.runtimes.base import Backend, ModelBundle, Runtime, Session, SessionOptions
from alexbench.runtimes.torch_common import TorchModuleSession, apply_torch_settings, cast_support


class EagerRuntime(Runtime):
    backend = Backend.EAGER

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
        # A copy: casting to fp16/bf16 or moving to CUDA must not change the caller's model.
        module = copy.deepcopy(bundle.loaded.model).eval()
        module = module.to(torch_device(device), dtype=spec(precision).dtype)
        return TorchModuleSession(module, device, precision, settings, opts)
