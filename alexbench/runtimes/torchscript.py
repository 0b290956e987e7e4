"""TorchScript: the traced, frozen `.pt` artifact loaded with torch.jit.load; at bf16/fp16, the
model cast to that dtype, traced and frozen the same way at load."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from alexbench.devices import Device, torch_device
from alexbench.exporters.base import ExportRequest
from alexbench.exporters.torchscript import trace_and_freeze
from alexbench.precision import Precision, spec
from alexbench.runtimes.base import ArtifactFormat, Backend, ModelBundle
from alexbench.runtimes.torch_common import TorchRuntime, cast_copy, memory_format_for

# A cast precision has no file of its own: freezing inlined the weights as fp32 constants, which
# no `.to()` can reach, so the artifact can only run as exported.
_CAST = (Precision.FP16, Precision.BF16)
# torch.jit.trace stores each convolution's cuDNN switches as constants of the graph, taken from
# the global flags at trace time, and ATen runs the convolution with those, not with the flags of
# the moment. A file traced with torch's defaults (allow_tf32 on; the exporter turns it off)
# would run TF32 convolutions in an fp32 cell on CUDA, and every file would ignore
# --cudnn-benchmark. aten::_convolution's switch arguments, by name (positions differ between
# its overloads: the deprecated one has no allow_tf32):
_SWITCHES = ("benchmark", "deterministic", "cudnn_enabled", "allow_tf32")


def _cudnn_now() -> dict[str, bool]:
    cudnn = torch.backends.cudnn
    return {
        "benchmark": bool(cudnn.benchmark),
        # What the tracer itself stores: either kind of determinism asked for.
        "deterministic": bool(cudnn.deterministic) or torch.are_deterministic_algorithms_enabled(),
        "cudnn_enabled": bool(cudnn.enabled),
        "allow_tf32": bool(cudnn.allow_tf32),
    }


def _graphs(module: torch.jit.ScriptModule) -> list[torch.Graph]:
    """The forward graph of the module and its submodules (a frozen module has one, inlined)."""
    graphs = []
    for sub in module.modules():
        try:
            graphs.append(sub.graph)
        except (AttributeError, RuntimeError):  # a submodule without forward (a ModuleList)
            continue
    return graphs


def follow_cudnn_settings(module: torch.jit.ScriptModule) -> int:
    """Rewrite the switches of every traced convolution to torch.backends.cudnn's flags now (the
    session's, set before the module is made). Before the module's first call: the executor keeps
    the plan it made then. Returns how many convolutions it rewrote."""
    now = _cudnn_now()
    count = 0
    for graph in _graphs(module):
        for node in graph.findAllNodes("aten::_convolution"):
            names = [a.name for a in torch._C.parse_schema(node.schema()).arguments]
            for name in _SWITCHES:
                if name not in names:  # an overload without it (no allow_tf32 before 1.7)
                    continue
                value = graph.insertConstant(now[name])
                value.node().moveBefore(node)
                node.replaceInput(names.index(name), value)
            count += 1
        torch._C._jit_pass_dce(graph)  # the constants they replace
    return count


class TorchScriptRuntime(TorchRuntime):
    backend = Backend.TORCHSCRIPT
    artifact = ArtifactFormat.TORCHSCRIPT

    def artifact_for(self, precision: Precision) -> ArtifactFormat | None:
        return None if precision in _CAST else self.artifact  # a cast cell never reads the file

    def layout(self, device: Device, precision: Precision) -> str:
        # The exported file's constants were frozen in NCHW; a cast trace is made in the layout
        # the other torch runtimes run in, and its frozen constants keep it.
        return memory_format_for(device) if precision in _CAST else "contiguous"

    def module_settings(self, device: Device, precision: Precision) -> dict[str, Any]:
        if precision in _CAST:
            return {
                "module_source": f"model cast to {precision.value}, traced and frozen at load "
                "(the exported file holds fp32 constants)"
            }
        return {"module_source": "exported file"}

    def make_module(
        self, bundle: ModelBundle, device: Device, precision: Precision
    ) -> torch.nn.Module:
        if precision in _CAST:
            module = self._trace_cast(bundle, device, precision)
        else:
            path = self.artifact_path(bundle)
            # map_location moves the frozen constants to the target device at load time.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
                module = torch.jit.load(str(path), map_location=device.value)
        follow_cudnn_settings(module)
        return module

    def _trace_cast(
        self, bundle: ModelBundle, device: Device, precision: Precision
    ) -> torch.jit.ScriptModule:
        meta = bundle.loaded.meta
        module = cast_copy(bundle.loaded.model, device, precision)
        request = ExportRequest(module, meta.image_size, meta.num_classes)
        example = request.example_input().to(torch_device(device), dtype=spec(precision).dtype)
        if self.layout(device, precision) == "channels_last":
            module = module.to(memory_format=torch.channels_last)
            example = example.contiguous(memory_format=torch.channels_last)
        # No check_trace: its fp32 tolerance would warn on bf16 rounding; the parity gate that
        # every cell passes checks the numerics instead.
        return trace_and_freeze(module, example, check=False)
