"""Runtime registry: backend name -> Runtime, imported lazily so that a missing optional
library (say, onnxruntime) only disables its own backend."""

from __future__ import annotations

import importlib

from alexbench.devices import Device, is_available
from alexbench.errors import InputError, UnsupportedError, shown
from alexbench.precision import Precision, spec
from alexbench.runtimes.base import (
    BACKEND_ALIASES,
    ArtifactFormat,
    Backend,
    ModelBundle,
    Runtime,
    Session,
    SessionOptions,
)

_MODULES: dict[Backend, str] = {
    Backend.EAGER: "alexbench.runtimes.eager:EagerRuntime",
    Backend.TORCHSCRIPT: "alexbench.runtimes.torchscript:TorchScriptRuntime",
    Backend.PT2: "alexbench.runtimes.pt2:ExportProgramRuntime",
    Backend.ONNXRUNTIME: "alexbench.runtimes.onnxruntime:OnnxRuntime",
    Backend.COMPILE: "alexbench.runtimes.compile:CompileRuntime",
    Backend.OPENVINO: "alexbench.runtimes.openvino:OpenVinoRuntime",
}

__all__ = [
    "ArtifactFormat",
    "Backend",
    "ModelBundle",
    "Runtime",
    "Session",
    "SessionOptions",
    "cell_unavailable",
    "get_runtime",
    "parse_backend",
    "unsupported_reason",
]


def parse_backend(name: str) -> Backend:
    key = name.strip().lower()
    if key in BACKEND_ALIASES:
        return BACKEND_ALIASES[key]
    try:
        return Backend(key)
    except ValueError:
        choices = ", ".join(b.value for b in Backend)
        raise InputError(f"unknown backend '{shown(name)}' (choose from {choices})") from None


def get_runtime(backend: Backend) -> Runtime:
    module_name, cls_name = _MODULES[backend].split(":")
    return getattr(importlib.import_module(module_name), cls_name)()


def unsupported_reason(
    runtime: Runtime, device: Device, precision: Precision, checking: bool = False
) -> str | None:
    """Why this cell cannot run here (library missing, no such device, pair unsupported).
    `checking`: for its numbers only (verify), where `Runtime.checks_only` pairs run too."""
    # In this order: `supports` may need the runtime's library (OpenVINO asks its plugin about
    # bf16), so it is asked only once the library is known to import.
    missing = runtime.available()
    if missing:
        return missing
    if not is_available(device):
        return f"{device.value} is not available on this machine"
    if spec(precision).cuda_only and device is not Device.CUDA:
        return f"{precision.value} is a CUDA tensor-core mode"
    refused = runtime.supports(device, precision)
    if refused and checking and runtime.checks_only(device, precision):
        return None
    return refused


def cell_unavailable(
    runtime: Runtime,
    bundle: ModelBundle,
    device: Device,
    precision: Precision,
    checking: bool = False,
) -> str | None:
    """`unsupported_reason`, or why this bundle lacks the artifact the cell needs."""
    reason = unsupported_reason(runtime, device, precision, checking)
    if reason:
        return reason
    fmt = runtime.artifact_for(precision)
    if fmt is not None and fmt not in bundle.artifacts:
        return bundle.missing.get(fmt, f"no {fmt.value} artifact")
    return None


def check_supported(runtime: Runtime, device: Device, precision: Precision) -> None:
    reason = unsupported_reason(runtime, device, precision)
    if reason:
        raise UnsupportedError(
            f"{runtime.backend.value} on {device.value} at {precision.value}: {reason}"
        )
