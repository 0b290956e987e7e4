"""torch.compile (Inductor) over the eager model."""

from __future__ import annotations

import torch

from alexbench.devices import Device
from alexbench.precision import Precision
from alexbench.runtimes.base import Backend, ModelBundle, Runtime, Session, SessionOptions
from alexbench.runtimes.torch_common import (
    TorchModuleSession,
    apply_torch_settings,
    cast_copy,
    cast_support,
)


class CompileRuntime(Runtime):
    backend = Backend.COMPILE

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
        module = cast_copy(bundle.loaded.model, device, precision)
        # dynamic=False: each batch size compiles its own specialised kernels, the fastest case;
        # compilation happens on the first call and is reported as cold start, not steady state.
        mode = "max-autotune-no-cudagraphs" if device is Device.CUDA else None
        compiled = torch.compile(module, dynamic=False, mode=mode)
        settings["compile_mode"] = mode or "default"
        return TorchModuleSession(compiled, device, precision, settings, opts)
