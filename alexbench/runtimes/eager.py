"""PyTorch eager: the reference runtime."""

from __future__ import annotations

from alexbench.devices import Device
from alexbench.precision import Precision
from alexbench.runtimes.base import Backend, ModelBundle, Runtime, Session, SessionOptions
from alexbench.runtimes.torch_common import (
    TorchModuleSession,
    apply_torch_settings,
    cast_copy,
    cast_support,
)


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
        module = cast_copy(bundle.loaded.model, device, precision)
        return TorchModuleSession(module, device, precision, settings, opts)
