"""OpenVINO (optional, `pip install 'alexbench[openvino]'`): the ONNX artifacts on OpenVINO's CPU
plugin.

OpenVINO is imported only here, and only when a session is made or a cell is checked: without it
the backend's cells are skipped with the install hint and nothing else changes.

One synchronous infer request on one stream (PERFORMANCE_HINT=LATENCY, NUM_STREAMS=1): the same
single-stream contract as the other runtimes. Static shapes run fastest, so the model (whose batch
dimension is dynamic) is reshaped and compiled once per batch size, in the untimed `prepare`; the
batch-1 model is compiled by `load`, so that a request the CPU cannot honour (bf16 that comes back
as f32, an int8 model whose layers run in f32) fails there with one line instead of being timed.

Everything that decides which kernels run is set explicitly and read back from the compiled model
into `info()`: OpenVINO's CPU plugin defaults to bf16 inference on CPUs that have it, so an fp32
cell that did not ask for f32 would quietly be a bf16 one.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from alexbench.devices import Device, default_threads
from alexbench.errors import ExportError, InputError, UnsupportedError
from alexbench.precision import Precision
from alexbench.runtimes.base import (
    ArtifactFormat,
    Backend,
    ModelBundle,
    Runtime,
    Session,
    SessionOptions,
    compile_mode_not_applied,
)

INSTALL_HINT = "openvino is not installed: pip install 'alexbench[openvino]'"
OV_DEVICE = "CPU"  # the CPU plugin; OpenVINO's "GPU" plugin is Intel graphics, not NVIDIA
# Which ONNX file serves each precision (every variant keeps fp32 inputs and outputs). bf16 is
# the fp32 model with a bf16 inference-precision hint: OpenVINO converts it when compiling.
VARIANTS = {
    Precision.FP32: ArtifactFormat.ONNX,
    Precision.BF16: ArtifactFormat.ONNX,
    Precision.INT8: ArtifactFormat.ONNX_INT8,
}
# INFERENCE_PRECISION_HINT per precision. int8 asks for f32 too: the QDQ pairs decide which
# layers run in int8, and the layers left between them must stay f32 (not bf16) so that int8
# is measured against the same float code as ONNX Runtime's int8.
HINT_TYPES = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.INT8: "f32"}
# The layer types that do AlexNet's arithmetic, as the CPU plugin's runtime model names them.
COMPUTE_LAYERS = frozenset({"Convolution", "FullyConnected", "MatMul"})
INT8_TYPES = frozenset({"u8", "i8"})
# Not exposed as a Python property helper: 0 turns off dynamic activation quantization, which
# the CPU plugin may apply to fully connected layers by default. An fp32 or bf16 cell must run
# its float weights in float, and int8 is the static QDQ model's own quantization.
DYNAMIC_QUANT_KEY = "DYNAMIC_QUANTIZATION_GROUP_SIZE"


def _ov() -> Any:
    import openvino

    return openvino


@lru_cache(maxsize=1)
def ov_core() -> Any:
    """One Core per process: it holds the loaded plugins (creating one loads them again)."""
    return _ov().Core()


def ov_config(inference_type: str, threads: int) -> dict[str, Any]:
    """The compile settings of every openvino cell (and of the roofline's OpenVINO GEMM):
    `inference_type` is an ov.Type name (f32, bf16)."""
    ov = _ov()
    hint = ov.properties.hint
    return {
        hint.performance_mode(): hint.PerformanceMode.LATENCY,
        # PERFORMANCE lets the precision hint decide; ACCURACY would override it.
        hint.execution_mode(): hint.ExecutionMode.PERFORMANCE,
        ov.properties.streams.num(): 1,  # the hint implies one; set so it cannot drift
        hint.inference_precision(): getattr(ov.Type, inference_type),
        DYNAMIC_QUANT_KEY: 0,
        ov.properties.inference_num_threads(): threads,
    }


def _one_line(e: BaseException) -> str:
    """OpenVINO's errors are a stack of 'Exception from src/...' lines; the last line says why."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def _text(value: Any) -> Any:
    """A property value as JSON-friendly text: ov.Type -> 'f32', enums -> their name."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    if hasattr(value, "name") and not isinstance(value, str | int | float | bool):
        return value.name
    return value


@dataclass
class CompiledBatch:
    """One static-shape compilation: the compiled model, its single infer request, and what the
    compiled model reports it does."""

    batch: int
    compiled: Any
    request: Any
    compile_s: float
    properties: dict[str, Any]
    # Compute layers (convolutions, fully connected) per runtime precision, e.g. {"u8": 8}.
    compute_precisions: dict[str, int]
    int8_ops: int  # every executed (non-constant) op that ran in u8/i8
    primitives: list[str]  # the kernels the compute layers use (e.g. brgconv_avx512_core)


@dataclass(frozen=True)
class OpenVinoInput:
    """A prepared batch: the request of its batch size and a tensor sharing `array`'s memory
    (no copy in the timed call). `array` is kept here so the shared memory outlives the call."""

    request: Any
    tensor: Any
    array: np.ndarray


def _runtime_census(compiled: Any) -> tuple[dict[str, int], int, list[str]]:
    """What the compiled model actually executes, from its runtime model's rt_info."""
    precisions: Counter[str] = Counter()
    primitives: set[str] = set()
    int8_ops = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        runtime = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
        if layer == "Const":
            continue  # weights stored as i8 are not int8 arithmetic
        if runtime in INT8_TYPES:
            int8_ops += 1
        if layer in COMPUTE_LAYERS:
            precisions[runtime] += 1
            if "primitiveType" in info:
                primitives.add(info["primitiveType"].astype(str))
    return dict(sorted(precisions.items())), int8_ops, sorted(primitives)


def _check_compiled(entry: CompiledBatch, precision: Precision) -> None:
    """Raise when the compiled model does not run what the cell is named after: a speed is never
    quoted for the wrong code."""
    asked = HINT_TYPES[precision]
    got = entry.properties["inference_precision"]
    if got != asked:
        # bf16 is the usual case: the CPU plugin falls back to f32 where the CPU lacks bf16.
        why = " (no bf16 on this CPU)" if asked == "bf16" else ""
        raise UnsupportedError(
            f"openvino compiled the {precision.value} request with inference precision {got} "
            f"instead of {asked}{why}"
        )
    counts = entry.compute_precisions
    total = sum(counts.values())
    if precision is Precision.INT8:
        int8 = sum(n for p, n in counts.items() if p in INT8_TYPES)
        if int8 == 0:
            raise UnsupportedError(
                f"openvino ran none of the int8 model's {total} convolution/matmul layers in "
                f"int8 (runtime precisions {counts})"
            )
    elif counts.get(asked, 0) != total or total == 0:
        raise UnsupportedError(
            f"openvino's {precision.value} model runs its convolution/matmul layers as {counts}, "
            f"not all {asked}"
        )


@dataclass
class OpenVinoSession(Session):
    """One read model, compiled per batch size with the same settings."""

    model: Any
    device: Device
    precision: Precision
    options: SessionOptions
    artifact: ArtifactFormat
    config: dict[str, Any]
    compiled: dict[int, CompiledBatch] = field(default_factory=dict)
    last_batch: int | None = None

    def compiled_for(self, batch: int) -> CompiledBatch:
        entry = self.compiled.get(batch)
        if entry is not None:
            return entry
        ov = _ov()
        dims = list(self.model.input().get_partial_shape())
        static = [batch, *(d.get_length() for d in dims[1:])]
        # reshape changes `self.model` in place; compile_model makes its own copy, so every
        # batch size is compiled from the same graph.
        self.model.reshape({0: ov.PartialShape(static)})
        t0 = time.perf_counter()
        try:
            compiled = ov_core().compile_model(self.model, OV_DEVICE, self.config)
        except RuntimeError as e:
            raise UnsupportedError(
                f"openvino cannot compile batch {batch}: {_one_line(e)}"
            ) from None
        compile_s = time.perf_counter() - t0
        props = ov.properties
        keys = {
            "inference_precision": props.hint.inference_precision(),
            "performance_hint": props.hint.performance_mode(),
            "execution_mode": props.hint.execution_mode(),
            "num_streams": props.streams.num(),
            "inference_num_threads": props.inference_num_threads(),
            "optimal_infer_requests": props.optimal_number_of_infer_requests(),
            "enable_cpu_pinning": props.hint.enable_cpu_pinning(),
            "enable_hyper_threading": props.hint.enable_hyper_threading(),
            "dynamic_quantization_group_size": DYNAMIC_QUANT_KEY,
            "execution_devices": props.execution_devices(),
        }
        read = {name: _text(compiled.get_property(key)) for name, key in keys.items()}
        counts, int8_ops, primitives = _runtime_census(compiled)
        entry = CompiledBatch(
            batch, compiled, compiled.create_infer_request(), compile_s, read, counts, int8_ops,
            primitives,
        )  # fmt: skip
        _check_compiled(entry, self.precision)
        self.compiled[batch] = entry
        return entry

    def prepare(self, batch: np.ndarray) -> OpenVinoInput:
        # A private C-contiguous fp32 copy: the tensor shares its memory, and a caller reusing
        # its own buffer must not change a prepared input.
        x = np.array(batch, dtype=np.float32, order="C", copy=True)
        expected = [d.get_length() for d in list(self.model.input().get_partial_shape())[1:]]
        if x.ndim != 4 or list(x.shape[1:]) != expected:
            want = ", ".join(map(str, ["N", *expected]))
            raise InputError(f"openvino: input shape {list(x.shape)}, expected [{want}]")
        entry = self.compiled_for(x.shape[0])
        self.last_batch = entry.batch
        return OpenVinoInput(entry.request, _ov().Tensor(x, shared_memory=True), x)

    def run(self, inputs: OpenVinoInput) -> Any:
        # Setting the tensor only swaps a pointer; share_outputs returns views of the request's
        # output tensor instead of copying it (to_numpy copies, untimed).
        inputs.request.set_input_tensor(inputs.tensor)
        return inputs.request.infer(share_outputs=True)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.array(outputs.to_tuple()[0], dtype=np.float32, copy=True)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "openvino": _ov().get_version(),
            "device": OV_DEVICE,
            "full_device_name": ov_core().get_property(OV_DEVICE, "FULL_DEVICE_NAME"),
            "artifact": self.artifact.value,
            "threads_requested": self.options.threads,  # None: torch's count was given
            "infer_requests": 1,
            "compiled_batches": sorted(self.compiled),
            "compile_s": {str(b): round(e.compile_s, 4) for b, e in sorted(self.compiled.items())},
        }
        entry = self.compiled.get(self.last_batch) if self.last_batch else None
        entry = entry or next(iter(self.compiled.values()), None)
        if entry is not None:  # what the model this cell ran reports (the last prepared batch)
            out["batch"] = entry.batch
            out.update(entry.properties)
            out["compute_layer_precisions"] = entry.compute_precisions
            out["compute_primitives"] = entry.primitives
            out["int8_ops"] = entry.int8_ops
        out.update(compile_mode_not_applied(self.options, compiles=False))
        if self.options.cuda_graphs or self.options.include_transfers:
            out["cuda_options_not_applied"] = "OpenVINO runs on the CPU here"
        return out

    def close(self) -> None:
        self.compiled.clear()  # infer requests before their compiled models
        self.model = None


class OpenVinoRuntime(Runtime):
    backend = Backend.OPENVINO
    artifact = ArtifactFormat.ONNX

    def available(self) -> str | None:
        try:
            _ov()
        except ImportError:
            return INSTALL_HINT
        return None

    def artifact_for(self, precision: Precision) -> ArtifactFormat | None:
        return VARIANTS.get(precision)

    def supports(self, device: Device, precision: Precision) -> str | None:
        if device is not Device.CPU:
            return "the OpenVINO CPU plugin only (NVIDIA GPUs are not an OpenVINO device)"
        if precision is Precision.FP16:
            return "the CPU plugin has no fp16 inference precision on x86 (use bf16 or int8)"
        if precision not in VARIANTS:
            return f"no {precision.value} mode in OpenVINO's CPU plugin"
        if precision is Precision.BF16:
            caps = ov_core().get_property(OV_DEVICE, "OPTIMIZATION_CAPABILITIES")
            if "BF16" not in caps:
                return "this CPU has no bf16 support in OpenVINO's CPU plugin (it would run f32)"
        return None

    def load(
        self,
        bundle: ModelBundle,
        device: Device,
        precision: Precision,
        options: SessionOptions | None = None,
    ) -> Session:
        opts = options or SessionOptions()
        reason = self.supports(device, precision)
        if reason:
            raise UnsupportedError(f"openvino on {device.value} at {precision.value}: {reason}")
        fmt = VARIANTS[precision]
        path = bundle.artifacts.get(fmt)
        if path is None:
            why = bundle.missing.get(fmt, "run `alexbench export`")
            raise ExportError(f"no {fmt.value} artifact: {why}")
        # Threads set explicitly, like ONNX Runtime's intra-op threads: torch's count (one per
        # physical core by default) unless --threads says otherwise, so every runtime gets the same.
        config = ov_config(HINT_TYPES[precision], opts.threads or default_threads())
        try:
            model = ov_core().read_model(str(path))
        except RuntimeError as e:
            raise ExportError(f"openvino cannot read {path.name}: {_one_line(e)}") from None
        session = OpenVinoSession(model, device, precision, opts, fmt, config)
        # Compiled now, not at the first prepare: a model the CPU cannot run as asked fails at
        # load, and info() right after load already has the read-back settings.
        session.compiled_for(1)
        return session
