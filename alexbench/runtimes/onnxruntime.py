"""ONNX Runtime: the `.onnx` artifact on the CPU provider, or the CUDA provider with IO binding."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from alexbench.artifact_checks import VARIANT_WEIGHT_TYPES, onnx_weight_values
from alexbench.devices import Device, default_threads
from alexbench.errors import DeviceUnavailableError, ExportError
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
from alexbench.runtimes.ort_cache import (
    CACHE_DIR,
    CACHE_LEVEL,
    CPU_EP,
    CacheOutcome,
    OptimizedModelCache,
)

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

SPIN_KEY = "session.intra_op.allow_spinning"
# A run option (onnxruntime's run_options_config_keys.h): do not synchronise the execution
# providers' streams at the end of the run.
ASYNC_RUN_KEY = "disable_synchronize_execution_providers"


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def _own_stream() -> Any:
    """A torch CUDA stream of this session's own, handed to ORT as its compute stream, so the
    timer's CUDA events can be recorded on the stream ORT's kernels run on (device time).
    Not torch's default stream: its handle is 0, which ORT reads as "no stream given"."""
    import torch

    return torch.cuda.Stream()


class OnnxRuntimeSession(Session):
    """CPU: plain `run` on numpy feeds. CUDA: IO binding, on a torch stream of the session's
    own when ORT accepted it as its compute stream (so CUDA events bracket ORT's kernels)."""

    def __init__(
        self,
        sess: Any,
        device: Device,
        precision: Precision,
        opts: SessionOptions,
        stream: Any = None,
        stream_accepted: bool = False,
        cache: CacheOutcome | None = None,
    ) -> None:
        self.sess = sess
        self.cache = cache  # CPU: what the optimised-model cache did (None: not used)
        self.device = device
        self.precision = precision
        self._opts = opts
        cuda = device is Device.CUDA
        self._transfers = cuda and opts.include_transfers
        self._bound = cuda  # IO binding on CUDA: device-resident, or pinned host with transfers
        # `stream`: the torch stream offered to ORT as its compute stream (held here for as
        # long as ORT may use it); device time only where ORT reports it took it.
        self.event_stream = stream if stream_accepted else None
        self._stream = stream
        self.device_time_measurable = stream_accepted
        # The variant file's weight values per element type (fp16/int8; None for the fp32 file):
        # the evidence that it is that variant (checked by verify and bench, recorded in info).
        self.weight_values: dict[str, int] | None = None
        # By default a CUDA run waits for ORT's stream before it returns, so the throughput
        # loop would be synchronised call by call where torch's is not. On a stream we can
        # synchronise ourselves (`synchronize`), the run returns once enqueued, as torch's do;
        # with transfers ORT copies the logits to host memory, which needs the wait.
        self._run_options = None
        if self.event_stream is not None and not self._transfers:
            self._run_options = _ort().RunOptions()
            self._run_options.add_run_config_entry(ASYNC_RUN_KEY, "1")

    def prepare(self, batch: np.ndarray) -> Any:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not self._bound:
            return {INPUT_NAME: x}  # the feed dict is built here, not in the timed `run`
        import torch

        binding = self.sess.io_binding()
        if self._transfers:
            # The same bytes torch moves: fp32 from pinned host memory in, fp32 logits out.
            host = torch.from_numpy(x).pin_memory()
            binding.bind_input(INPUT_NAME, "cpu", 0, np.float32, list(host.shape), host.data_ptr())
            binding.bind_output(OUTPUT_NAME, "cpu")
            return (binding, host)
        ort = _ort()
        value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        # ORT copies on the legacy default stream, which the torch stream it runs on does not
        # wait for. ORT synchronises that copy itself; this makes sure, untimed, that it is done
        # before a timed call reads the input.
        torch.cuda.synchronize()
        binding.bind_ortvalue_input(INPUT_NAME, value)
        out = self._output_value(x.shape[0])
        if out is None:
            binding.bind_output(OUTPUT_NAME, "cuda", 0)
        else:  # preallocated: no allocation inside the timed call
            binding.bind_ortvalue_output(OUTPUT_NAME, out)
        return (binding, value, out)  # keep the OrtValues alive as long as the binding

    def _output_value(self, batch: int) -> Any:
        classes = self.sess.get_outputs()[0].shape[-1]
        if not isinstance(classes, int):
            return None
        return _ort().OrtValue.ortvalue_from_shape_and_type([batch, classes], np.float32, "cuda", 0)

    def synchronize(self) -> None:
        if self.event_stream is not None:
            self.event_stream.synchronize()

    def run(self, inputs: Any) -> Any:
        if self._bound:
            binding = inputs[0]
            # With `_run_options`: returns once enqueued on our stream; else after ORT
            # synchronised its own (bound outputs ready).
            self.sess.run_with_iobinding(binding, self._run_options)
            return binding
        return self.sess.run([OUTPUT_NAME], inputs)[0]

    def to_numpy(self, outputs: Any) -> np.ndarray:
        if self._bound:
            self.synchronize()  # an asynchronous run's logits are ready only then
            return np.asarray(outputs.copy_outputs_to_cpu()[0], dtype=np.float32)
        return np.asarray(outputs, dtype=np.float32)

    def info(self) -> dict[str, Any]:
        so = self.sess.get_session_options()
        level = str(so.graph_optimization_level).split(".")[-1]
        if self.cache is not None and self.cache.runs_entry:
            level = CACHE_LEVEL  # optimised when the entry was made, loaded as it is
        out: dict[str, Any] = {
            "providers": self.sess.get_providers(),
            "intra_op_num_threads": so.intra_op_num_threads,
            "graph_optimization_level": level,
            "intra_op_allow_spinning": so.get_session_config_entry(SPIN_KEY) == "1",
            "io_binding": self._bound,
            "include_transfers": self._transfers,
            "cuda_graphs": False,
        }
        # What the file tells consumers without the manifest (verify checks it against the model)
        meta = self.sess.get_modelmeta().custom_metadata_map
        out["onnx_metadata"] = {k: v for k, v in meta.items() if k.startswith("alexbench.")}
        if self.weight_values is not None:
            out["onnx_weight_values"] = self.weight_values
        if self.device is not Device.CUDA:
            out["optimized_model_cache"] = None if self.cache is None else self.cache.to_dict()
        else:
            out["device_time"] = self.device_time_measurable
            out["run_returns_when_enqueued"] = self._run_options is not None
            cuda_opts = self.sess.get_provider_options().get(CUDA_EP, {})
            out["use_tf32"] = cuda_opts.get("use_tf32")
        out.update(compile_mode_not_applied(self._opts, compiles=False))
        if self._opts.cuda_graphs:
            out["cuda_graphs_not_applied"] = "ONNX Runtime's sessions are not captured here"
        if self._opts.include_transfers and not self._transfers:
            out["include_transfers_not_applied"] = "CPU inputs already are in host memory"
        return out

    def close(self) -> None:
        self.sess = None  # before the stream it may run on
        self._stream = self.event_stream = None


class OnnxRuntime(Runtime):
    backend = Backend.ONNXRUNTIME
    artifact = ArtifactFormat.ONNX

    def __init__(self, cache: bool = True) -> None:
        # CPU sessions load the model's cached optimised graph (see OptimizedModelCache).
        self.cache = cache

    def available(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return None

    def artifact_for(self, precision: Precision) -> ArtifactFormat | None:
        return VARIANTS.get(precision)

    def checks_only(self, device: Device, precision: Precision) -> str | None:
        if precision is Precision.FP16 and device is Device.CPU:
            # The file a consumer ships still has to be right: its fp16 weights are what ORT's
            # CPU provider casts back and computes with.
            return "the fp16 file's outputs, computed in fp32 by ORT's CPU provider (not timed)"
        return None

    def supports(self, device: Device, precision: Precision) -> str | None:
        if precision is Precision.BF16:
            return "no bf16 ONNX variant (ORT's bf16 kernel coverage is partial)"
        if precision is Precision.FP16 and device is Device.CPU:
            # It loads, but its optimiser casts the fp16 weights back and computes in fp32
            # (ORT 1.31's optimised graph, Intel Xeon VM): a cell would time fp32 as fp16.
            return "the CPU provider computes an fp16 model in fp32 (fp16 runs on CUDA)"
        if precision is Precision.INT8 and device is Device.CUDA:
            # ORT's CUDA provider has no int8 convolution: it would dequantise and time float.
            # Nor is the file TensorRT's kind (uint8 activations with zero-points; TensorRT's
            # int8 is symmetric), so int8 is a CPU precision here.
            return (
                "ORT's CUDA provider runs an int8 QDQ model's convolutions in float; the int8 "
                "file (uint8 activations) is for CPU"
            )
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
        fmt = VARIANTS[precision]
        path = bundle.artifacts.get(fmt)
        if path is None:
            why = bundle.missing.get(fmt, "run `alexbench export`")
            raise ExportError(f"no {fmt.value} artifact: {why}")
        session = self._open(Path(path), bundle, device, precision, options or SessionOptions())
        if precision in VARIANT_WEIGHT_TYPES:  # read untimed, at load (0.1-0.2 s for AlexNet)
            session.weight_values = onnx_weight_values(Path(path))
        return session

    def _open(
        self,
        path: Path,
        bundle: ModelBundle,
        device: Device,
        precision: Precision,
        opts: SessionOptions,
    ) -> OnnxRuntimeSession:
        ort = _ort()
        threads = opts.threads or default_threads()

        def session_options(level: Any) -> Any:
            so = ort.SessionOptions()
            so.graph_optimization_level = level
            # Set explicitly (0 would leave ORT's own default, one per physical core,
            # unrecorded): torch's default is also one per physical core, so both runtimes get
            # the same count.
            so.intra_op_num_threads = threads
            # ORT's default, set so it is on record: intra-op workers spin between calls (lower
            # latency back to back, a busy core between calls).
            so.add_session_config_entry(SPIN_KEY, "1")
            so.log_severity_level = 3  # errors only; the CPU fallback is detected, not logged
            return so

        if device is not Device.CUDA and self.cache:
            folder = (bundle.directory or Path(path).parent) / CACHE_DIR
            cached = OptimizedModelCache(ort, Path(path), folder, session_options)
            sess, outcome = cached.session()
            return OnnxRuntimeSession(sess, device, precision, opts, cache=outcome)
        so = session_options(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if device is Device.CUDA:
            if hasattr(ort, "preload_dlls"):
                # Finds the CUDA/cuDNN libraries shipped in the torch (nvidia-*) wheels.
                ort.preload_dlls()
            search = "EXHAUSTIVE" if opts.cudnn_benchmark else "HEURISTIC"
            cuda_options = {
                "device_id": "0",
                "cudnn_conv_algo_search": search,
                # Explicit: ORT enables TF32 by default, which would make "fp32" differ from
                # torch's fp32 (where we disable it).
                "use_tf32": "1" if precision is Precision.TF32 else "0",
            }
            stream = _own_stream()
            cuda_options["user_compute_stream"] = str(stream.cuda_stream)
            providers: list[Any] = [(CUDA_EP, cuda_options), CPU_EP]
        else:
            providers = [CPU_EP]
        sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        if device is Device.CUDA and CUDA_EP not in sess.get_providers():
            raise DeviceUnavailableError(
                f"onnxruntime fell back to {sess.get_providers()} instead of CUDA "
                "(are the CUDA 13 / cuDNN 9 libraries loadable?)"
            )
        if device is not Device.CUDA:
            return OnnxRuntimeSession(sess, device, precision, opts)
        applied = sess.get_provider_options().get(CUDA_EP, {})
        # ORT derives has_user_compute_stream from a non-null user_compute_stream.
        accepted = applied.get("has_user_compute_stream") == "1"
        return OnnxRuntimeSession(sess, device, precision, opts, stream, accepted)
