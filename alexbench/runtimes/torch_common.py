"""What the PyTorch-based runtimes share: flags set explicitly, dtype casting, a module session."""

from __future__ import annotations

import abc
import copy
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from alexbench.devices import Device, torch_device
from alexbench.errors import ExportError
from alexbench.precision import Precision, spec
from alexbench.runtimes.base import (
    ArtifactFormat,
    ModelBundle,
    Runtime,
    Session,
    SessionOptions,
    compile_mode_not_applied,
)


def cast_support(device: Device, precision: Precision) -> str | None:
    if precision is Precision.INT8:
        return "int8 in PyTorch runs the PT2E-quantised program through --backend compile"
    return None


def cast_copy(model: torch.nn.Module, device: Device, precision: Precision) -> torch.nn.Module:
    """An eval-mode copy on `device` in `precision`'s dtype: the caller's model stays untouched."""
    module = copy.deepcopy(model).eval()
    return module.to(torch_device(device), dtype=spec(precision).dtype)


def load_program(path: Path) -> torch.export.ExportedProgram:
    """torch.export.load, without the traceback torch logs (as a warning) before it retries a
    file its current format cannot read: a truncated or foreign .pt2 is one error in its cell,
    raised by the retry, not a screenful of stack frames."""
    logger = logging.getLogger("torch.export")
    was = logger.disabled
    logger.disabled = True
    try:
        return torch.export.load(str(path))
    finally:
        logger.disabled = was


def memory_format_for(device: Device) -> str:
    """The layout the PyTorch runtimes run in. On CPU, channels_last (NHWC) was faster at every
    precision and batch measured (benchmarks/layout_check.py, 2 cores: 0.72-0.90x the contiguous
    latency on an Intel Xeon, 0.71-0.91x on an AMD EPYC; results/*/layout-check_vm_cpu.json).
    CUDA keeps NCHW until a GPU session measures it."""
    return "channels_last" if device is Device.CPU else "contiguous"


def apply_torch_settings(device: Device, precision: Precision, options: SessionOptions) -> dict:
    """Set every global flag that changes speed or numerics, so no runtime inherits defaults.

    Returns the settings as applied, for the results file.
    """
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    tf32 = precision is Precision.TF32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = options.cudnn_benchmark
    applied = {"torch_threads": torch.get_num_threads(), "allow_tf32": tf32}
    if device is Device.CUDA:  # cuDNN runs on CUDA only: a CPU cell has no such setting
        applied["cudnn_benchmark"] = options.cudnn_benchmark
    return applied


def _not_applied(
    opts: SessionOptions, cuda: bool, transfers: bool, compiled: bool
) -> dict[str, str]:
    """Requested flags that this cell does not apply, with why (recorded with the cell)."""
    out = compile_mode_not_applied(opts, compiled)
    if opts.cuda_graphs and not cuda:
        out["cuda_graphs_not_applied"] = "CUDA graphs exist on CUDA only"
    elif opts.cuda_graphs and transfers and not compiled:  # Inductor's graphs copy the input
        out["cuda_graphs_not_applied"] = "--include-transfers copies through the host each call"
    if opts.include_transfers and not cuda:
        out["include_transfers_not_applied"] = "CPU inputs already are in host memory"
    return out


class TorchModuleSession(Session):
    """Runs any callable torch module (eager, scripted, exported, compiled)."""

    # A torch.compile module: Inductor applies --compile-mode and its own CUDA graphs, so this
    # class captures none itself.
    compiled = False

    def __init__(
        self,
        module: Any,
        device: Device,
        precision: Precision,
        settings: dict[str, Any],
        options: SessionOptions | None = None,
    ) -> None:
        opts = options or SessionOptions()
        self.module = module
        self.device = device
        self.precision = precision
        self._torch_device = torch_device(device)
        # An int8 program takes fp32 images and quantises them itself; the others take their dtype.
        self._dtype = torch.float32 if precision is Precision.INT8 else spec(precision).dtype
        # The layout the module was converted to (TorchRuntime.load); inputs follow it.
        self._channels_last = settings.get("memory_format") == "channels_last"
        cuda = device is Device.CUDA
        # End-to-end mode: inputs stay in pinned host memory as fp32 (the bytes every runtime
        # moves), are cast on the device, and fp32 logits come back to the host in `run`.
        self._transfers = cuda and opts.include_transfers
        self._graphs = cuda and opts.cuda_graphs and not self._transfers and not self.compiled
        self.device_time_measurable = cuda
        # One captured graph per prepared input tensor (its own static input): replay needs no
        # copy, so graph and non-graph cells time the same work.
        self._graph_cache: dict[int, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._settings = dict(
            settings,
            include_transfers=self._transfers,
            cuda_graphs=self._graphs,
            **_not_applied(opts, cuda, self._transfers, self.compiled),
        )

    def prepare(self, batch: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self._transfers:
            return t.pin_memory()
        t = t.to(self._torch_device, dtype=self._dtype)
        return t.contiguous(memory_format=torch.channels_last) if self._channels_last else t

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self._transfers:
                x = inputs.to(self._torch_device, non_blocking=True).to(self._dtype)
                return self.module(x).float().cpu()
            if self._graphs:
                return self._replay(inputs)
            return self.module(inputs)

    def synchronize(self) -> None:
        if self.device is Device.CUDA:
            torch.cuda.current_stream().synchronize()

    def _replay(self, inputs: torch.Tensor) -> torch.Tensor:
        """CUDA graphs remove per-kernel launch overhead, which dominates at small batch. Each
        prepared input gets its own graph captured on that very tensor, so a replay reads it in
        place; graphs of another batch size are dropped when a new size arrives."""
        key = inputs.data_ptr()
        entry = self._graph_cache.get(key)
        if entry is None or entry[1].shape != inputs.shape:
            self._graph_cache = {
                k: v for k, v in self._graph_cache.items() if v[1].shape == inputs.shape
            }
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm up allocations outside the capture
                    self.module(inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.module(inputs)
            entry = (graph, inputs, static_out)  # holding `inputs` keeps its address ours
            self._graph_cache[key] = entry
        graph, _, static_out = entry
        graph.replay()
        return static_out

    def to_numpy(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.detach().float().cpu().numpy()

    def info(self) -> dict[str, Any]:
        return dict(self._settings, dtype=str(self._dtype).removeprefix("torch."))

    def close(self) -> None:
        self.module = None
        self._graph_cache.clear()
        if self.device is Device.CUDA:
            torch.cuda.empty_cache()


class TorchRuntime(Runtime):
    """What every PyTorch runtime shares: the precisions a cast supports, the settings applied
    and recorded, and a `TorchModuleSession` around the module. Eager, TorchScript, torch.export
    and torch.compile differ only in `make_module` (and compile in its session class)."""

    session_class: ClassVar[type[TorchModuleSession]] = TorchModuleSession

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
        module = self.make_module(bundle, device, precision)
        layout = self.layout(device, precision)
        # A frozen TorchScript module has no parameters: `.to` is a no-op there, and its traced
        # constants already are in `layout` (TorchScriptRuntime traces in it).
        if layout == "channels_last":
            module = module.to(memory_format=torch.channels_last)
        settings["memory_format"] = layout
        settings.update(self.module_settings(device, precision))
        return self.session_class(module, device, precision, settings, opts)

    def layout(self, device: Device, precision: Precision) -> str:
        """The memory format the module and its inputs run in."""
        return memory_format_for(device)

    def module_settings(self, device: Device, precision: Precision) -> dict[str, Any]:
        """How the module was made, where that is not obvious from the backend (for the results)."""
        return {}

    @abc.abstractmethod
    def make_module(
        self, bundle: ModelBundle, device: Device, precision: Precision
    ) -> torch.nn.Module:
        """The module this runtime runs, on `device` at `precision`."""

    def artifact_path(self, bundle: ModelBundle, fmt: ArtifactFormat | None = None) -> Path:
        """This runtime's exported file (`fmt`, default its own), or a one-line error saying
        how to make it."""
        fmt = fmt or self.artifact
        path = bundle.artifacts.get(fmt) if fmt else None
        if fmt is not None and fmt in bundle.missing:
            raise ExportError(f"no {fmt.value} artifact: {bundle.missing[fmt]}")
        if path is None:
            name = fmt.value if fmt else self.backend.value
            raise ExportError(f"no {name} artifact in the bundle (run `alexbench export`)")
        return path
