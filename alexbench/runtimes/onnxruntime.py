"""ONNX Runtime: the `.onnx` artifact on the CPU provider, or the CUDA provider with IO binding."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from alexbench.devices import Device
from alexbench.errors import DeviceUnavailableError, ExportError
from alexbench.precision import Precision
from alexbench.runtimes.base import (
    ArtifactFormat,
    Backend,
    ModelBundle,
    Runtime,
    Session,
    SessionOptions,
)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Which ONNX file serves each precision. Every variant keeps fp32 inputs and outputs, so sessions
# are fed identically.
VARIANTS = {
    Precision.FP32: ArtifactFormat.ONNX,
    Precision.TF32: ArtifactFormat.ONNX,  # the fp32 model with the CUDA provider's use_tf32
    Precision.FP16: ArtifactFormat.ONNX_FP16,
    Precision.INT8: ArtifactFormat.ONNX_INT8,
}


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def _default_threads() -> int:
    import torch

    return torch.get_num_threads()


class OnnxRuntimeSession(Session):
    def __init__(self, sess: Any, device: Device, precision: Precision, opts: SessionOptions):
        self.sess = sess
        self.device = device
        self.precision = precision
        self._opts = opts
        # Device-resident CUDA inputs go through IO binding so that no host copy is timed.
        self._bound = device is Device.CUDA and not opts.include_transfers
        # ORT runs on its own CUDA stream and returns after it is done: time it on the host.
        self.host_synchronous = True

    def prepare(self, batch: np.ndarray) -> Any:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not self._bound:
            return {INPUT_NAME: x}  # the feed dict is built here, not in the timed `run`
        ort = _ort()
        value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        binding = self.sess.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, value)
        binding.bind_output(OUTPUT_NAME, "cuda", 0)
        return (binding, value)  # keep the OrtValue alive as long as the binding

    def run(self, inputs: Any) -> Any:
        if self._bound:
            binding = inputs[0]
            # Synchronous: returns after the CUDA stream has finished (bound outputs synchronised).
            self.sess.run_with_iobinding(binding)
            return binding
        return self.sess.run([OUTPUT_NAME], inputs)[0]

    def to_numpy(self, outputs: Any) -> np.ndarray:
        if self._bound:
            return np.asarray(outputs.copy_outputs_to_cpu()[0], dtype=np.float32)
        return np.asarray(outputs, dtype=np.float32)

    def info(self) -> dict[str, Any]:
        so = self.sess.get_session_options()
        return {
            "providers": self.sess.get_providers(),
            "intra_op_num_threads": so.intra_op_num_threads,
            "graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
            "io_binding": self._bound,
        }

    def close(self) -> None:
        self.sess = None


class OnnxRuntime(Runtime):
    backend = Backend.ONNXRUNTIME
    artifact = ArtifactFormat.ONNX

    def available(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return None

    def artifact_for(self, precision: Precision) -> ArtifactFormat | None:
        return VARIANTS.get(precision)

    def supports(self, device: Device, precision: Precision) -> str | None:
        if precision is Precision.BF16:
            return "no bf16 ONNX variant (ORT's bf16 kernel coverage is partial)"
        if precision is Precision.FP16 and device is Device.CPU:
            return "the CPU provider has no fp16 convolution kernels (fp16 runs on CUDA)"
        if precision is Precision.INT8 and device is Device.CUDA:
            return "int8 QDQ models need the TensorRT provider on GPUs; int8 runs on CPU"
        if device is Device.CUDA and CUDA_EP not in _ort().get_available_providers():
            return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
        return None

    def load(
        self,
        bundle: ModelBundle,
        device: Device,
        precision: Precision,
        options: SessionOptions | None = None,
    ) -> Session:
        opts = options or SessionOptions()
        fmt = VARIANTS[precision]
        path = bundle.artifacts.get(fmt)
        if path is None:
            why = bundle.missing.get(fmt, "run `alexbench export`")
            raise ExportError(f"no {fmt.value} artifact: {why}")
        ort = _ort()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Set explicitly (0 would leave ORT's own default, one per physical core, unrecorded):
        # torch's default is also one per physical core, so both runtimes get the same count.
        so.intra_op_num_threads = opts.threads or _default_threads()
        so.log_severity_level = 3  # errors only; the CPU fallback is detected below, not logged
        if device is Device.CUDA:
            if hasattr(ort, "preload_dlls"):
                # Finds the CUDA/cuDNN libraries shipped in the torch (nvidia-*) wheels.
                ort.preload_dlls()
            search = "EXHAUSTIVE" if opts.cudnn_benchmark else "HEURISTIC"
            providers: list[Any] = [
                (
                    CUDA_EP,
                    {
                        "device_id": 0,
                        "cudnn_conv_algo_search": search,
                        # Explicit: ORT enables TF32 by default, which would make "fp32" differ
                        # from torch's fp32 (where we disable it).
                        "use_tf32": "1" if precision is Precision.TF32 else "0",
                    },
                ),
                CPU_EP,
            ]
        else:
            providers = [CPU_EP]
        sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        if device is Device.CUDA and CUDA_EP not in sess.get_providers():
            raise DeviceUnavailableError(
                f"onnxruntime fell back to {sess.get_providers()} instead of CUDA "
                "(are the CUDA 13 / cuDNN 9 libraries loadable?)"
            )
        return OnnxRuntimeSession(sess, device, precision, opts)
