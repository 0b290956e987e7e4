"""PT2E int8: the torchao x86 Inductor quantizer's program, exported with real-image calibration
and run by the compile runtime as oneDNN int8 kernels."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from alexbench.artifacts import ArtifactFormat
from alexbench.devices import Device
from alexbench.exporters import ensure_artifacts, prepare_bundle
from alexbench.exporters.manifest import Manifest
from alexbench.inputs import image_inputs
from alexbench.parity import compare
from alexbench.precision import Precision
from alexbench.runtimes import Backend, cell_unavailable, get_runtime, unsupported_reason

FORMATS = [ArtifactFormat.PT2, ArtifactFormat.PT2_INT8]

# torchao is a core dependency, but the GPU image lacks it: the tests of its real program skip
# there (the product's own answer without it is tested below, with torchao made unimportable).
needs_torchao = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None, reason="torchao is not installed"
)


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory, small_model, cifar_subset):
    out = tmp_path_factory.mktemp("pt2e")
    calib = image_inputs(cifar_subset, 16, small_model.meta)
    ensure_artifacts(small_model, out, FORMATS, calibration=calib)
    return out, calib


@needs_torchao
def test_program_holds_int8_weights_only_and_records_its_calibration(int8_folder, small_model):
    import torch

    from alexbench.pt2e import quantizer_module

    out, calib = int8_folder
    manifest = Manifest.load(out)
    record = manifest.artifacts[ArtifactFormat.PT2_INT8.value]
    assert "X86InductorQuantizer" in record.exporter
    assert record.calibration == calib.description
    # Run as loaded it computes in fp32: the manifest says how to get the int8 kernels.
    assert record.input_name is None and "freezing = True" in record.usage
    quantizer_module()
    extra = {"alexbench.json": ""}  # the ONNX files' metadata, as the fp32 files carry it
    program = torch.export.load(str(out / record.path), extra_files=extra)
    assert json.loads(extra["alexbench.json"])["alexbench.output"] == "logits, 10 classes"
    weights = {k: v for k, v in program.state_dict.items() if v.dim() >= 2}
    # Every conv/linear weight is int8; the fp32 parameters they came from were not saved.
    assert len(weights) == 8 and {v.dtype for v in weights.values()} == {torch.int8}
    fp32 = manifest.artifacts[ArtifactFormat.PT2.value].size_bytes
    assert record.size_bytes < fp32 / 3


@needs_torchao
def test_other_calibration_images_make_another_program(int8_folder, small_model, cifar_subset):
    out, calib = int8_folder
    first = Manifest.load(out).artifacts[ArtifactFormat.PT2_INT8.value]
    key = first.config_key
    other = image_inputs(cifar_subset, 8, small_model.meta, seed=5)
    assert other.batch.tobytes() != calib.batch.tobytes()
    _, outcomes = ensure_artifacts(small_model, out, FORMATS, calibration=other)
    statuses = {fmt: status.value for fmt, _, status in outcomes}
    assert statuses == {ArtifactFormat.PT2: "reused", ArtifactFormat.PT2_INT8: "exported"}
    assert Manifest.load(out).artifacts[ArtifactFormat.PT2_INT8.value].config_key != key
    ensure_artifacts(small_model, out, FORMATS, calibration=calib)  # back, for the other tests
    # Made again from the same model and images, the program is the same bytes (its nodes'
    # provenance held Python object ids: every export differed, and verify's hashes went stale).
    assert Manifest.load(out).artifacts[ArtifactFormat.PT2_INT8.value].sha256 == first.sha256


@needs_torchao
def test_compile_runs_the_program_as_int8_kernels_and_passes_parity(
    int8_folder, small_model, cifar_subset
):
    from alexbench.bench.timer import RunLength, time_session

    out, calib = int8_folder
    bundle = prepare_bundle(small_model, out, FORMATS, calibration=calib)
    runtime = get_runtime(Backend.COMPILE)
    assert cell_unavailable(runtime, bundle, Device.CPU, Precision.INT8) is None
    session = runtime.load(bundle, Device.CPU, Precision.INT8)
    x = image_inputs(cifar_subset, 6, small_model.meta, seed=3).batch
    ref = get_runtime(Backend.EAGER).load(bundle, Device.CPU, Precision.FP32)(x)
    got = session(x)
    result = compare(ref, got, Precision.INT8)
    assert result.passed and result.max_abs_err > 0, result  # quantised: close, not equal
    info = session.info()
    assert info["freezing"] is True
    assert info["int8_kernels"] == {"conv": 5, "linear": 3}, info
    prepared = [session.prepare(x)]
    timing = time_session(session, prepared, RunLength(warmup=1, min_seconds=0, min_iters=3))
    assert timing.problem is None
    session.close()


@needs_torchao
def test_int8_cells_say_why_they_cannot_run(small_model, tmp_path):
    compile_rt = get_runtime(Backend.COMPILE)
    assert "CPU only" in unsupported_reason(compile_rt, Device.CUDA, Precision.INT8) or (
        "cuda is not available" in unsupported_reason(compile_rt, Device.CUDA, Precision.INT8)
    )
    assert "CPU only" in compile_rt.supports(Device.CUDA, Precision.INT8)
    assert "int8" in get_runtime(Backend.EAGER).supports(Device.CPU, Precision.INT8)
    # Without calibration images the int8 program is missing, with the reason.
    plain = prepare_bundle(small_model, tmp_path, [ArtifactFormat.PT2_INT8])
    assert "--calib-data" in cell_unavailable(compile_rt, plain, Device.CPU, Precision.INT8)
    assert not list(tmp_path.glob("*.int8.pt2"))


@needs_torchao
def test_export_with_calib_data_writes_both_int8_models(tmp_path, cifar_subset):
    from typer.testing import CliRunner

    from alexbench.cli import app

    out = tmp_path / "art"
    args = ["export", "--num-classes", "3", "--image-size", "64", "--format", "onnx"]
    args += ["--calib-data", str(cifar_subset), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"alexnet.int8.onnx", "alexnet.int8.pt2"} <= names
    assert np.isfinite(Manifest.load(out).artifacts["pt2-int8"].size_bytes)


def test_without_torchao_export_makes_the_onnx_int8_model_and_compile_says_why(
    tmp_path, cifar_subset, monkeypatch
):
    from typer.testing import CliRunner

    from alexbench import pt2e
    from alexbench.cli import app

    reason = "PT2E int8 needs torchao (No module named 'torchao'): pip install torchao"
    monkeypatch.setattr(pt2e, "unavailable", lambda: reason)
    out = tmp_path / "art"
    args = ["export", "--num-classes", "3", "--image-size", "64", "--format", "onnx"]
    result = CliRunner().invoke(app, [*args, "--calib-data", str(cifar_subset), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert "alexnet.int8.onnx" in names and "alexnet.int8.pt2" not in names
    assert get_runtime(Backend.COMPILE).supports(Device.CPU, Precision.INT8) == reason
