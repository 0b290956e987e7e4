"""PyTorch eager: the reference runtime."""

from __future__ import annotations

import torch

from alexbench.devices import Device
from alexbench.precision import Precision
from alexbench.runtimes.base import Backend, ModelBundle
from alexbench.runtimes.torch_common import TorchRuntime, cast_copy


class EagerRuntime(TorchRuntime):
    backend = Backend.EAGER

    def make_module(
        self, bundle: ModelBundle, device: Device, precision: Precision
    ) -> torch.nn.Module:
        return cast_copy(bundle.loaded.model, device, precision)
