"""Contract tests over the runtime registry: every runtime x supported precision on CPU."""

import pytest
import torch

from alexbench.devices import Device
from alexbench.errors import InputError, UnsupportedError
from alexbench.exporters import ensure_artifacts
from alexbench.exporters.torchscript import trace_and_freeze
from alexbench.parity import compare
from alexbench.precision import Precision
from alexbench.runtimes import (
    ArtifactFormat,
    Backend,
    ModelBundle,
    cell_unavailable,
    check_supported,
    get_runtime,
    parse_backend,
    unsupported_reason,
)
from alexbench.runtimes.base import SessionOptions
from alexbench.runtimes.torchscript import follow_cudnn_settings

from .conftest import SMALL_CLASSES

FAST_BACKENDS = [b for b in Backend if b is not Backend.COMPILE]


@pytest.fixture(scope="module")
def reference(small_bundle, request):
    session = get_runtime(Backend.EAGER).load(small_bundle, Device.CPU, Precision.FP32)
    return session


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_every_runtime_matches_eager_at_fp32_on_cpu(backend, small_bundle, small_batch, reference):
    runtime = get_runtime(backend)
    if runtime.available():  # an optional runtime not installed here (openvino)
        pytest.skip(runtime.available())
    session = runtime.load(small_bundle, Device.CPU, Precision.FP32)
    out = session(small_batch)
    assert out.shape == (len(small_batch), SMALL_CLASSES)
    result = compare(reference(small_batch), out, Precision.FP32)
    assert result.passed, result.reason
    for b in (1, 2, 3):  # dynamic batch
        assert session(small_batch[:b]).shape == (b, SMALL_CLASSES)


@pytest.mark.parametrize("backend", [Backend.EAGER, Backend.PT2, Backend.TORCHSCRIPT])
def test_bf16_runs_within_bf16_tolerance(backend, small_bundle, small_batch, reference):
    session = get_runtime(backend).load(small_bundle, Device.CPU, Precision.BF16)
    result = compare(reference(small_batch), session(small_batch), Precision.BF16)
    assert result.passed, result.reason
    assert result.max_abs_err > 0  # it really ran in bf16


def _frozen_weights(module: torch.jit.ScriptModule) -> list[torch.Tensor]:
    """The weight tensors a frozen module holds as graph constants (it has no parameters)."""
    assert not list(module.parameters())
    consts = [n.output().toIValue() for n in module.graph.nodes() if n.kind() == "prim::Constant"]
    return [c for c in consts if isinstance(c, torch.Tensor) and c.dim() >= 2]


def test_torchscript_bf16_is_traced_from_the_cast_model_and_says_so(small_bundle, small_batch):
    ts = get_runtime(Backend.TORCHSCRIPT)
    assert ts.artifact_for(Precision.BF16) is None  # the fp32 file is neither needed nor read
    session = ts.load(small_bundle, Device.CPU, Precision.BF16)
    info = session.info()
    assert "traced and frozen at load" in info["module_source"]
    weights = _frozen_weights(session.module)
    convs = [w for w in weights if w.dim() == 4]
    assert len(weights) == 8 and len(convs) == 5  # AlexNet's 5 convolutions and 3 linears
    assert all(w.dtype == torch.bfloat16 for w in weights)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert info["memory_format"] == "channels_last" and info["dtype"] == "bfloat16"
    fp32 = ts.load(small_bundle, Device.CPU, Precision.FP32)
    assert fp32.info()["module_source"] == "exported file"
    assert all(w.dtype == torch.float32 for w in _frozen_weights(fp32.module))


def _conv_switches(graph: torch.Graph) -> set[tuple[bool, bool]]:
    """(benchmark, allow_tf32) of each convolution: inputs 9 and 12 of aten::_convolution."""
    nodes = graph.findAllNodes("aten::_convolution")
    assert len(nodes) == 5
    assert all(n.schema().endswith("bool benchmark, bool deterministic, bool cudnn_enabled, "
                                   "bool allow_tf32) -> Tensor") for n in nodes)  # fmt: skip
    return {(n.inputsAt(9).toIValue(), n.inputsAt(12).toIValue()) for n in nodes}


def test_torchscript_convolutions_follow_the_sessions_cudnn_flags(small_bundle, small_batch):
    """A trace keeps the cuDNN flags of its moment in each convolution, and ATen obeys those: a
    file traced with allow_tf32 on (torch's default) would run TF32 in an fp32 cell on CUDA."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = True, False
        traced = trace_and_freeze(small_bundle.loaded.model, torch.from_numpy(small_batch))
        assert _conv_switches(traced.graph) == {(False, True)}  # what a file holds
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = False, True
        assert follow_cudnn_settings(traced) == 5
        assert _conv_switches(traced.graph) == {(True, False)}
        ts = get_runtime(Backend.TORCHSCRIPT)
        for benchmark in (True, False):
            torch.backends.cudnn.allow_tf32 = True  # the session sets it off for fp32
            opts = SessionOptions(cudnn_benchmark=benchmark)
            session = ts.load(small_bundle, Device.CPU, Precision.FP32, opts)
            session(small_batch)
            assert _conv_switches(torch.jit.last_executed_optimized_graph()) == {(benchmark, False)}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_compile_runtime_matches_eager(small_bundle, small_batch, reference):
    session = get_runtime(Backend.COMPILE).load(small_bundle, Device.CPU, Precision.FP32)
    assert compare(reference(small_batch), session(small_batch)).passed


def test_unsupported_pairs_give_reasons_not_tracebacks():
    ts, ort = get_runtime(Backend.TORCHSCRIPT), get_runtime(Backend.ONNXRUNTIME)
    assert "no bf16 ONNX variant" in unsupported_reason(ort, Device.CPU, Precision.BF16)
    assert "int8" in unsupported_reason(get_runtime(Backend.EAGER), Device.CPU, Precision.INT8)
    assert unsupported_reason(ort, Device.CPU, Precision.FP32) is None
    assert "CUDA" in unsupported_reason(get_runtime(Backend.EAGER), Device.CPU, Precision.TF32)
    with pytest.raises(UnsupportedError, match="torchscript on cpu at int8"):
        check_supported(ts, Device.CPU, Precision.INT8)


def test_backend_names_and_aliases():
    assert parse_backend("export") is Backend.PT2
    assert parse_backend("ONNXRuntime") is Backend.ONNXRUNTIME
    with pytest.raises(InputError, match="unknown backend 'tensorrt'"):
        parse_backend("tensorrt")


def test_onnxruntime_session_reports_providers(small_bundle):
    session = get_runtime(Backend.ONNXRUNTIME).load(small_bundle, Device.CPU, Precision.FP32)
    info = session.info()
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["graph_optimization_level"] == "ORT_ENABLE_ALL"


@pytest.fixture(scope="module")
def cuda_bundle(small_model, small_bundle, tmp_path_factory):
    """small_bundle plus the fp16 ONNX variant, which only CUDA runs (built only when a cuda
    test asks for it)."""
    out = tmp_path_factory.mktemp("fp16")
    formats = [ArtifactFormat.ONNX, ArtifactFormat.ONNX_FP16]
    ensure_artifacts(small_model, out, formats)
    artifacts = {**small_bundle.artifacts, ArtifactFormat.ONNX_FP16: out / "alexnet.fp16.onnx"}
    assert artifacts[ArtifactFormat.ONNX_FP16].is_file()
    return ModelBundle(small_model, artifacts)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize(
    "precision", [Precision.FP32, Precision.TF32, Precision.FP16, Precision.BF16]
)
def test_cuda_runtimes_match_cpu_reference(backend, precision, cuda_bundle, small_batch, reference):
    runtime = get_runtime(backend)
    # An unsupported pair or a missing artifact is a skip with its reason, never a load error.
    reason = cell_unavailable(runtime, cuda_bundle, Device.CUDA, precision)
    if reason:
        pytest.skip(reason)
    session = runtime.load(cuda_bundle, Device.CUDA, precision)
    result = compare(reference(small_batch), session(small_batch), precision)
    assert result.passed, result.reason
    if backend is Backend.ONNXRUNTIME:
        info = session.info()
        assert info["providers"][0] == "CUDAExecutionProvider"
        # ORT took the torch stream it was offered: CUDA events can time its kernels.
        assert info["device_time"] is True and session.event_stream is not None


def test_verify_checks_the_fp16_onnx_file_on_cpu_though_bench_does_not_time_it(
    cuda_bundle, tmp_path
):
    # The fp16 ONNX file was never opened on a CPU-only machine, yet `verify --precision fp16`
    # said PASS (eager/pt2/torchscript fp16 cast in memory): a corrupted file passed.
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from alexbench.inputs import random_inputs
    from alexbench.verify import Status, reference_logits, run_cell

    runtime = get_runtime(Backend.ONNXRUNTIME)
    assert cell_unavailable(runtime, cuda_bundle, Device.CPU, Precision.FP16)  # not timed
    inputs = random_inputs(8, cuda_bundle.loaded.meta.image_size, 0)
    ref = reference_logits(cuda_bundle, inputs)
    cell = run_cell(cuda_bundle, Backend.ONNXRUNTIME, Device.CPU, Precision.FP16, inputs, ref)
    assert cell.status is Status.PASS and "computed in fp32" in cell.message
    # the same file with two classes' output rows swapped: caught
    model = onnx.load(str(cuda_bundle.artifacts[ArtifactFormat.ONNX_FP16]))
    last_gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    for init in model.graph.initializer:
        if init.name in last_gemm.input[1:]:
            w = numpy_helper.to_array(init).copy()
            w[[0, 1]] = w[[1, 0]]
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    swapped = tmp_path / "alexnet.fp16.onnx"
    onnx.save(model, str(swapped))
    bad = ModelBundle(
        cuda_bundle.loaded, {**cuda_bundle.artifacts, ArtifactFormat.ONNX_FP16: swapped}
    )
    cell = run_cell(bad, Backend.ONNXRUNTIME, Device.CPU, Precision.FP16, inputs, ref)
    assert cell.status is Status.FAIL and np.isfinite(cell.parity.max_abs_err)


def test_a_torchscript_cast_cell_says_it_does_not_read_the_file(small_bundle):
    # Its PASS stood beside a garbage alexnet.pt without a word: the cell traces the model.
    from alexbench.inputs import random_inputs
    from alexbench.verify import Status, reference_logits, run_cell

    inputs = random_inputs(4, small_bundle.loaded.meta.image_size, 0)
    ref = reference_logits(small_bundle, inputs)
    cell = run_cell(small_bundle, Backend.TORCHSCRIPT, Device.CPU, Precision.BF16, inputs, ref)
    assert cell.status is Status.PASS and "the exported file is not read" in cell.message
    cell = run_cell(small_bundle, Backend.TORCHSCRIPT, Device.CPU, Precision.FP32, inputs, ref)
    assert cell.status is Status.PASS and not cell.message


def test_a_cell_that_fails_after_loading_still_closes_its_session(small_bundle, monkeypatch):
    # An error cell kept its session (on CUDA: its device memory and graph pools) until garbage
    # collection, under the next cells' memory figures.
    from alexbench import verify
    from alexbench.inputs import random_inputs
    from alexbench.runtimes.torch_common import TorchModuleSession

    inputs = random_inputs(2, small_bundle.loaded.meta.image_size, 0)
    ref = verify.reference_logits(small_bundle, inputs)
    closed = []
    monkeypatch.setattr(TorchModuleSession, "close", lambda self: closed.append(self))
    monkeypatch.setattr(verify, "compare", lambda *a, **k: 1 / 0)  # a failure after the load
    cell = verify.run_cell(small_bundle, Backend.EAGER, Device.CPU, Precision.FP32, inputs, ref)
    assert cell.status is verify.Status.ERROR and "ZeroDivisionError" in cell.message
    assert len(closed) == 1


def test_verify_refuses_a_batch_whose_forecast_exceeds_memory(small_bundle, monkeypatch):
    """Linux kills a process out of memory, every finished cell with it (`verify --batch 40000`
    at 64 px reached 8.6 GB): as bench does, two untimed calls at batches 8 and 32 forecast the
    whole batch's peak, and one that cannot fit is refused (the reference) or not run (a cell)."""
    import numpy as np

    from alexbench import environment, verify
    from alexbench.inputs import random_inputs

    inputs = random_inputs(2048, small_bundle.loaded.meta.image_size, 0)
    # Little: a later probe can reuse the heap an earlier one freed (glibc keeps it here) and
    # read a smaller per-image cost (0.2 MiB after 0.4 measured).
    monkeypatch.setattr(environment, "available_memory_bytes", lambda: 16 * 2**20)
    with pytest.raises(InputError) as e:
        verify.reference_logits(small_bundle, inputs)
    assert str(e.value).startswith(
        "--batch 2048: the fp32 reference cannot run here: batch 2048 would need about "
    )
    assert "from the peaks at batches 8 and 32), more than the 0.0 GiB available" in str(e.value)
    ref = np.zeros((2048, SMALL_CLASSES), np.float32)
    for backend in (Backend.EAGER, Backend.ONNXRUNTIME):
        cell = verify.run_cell(small_bundle, backend, Device.CPU, Precision.FP32, inputs, ref)
        assert cell.status is verify.Status.ERROR and cell.parity is None
        assert cell.message.startswith("not run: batch 2048 would need about "), cell.message


def test_verify_refuses_random_inputs_that_cannot_fit(monkeypatch):
    from alexbench import environment
    from alexbench.inputs import random_inputs

    monkeypatch.setattr(environment, "available_memory_bytes", lambda: 100 * 2**20)
    with pytest.raises(InputError, match=r"^--batch 10,000: 10,000 images of 64 px need about "):
        random_inputs(10_000, 64)
