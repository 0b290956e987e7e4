"""The optional OpenVINO runtime: parity at fp32, bf16 and int8 on the CPU plugin, the settings it
reads back, the guards that keep a wrong-precision run from being timed, and its cells skipped
with the install hint when openvino cannot be imported."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest
from typer.testing import CliRunner

from alexbench import environment
from alexbench.cli import app
from alexbench.devices import Device
from alexbench.errors import UnsupportedError
from alexbench.parity import compare
from alexbench.precision import Precision
from alexbench.runtimes import (
    ArtifactFormat,
    Backend,
    ModelBundle,
    SessionOptions,
    cell_unavailable,
    get_runtime,
    parse_backend,
)
from alexbench.runtimes import openvino as ov_rt  # imports no openvino (that is lazy)

from .conftest import SMALL_CLASSES

# The tests that run OpenVINO; those that hide it run everywhere.
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="openvino is not installed (the `openvino` extra)",
)

runner = CliRunner()
SHORT = ["--min-time", "0.05", "--min-iters", "3", "--warmup", "1", "--device", "cpu"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ov_bundle(small_model, small_artifacts, cifar_subset, tmp_path_factory) -> ModelBundle:
    """The session's fp32 exports plus the static QDQ int8 model calibrated on real images (a
    copy of the folder, so only the int8 file is made here)."""
    from alexbench.exporters import prepare_bundle
    from alexbench.inputs import image_inputs

    folder = tmp_path_factory.mktemp("ov") / "exports"
    shutil.copytree(small_artifacts, folder)
    calib = image_inputs(cifar_subset, 16, small_model.meta)
    formats = [ArtifactFormat.ONNX, ArtifactFormat.ONNX_INT8]
    bundle = prepare_bundle(small_model, folder, formats, calibration=calib)
    assert set(bundle.artifacts) >= set(formats), bundle.missing
    return bundle


@pytest.fixture(scope="module")
def images(small_model, cifar_subset):
    """Real images: the int8 model is calibrated for them, not for noise."""
    from alexbench.inputs import image_inputs

    return image_inputs(cifar_subset, 6, small_model.meta, seed=3).batch


@pytest.fixture(scope="module")
def reference(ov_bundle, images):
    return get_runtime(Backend.EAGER).load(ov_bundle, Device.CPU, Precision.FP32)(images)


HINTS = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.INT8: "f32"}


@needs_openvino
@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16, Precision.INT8])
def test_precisions_pass_parity_and_record_their_settings(precision, ov_bundle, images, reference):
    runtime = get_runtime(Backend.OPENVINO)
    reason = cell_unavailable(runtime, ov_bundle, Device.CPU, precision)
    if reason:  # bf16 on a CPU without bf16 support: skipped with the runtime's own reason
        assert precision is Precision.BF16, reason
        pytest.skip(reason)
    session = runtime.load(ov_bundle, Device.CPU, precision)
    out = session(images)
    assert out.shape == (len(images), SMALL_CLASSES) and out.dtype.name == "float32"
    result = compare(reference, out, precision)
    assert result.passed, result.reason
    if precision is not Precision.FP32:
        assert result.max_abs_err > 0  # it really ran in reduced precision
    for b in (1, 2, 3):  # one static compilation per batch size, each still right
        sub = session(images[:b])
        assert sub.shape == (b, SMALL_CLASSES)
        assert compare(reference[:b], sub, precision).passed
    info = session.info()
    assert info["performance_hint"] == "LATENCY" and info["num_streams"] == 1
    assert info["inference_precision"] == HINTS[precision]
    assert info["infer_requests"] == 1 and info["execution_devices"] == ["CPU"]
    assert info["inference_num_threads"] >= 1 and info["full_device_name"]
    assert info["artifact"] == ov_rt.VARIANTS[precision].value
    assert info["compiled_batches"] == [1, 2, 3, len(images)] and info["batch"] == 3
    layers = info["compute_layer_precisions"]
    # AlexNet: 5 convolutions and 3 fully connected layers, all in the asked precision.
    assert sum(layers.values()) == 8, layers
    if precision is Precision.INT8:
        assert info["int8_ops"] > 0 and set(layers) <= {"u8", "i8"}, layers
    else:
        assert info["int8_ops"] == 0 and layers == {HINTS[precision]: 8}
    json.dumps(info)  # goes into the results file as it is
    session.close()


@needs_openvino
def test_threads_option_is_applied_and_read_back(ov_bundle):
    options = SessionOptions(threads=1)
    session = get_runtime(Backend.OPENVINO).load(ov_bundle, Device.CPU, Precision.FP32, options)
    info = session.info()
    assert info["threads_requested"] == 1 and info["inference_num_threads"] == 1


@needs_openvino
def test_unsupported_pairs_give_reasons():
    runtime = get_runtime(Backend.OPENVINO)
    for precision in (Precision.FP32, Precision.INT8):
        assert "CPU plugin" in runtime.supports(Device.CUDA, precision)
    assert "fp16" in runtime.supports(Device.CPU, Precision.FP16)
    assert runtime.supports(Device.CPU, Precision.TF32)
    assert runtime.supports(Device.CPU, Precision.FP32) is None
    assert runtime.artifact_for(Precision.BF16) is ArtifactFormat.ONNX
    assert runtime.artifact_for(Precision.INT8) is ArtifactFormat.ONNX_INT8
    assert parse_backend("ov") is parse_backend("OpenVINO") is Backend.OPENVINO
    with pytest.raises(UnsupportedError, match="openvino on cuda at fp32"):
        runtime.load(ModelBundle(None, {}), Device.CUDA, Precision.FP32)  # type: ignore[arg-type]


@needs_openvino
def test_int8_that_runs_in_f32_is_refused_at_load(ov_bundle):
    """The fp32 model offered as the int8 artifact: nothing quantized runs, so no speed may be
    quoted as int8."""
    fp32_as_int8 = ModelBundle(
        ov_bundle.loaded, {ArtifactFormat.ONNX_INT8: ov_bundle.artifacts[ArtifactFormat.ONNX]}
    )
    with pytest.raises(UnsupportedError, match="none of the int8 model's 8 convolution/matmul"):
        get_runtime(Backend.OPENVINO).load(fp32_as_int8, Device.CPU, Precision.INT8)


def _compiled(precision_hint: str, layers: dict[str, int]) -> ov_rt.CompiledBatch:
    props = {"inference_precision": precision_hint}
    return ov_rt.CompiledBatch(1, None, None, 0.0, props, layers, 0, [])


def test_bf16_compiled_as_f32_is_refused():
    """A CPU without bf16 compiles a bf16 request as f32: that must not be labelled bf16."""
    with pytest.raises(UnsupportedError, match="inference precision f32 instead of bf16"):
        ov_rt._check_compiled(_compiled("f32", {"f32": 8}), Precision.BF16)
    with pytest.raises(UnsupportedError, match="not all f32"):  # fp32 that ran some bf16
        ov_rt._check_compiled(_compiled("f32", {"f32": 7, "bf16": 1}), Precision.FP32)
    ov_rt._check_compiled(_compiled("bf16", {"bf16": 8}), Precision.BF16)
    ov_rt._check_compiled(_compiled("f32", {"u8": 7, "f32": 1}), Precision.INT8)


def test_bf16_without_cpu_support_is_unsupported(monkeypatch):
    class NoBf16Core:
        def get_property(self, device: str, name: str) -> list[str]:
            assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
            return ["FP32", "INT8"]

    monkeypatch.setattr(ov_rt, "ov_core", NoBf16Core)
    reason = get_runtime(Backend.OPENVINO).supports(Device.CPU, Precision.BF16)
    assert reason and "no bf16" in reason


@pytest.fixture
def no_openvino(monkeypatch):
    """openvino made unimportable, as on a machine without the extra (and no Core cached by
    an earlier test, which would hide a call that imports it)."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    ov_rt.ov_core.cache_clear()
    yield
    ov_rt.ov_core.cache_clear()


def test_missing_openvino_gives_the_install_hint(no_openvino, small_bundle):
    runtime = get_runtime(Backend.OPENVINO)
    assert runtime.available() == ov_rt.INSTALL_HINT
    assert "pip install 'alexbench[openvino]'" in ov_rt.INSTALL_HINT
    for precision in (Precision.FP32, Precision.BF16, Precision.INT8):
        assert cell_unavailable(runtime, small_bundle, Device.CPU, precision) == ov_rt.INSTALL_HINT
    assert environment.openvino_version() is None


def test_bench_without_openvino_skips_its_cells(no_openvino, small_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--batch", "1,2",
        "--backend", "eager,openvino", "--precision", "fp32", *SHORT,
    )  # fmt: skip
    # Asked for by name and measured nowhere: not a pass (the eager cells are saved).
    assert r.exit_code == 4, r.output
    assert "nothing was measured at --backend openvino, though asked for" in r.stderr
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["asked_not_measured"] == ["--backend openvino"]  # why it failed, in the file
    cells = doc["cells"]
    ov_cells = [c for c in cells if c["backend"] == "openvino"]
    assert [c["batch"] for c in ov_cells] == [1, 2]
    assert all(c["status"] == "skipped" for c in ov_cells)
    assert all(c["reason"] == ov_rt.INSTALL_HINT for c in ov_cells)
    assert all(c["status"] == "ok" for c in cells if c["backend"] == "eager")


@needs_openvino
def test_bench_end_to_end_records_the_hints(small_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--batch", "1",
        "--backend", "openvino", "--precision", "fp32", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    (cell,) = doc["cells"]
    assert cell["status"] == "ok" and cell["parity"]["passed"], cell["reason"]
    session = cell["session"]
    assert session["performance_hint"] == "LATENCY" and session["num_streams"] == 1
    assert session["inference_precision"] == "f32" and session["batch"] == 1
    assert session["compute_layer_precisions"] == {"f32": 8}
    assert doc["environment"]["versions"]["openvino"]
