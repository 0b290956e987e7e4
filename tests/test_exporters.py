import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from alexbench.errors import ExportError, InputError
from alexbench.exporters import EXPORTERS, ArtifactStatus, OnnxExporter, ensure_artifacts
from alexbench.exporters.manifest import MANIFEST_NAME
from alexbench.runtimes import ArtifactFormat

from .conftest import SMALL_CLASSES, SMALL_SIZE


def test_manifest_records_every_artifact(small_artifacts):
    m = json.loads((small_artifacts / MANIFEST_NAME).read_text())
    assert set(m["artifacts"]) == {"torchscript", "onnx", "pt2"}
    onnx_rec = m["artifacts"]["onnx"]
    assert onnx_rec["opset"] == 18 and "dynamo" in onnx_rec["exporter"]
    assert onnx_rec["input_shape"] == ["batch", 3, SMALL_SIZE, SMALL_SIZE]
    assert onnx_rec["output_shape"] == ["batch", SMALL_CLASSES]
    assert len(onnx_rec["sha256"]) == 64 and onnx_rec["size_bytes"] > 100e6
    assert m["source"]["kind"] == "seeded" and len(m["source"]["weights_sha256"]) == 64
    assert m["versions"]["torch"] and m["versions"]["onnxruntime"]
    # Each file names the stack that wrote it (a reused file keeps its own).
    assert onnx_rec["versions"]["torch"] == m["versions"]["torch"]
    assert onnx_rec["versions"]["onnxscript"] == m["versions"]["onnxscript"]


def test_manifest_says_how_to_call_each_file(small_artifacts, small_model, small_batch):
    """A consumer with only the manifest calls each file by the names it records (None: the
    input is positional, the output a bare tensor) and gets the model's logits."""
    import torch

    m = json.loads((small_artifacts / MANIFEST_NAME).read_text())
    x = torch.from_numpy(small_batch)
    with torch.no_grad():
        want = small_model.model.eval()(x).numpy()
    for fmt, rec in m["artifacts"].items():
        path = str(small_artifacts / rec["path"])
        name, out_name = rec["input_name"], rec["output_name"]
        if fmt == "onnx":
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            got = sess.run([out_name], {name: small_batch})[0]
            assert rec["usage"].startswith("onnxruntime.InferenceSession(path)")
        else:
            assert out_name is None, fmt
            module = (
                torch.jit.load(path) if fmt == "torchscript" else torch.export.load(path).module()
            )
            with torch.no_grad():
                got = (module(**{name: x}) if name else module(x)).numpy()
            if name is None:  # the .pt2 program refuses its input by keyword, by any name
                with pytest.raises(ValueError, match="keyword"), torch.no_grad():
                    module(x=x)
        assert got.shape == (len(small_batch), SMALL_CLASSES), fmt
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=fmt)
        assert rec["dynamic_axes"] == {
            name or "args[0]": {"0": "batch"},
            out_name or "output": {"0": "batch"},
        }
        assert rec["usage"], fmt
        assert (rec["input_dtype"], rec["output_dtype"], rec["layout"]) == (
            "float32",
            "float32",
            "NCHW",
        )
        assert small_batch.dtype == got.dtype == np.float32, fmt  # as the record says
        if fmt == "onnx":  # as the file itself declares
            assert _onnx_io_dtypes(Path(path)) == ("float32", "float32")


def _onnx_io_dtypes(path: Path) -> tuple[str, str]:
    """The element types an ONNX file's graph declares for its first input and output."""
    model = onnx.load(str(path), load_external_data=False)
    inp, out = model.graph.input[0], model.graph.output[0]
    return tuple(  # type: ignore[return-value]
        onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name for v in (inp, out)
    )


def test_a_manifest_from_before_the_calling_names_is_brought_up_to_date(small_model, tmp_path):
    # Schema /1 said "input" -> "logits" for every format; a reused file kept that record.
    from alexbench.exporters.manifest import MANIFEST_SCHEMA

    ensure_artifacts(small_model, tmp_path, [ArtifactFormat.TORCHSCRIPT])
    path = tmp_path / MANIFEST_NAME
    m = json.loads(path.read_text())
    assert m["schema"] == MANIFEST_SCHEMA == "alexbench-manifest/2"
    m["schema"] = "alexbench-manifest/1"
    rec = m["artifacts"]["torchscript"]
    rec.update(input_name="input", output_name="logits")
    rec["dynamic_axes"] = {"input": {"0": "batch"}, "logits": {"0": "batch"}}
    del rec["usage"]
    path.write_text(json.dumps(m))
    # Another format asked for: the torchscript record is kept, and corrected with it.
    _, outcomes = ensure_artifacts(small_model, tmp_path, [ArtifactFormat.PT2])
    assert [status for _, _, status in outcomes] == [ArtifactStatus.EXPORTED]
    m = json.loads(path.read_text())
    rec = m["artifacts"]["torchscript"]
    assert m["schema"] == "alexbench-manifest/2"
    assert (rec["input_name"], rec["output_name"]) == ("x", None)
    assert rec["dynamic_axes"] == {"x": {"0": "batch"}, "output": {"0": "batch"}}
    assert rec["usage"].startswith("torch.jit.load(path)(x)")
    assert (rec["input_dtype"], rec["output_dtype"], rec["layout"]) == (
        "float32",
        "float32",
        "NCHW",
    )


def test_torch_files_name_no_temporary_and_the_program_no_source_paths(small_artifacts):
    """The archives' folder is "archive", not the temporary's name the file was written as; no
    file holds an absolute path of this machine (the .pt2 program's nodes' stack traces named
    alexbench's and torch's source files, the TorchScript file's debug records too)."""
    import os
    import zipfile

    import torch

    here = [os.path.dirname(os.path.dirname(torch.__file__)), str(Path.cwd())]
    for name in ("alexnet.pt", "alexnet.pt2"):
        with zipfile.ZipFile(small_artifacts / name) as z:
            assert {n.split("/")[0] for n in z.namelist()} == {"archive"}, name
            assert not [n for n in z.namelist() if n.endswith(".debug_pkl")], name
            for member in z.namelist():
                data = z.read(member)  # inflated: debug_pkl entries were compressed
                assert not any(p.encode() in data for p in here), member


def test_onnx_is_one_file_with_dynamic_batch_and_named_io(small_artifacts):
    path = small_artifacts / "alexnet.onnx"
    model = onnx.load(str(path))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer), (
        "weights must be inside the .onnx file"
    )
    assert [o.domain or "ai.onnx" for o in model.opset_import if o.version == 18]
    # IR version 8, the oldest opset 18 allows: the exporter wrote 10, which ONNX Runtime
    # before 1.18 (and other older parsers) refuse. Without what IR 10 added: the parts'
    # metadata_props (the exporter's per-node debug records); the model's own props stay.
    assert model.ir_version == 8
    assert not model.graph.metadata_props and not any(n.metadata_props for n in model.graph.node)
    assert not any(v.metadata_props for v in [*model.graph.input, *model.graph.value_info])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    for batch in (1, 3, 64):
        x = np.zeros((batch, 3, SMALL_SIZE, SMALL_SIZE), np.float32)
        assert sess.run(None, {"input": x})[0].shape == (batch, SMALL_CLASSES)
    # The file says how to feed it, for consumers without the manifest (ORT's model metadata).
    props = sess.get_modelmeta().custom_metadata_map
    assert json.loads(props["alexbench.mean"]) == [0.485, 0.456, 0.406]
    assert f"{SMALL_SIZE}x{SMALL_SIZE}" in props["alexbench.input"]
    assert props["alexbench.output"] == f"logits, {SMALL_CLASSES} classes"
    # How an image becomes the input, as evaluate scores it (alexbench's models: whole images).
    assert f"shorter side to {SMALL_SIZE} px" in props["alexbench.preprocess"]
    assert f"centre-crop {SMALL_SIZE}x{SMALL_SIZE}" in props["alexbench.preprocess"]
    m = json.loads((small_artifacts / MANIFEST_NAME).read_text())
    assert m["model"]["preprocess"] == props["alexbench.preprocess"]
    # No paths of the exporting machine (the exporter's per-node Python stacks): the bytes
    # depend on the weights and versions, not on where alexbench is installed or its line numbers.
    import alexbench

    assert Path(alexbench.__file__).parent.as_posix().encode() not in path.read_bytes()


def test_preprocessing_of_torchvision_style_weights_is_their_256_224_crop(small_model):
    """A plain state dict is scored as torchvision scores its ImageNet weights; the files say so."""
    from dataclasses import replace

    from alexbench.checkpoint import LoadedModel, ModelSource, SourceKind
    from alexbench.exporters import onnx_metadata

    meta = replace(small_model.meta, image_size=224)
    loaded = LoadedModel(small_model.model, meta, ModelSource(SourceKind.WEIGHTS, "w.pth"))
    text = onnx_metadata(loaded)["alexbench.preprocess"]
    assert "shorter side to 256 px" in text and "centre-crop 224x224" in text


def test_torchscript_loads_in_a_process_that_never_imported_alexbench(small_artifacts):
    code = (
        "import sys, torch\n"
        f"m = torch.jit.load({str(small_artifacts / 'alexnet.pt')!r})\n"
        f"y = m(torch.zeros(3, 3, {SMALL_SIZE}, {SMALL_SIZE}))\n"
        "assert 'alexbench' not in sys.modules\n"
        # (benchmark, allow_tf32) stored in each convolution: fp32 for any consumer on CUDA
        "convs = m.graph.findAllNodes('aten::_convolution')\n"
        "assert {(n.inputsAt(9).toIValue(), n.inputsAt(12).toIValue()) for n in convs} == "
        "{(False, False)}, convs\n"
        "print(tuple(y.shape))\n"
        # What the ONNX files say in metadata_props, the torch files say in an extra entry.
        "import json\n"
        "extra = {'alexbench.json': ''}\n"
        f"torch.jit.load({str(small_artifacts / 'alexnet.pt')!r}, _extra_files=extra)\n"
        "print(extra['alexbench.json'].decode())\n"  # TorchScript's entry: bytes
        "extra = {'alexbench.json': ''}\n"
        f"torch.export.load({str(small_artifacts / 'alexnet.pt2')!r}, extra_files=extra)\n"
        "print(extra['alexbench.json'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    shape, pt_meta, pt2_meta = out.stdout.strip().splitlines()[-3:]
    assert shape == f"(3, {SMALL_CLASSES})"
    onnx_meta = (
        ort.InferenceSession(
            str(small_artifacts / "alexnet.onnx"), providers=["CPUExecutionProvider"]
        )
        .get_modelmeta()
        .custom_metadata_map
    )
    assert json.loads(pt_meta) == json.loads(pt2_meta) == onnx_meta
    assert json.loads(pt_meta)["alexbench.output"] == f"logits, {SMALL_CLASSES} classes"


def test_unchanged_inputs_reuse_and_changed_settings_reexport(small_model, tmp_path):
    out = tmp_path / "e"
    _, first = ensure_artifacts(small_model, out, [ArtifactFormat.ONNX])
    assert [s for _, _, s in first] == [ArtifactStatus.EXPORTED]
    mtime = (out / "alexnet.onnx").stat().st_mtime_ns
    _, again = ensure_artifacts(small_model, out, [ArtifactFormat.ONNX])
    assert [s for _, _, s in again] == [ArtifactStatus.REUSED]
    assert (out / "alexnet.onnx").stat().st_mtime_ns == mtime
    # A different opset is a different artifact: exported again.
    _, other = ensure_artifacts(small_model, out, [ArtifactFormat.ONNX], opset=20)
    assert [s for _, _, s in other] == [ArtifactStatus.EXPORTED] and other[0][1].opset == 20
    assert onnx.load(str(out / "alexnet.onnx")).opset_import[0].version == 20
    # A modified file is repaired by export, but kept as it is when asked (verify/bench).
    with open(out / "alexnet.onnx", "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\x01" * 8)
    kw = {"opset": 20}
    _, kept = ensure_artifacts(small_model, out, [ArtifactFormat.ONNX], keep_modified=True, **kw)
    assert [s for _, _, s in kept] == [ArtifactStatus.MODIFIED]
    _, fixed = ensure_artifacts(small_model, out, [ArtifactFormat.ONNX], **kw)
    assert [s for _, _, s in fixed] == [ArtifactStatus.EXPORTED]


def test_failed_export_leaves_nothing_half_written(small_model, tmp_path, monkeypatch):
    def broken(request, path):
        path.write_bytes(b"partial")
        raise RuntimeError("exporter crashed halfway")

    monkeypatch.setattr(EXPORTERS[ArtifactFormat.ONNX], "export", broken)
    with pytest.raises(ExportError, match="onnx export failed: exporter crashed halfway"):
        ensure_artifacts(small_model, tmp_path, [ArtifactFormat.ONNX])
    assert list(tmp_path.iterdir()) == []


def test_opsets_the_formats_cannot_have_are_refused_before_any_export(small_model, tmp_path):
    with pytest.raises(InputError, match="--opset 17: the dynamo ONNX exporter makes opset 18"):
        ensure_artifacts(small_model, tmp_path, [ArtifactFormat.ONNX], opset=17)
    # Per-channel QDQ needs opset 13: ORT's quantiser would write an invalid file below it.
    legacy = {"opset": 12, "onnx_exporter": OnnxExporter.LEGACY}
    formats = [ArtifactFormat.ONNX, ArtifactFormat.ONNX_INT8]
    with pytest.raises(InputError, match="--opset 12: the int8 ONNX model needs opset 13"):
        ensure_artifacts(small_model, tmp_path, formats, **legacy)
    assert list(tmp_path.iterdir()) == []
    from alexbench.exporters import legacy_max_opset

    too_new = {"opset": legacy_max_opset() + 1, "onnx_exporter": OnnxExporter.LEGACY}
    with pytest.raises(
        InputError, match=f"legacy ONNX exporter writes opset {too_new['opset'] - 1}"
    ):
        ensure_artifacts(
            small_model, tmp_path, [ArtifactFormat.PT2, ArtifactFormat.ONNX], **too_new
        )
    assert list(tmp_path.iterdir()) == []  # not even the pt2 file
    # Formats with no ONNX file take any opset in range (bench and verify pass the default).
    ensure_artifacts(small_model, tmp_path, [ArtifactFormat.PT2], opset=17)


def test_bad_opset_and_out_path_are_input_errors(small_model, tmp_path):
    with pytest.raises(InputError, match="--opset 3"):
        ensure_artifacts(small_model, tmp_path, [ArtifactFormat.ONNX], opset=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        ensure_artifacts(small_model, tmp_path / "file", [ArtifactFormat.ONNX])


def test_legacy_onnx_exporter_at_224(tmp_path):
    from alexbench.checkpoint import load_model

    loaded = load_model(num_classes=SMALL_CLASSES)  # 224 px: the legacy exporter needs a 6x6 map
    formats = [ArtifactFormat.ONNX, ArtifactFormat.ONNX_FP16]
    _, out = ensure_artifacts(loaded, tmp_path, formats, opset=8, onnx_exporter=OnnxExporter.LEGACY)
    assert "legacy" in out[0][1].exporter
    # Below IR 4 the weights are graph inputs too: the fp16 file must still hold fp16 weights.
    fp16 = onnx.load(str(tmp_path / "alexnet.fp16.onnx"))
    assert {t.data_type for t in fp16.graph.initializer} == {onnx.TensorProto.FLOAT16}
    kinds = {i.name: i.type.tensor_type.elem_type for i in fp16.graph.input}
    assert kinds["input"] == onnx.TensorProto.FLOAT  # fed like every other variant
    sess = ort.InferenceSession(str(tmp_path / "alexnet.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224), dtype=np.float32)
    import torch

    with torch.no_grad():
        ref = loaded.model(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {"input": x})[0] - ref).max() < 1e-4


def test_legacy_exporter_limit_is_a_one_line_error(small_model, tmp_path, capfd):
    """Refused before the exporter runs (it dumps its whole graph on stdout before failing),
    for any size whose feature map is not a multiple of 6, above 224 px too."""
    with pytest.raises(InputError, match=r"64 px model: its feature map is 1x1.* 223-254 px"):
        ensure_artifacts(
            small_model, tmp_path, [ArtifactFormat.ONNX], onnx_exporter=OnnxExporter.LEGACY
        )
    assert not list(tmp_path.iterdir()) and capfd.readouterr().out == ""
    from alexbench.exporters import check_legacy_size

    with pytest.raises(InputError, match="256 px model: its feature map is 7x7"):
        check_legacy_size(256, OnnxExporter.LEGACY, [ArtifactFormat.ONNX_INT8])
    check_legacy_size(224, OnnxExporter.LEGACY, [ArtifactFormat.ONNX])
    check_legacy_size(430, OnnxExporter.LEGACY, [ArtifactFormat.ONNX])  # 12x12
    check_legacy_size(256, OnnxExporter.DYNAMO, [ArtifactFormat.ONNX])
    check_legacy_size(256, OnnxExporter.LEGACY, [ArtifactFormat.PT2])


@pytest.mark.parametrize("size", [64, 97, 223, 224, 256, 430])
def test_feature_map_side_is_the_model_s(size):
    import torch

    from alexbench.model import AlexNet, feature_map_side

    with torch.no_grad():
        out = AlexNet(num_classes=2).features(torch.zeros(1, 3, size, size))
    assert out.shape[-2:] == (feature_map_side(size),) * 2


def test_int8_and_fp16_variants(small_model, tmp_path, cifar_subset):
    from alexbench.devices import Device
    from alexbench.exporters import prepare_bundle
    from alexbench.inputs import image_inputs
    from alexbench.parity import compare
    from alexbench.precision import Precision
    from alexbench.runtimes import Backend, cell_unavailable, get_runtime

    calib = image_inputs(cifar_subset, 16, small_model.meta)
    fmts = [ArtifactFormat.ONNX_INT8, ArtifactFormat.ONNX_FP16]
    bundle = prepare_bundle(small_model, tmp_path, fmts, calibration=calib)
    assert set(bundle.artifacts) >= {*fmts}
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    for fmt in fmts:  # the variants are fed and read by the fp32 file's names
        rec = manifest["artifacts"][fmt.value]
        assert (rec["input_name"], rec["output_name"]) == ("input", "logits"), fmt
        # The oldest IR version their operator sets allow (8 for opset 18), not onnx's newest.
        model = onnx.load(str(tmp_path / rec["path"]), load_external_data=False)
        lowest = onnx.helper.find_min_ir_version_for(list(model.opset_import))
        assert model.ir_version == lowest == 8, fmt
        assert not any(n.metadata_props for n in [model.graph, *model.graph.node]), fmt
        # fed and read as float32, as the file itself declares (not float16, not int8)
        got = _onnx_io_dtypes(bundle.artifacts[fmt])
        assert got == (rec["input_dtype"], rec["output_dtype"]) == ("float32", "float32"), fmt
    onnx.checker.check_model(str(bundle.artifacts[ArtifactFormat.ONNX_FP16]), full_check=True)
    q = onnx.load(str(bundle.artifacts[ArtifactFormat.ONNX_INT8]))
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    ort_rt = get_runtime(Backend.ONNXRUNTIME)
    session = ort_rt.load(bundle, Device.CPU, Precision.INT8)
    x = image_inputs(cifar_subset, 8, small_model.meta, seed=3).batch
    ref = get_runtime(Backend.EAGER).load(bundle, Device.CPU, Precision.FP32)(x)
    result = compare(ref, session(x), Precision.INT8)
    assert result.passed and result.max_abs_err > 0, result
    # Without calibration images the int8 file already made is used as it is; where there
    # is none, the int8 cell is unavailable with the reason, not an error.
    plain = prepare_bundle(small_model, tmp_path, [ArtifactFormat.ONNX_INT8])
    int8 = ArtifactFormat.ONNX_INT8
    assert plain.artifacts[int8] == bundle.artifacts[int8]
    empty = prepare_bundle(small_model, tmp_path / "none", [int8])
    reason = cell_unavailable(ort_rt, empty, Device.CPU, Precision.INT8)
    assert "--calib-data" in reason


def test_sigterm_during_export_exits_143_and_leaves_no_temporaries(tmp_path):
    import signal
    import time

    out = tmp_path / "art"
    args = ["export", "--num-classes", "3", "--image-size", "64", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexbench", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob(".alexnet.*.tmp*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no artifact was being written"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # while a file is half-written
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    left = [p.name for p in out.iterdir()] if out.exists() else []  # a first export's folder goes
    assert not [name for name in left if ".tmp" in name or ".work." in name], left


def test_an_interrupt_waits_for_torch_s_archive_writer(small_model, tmp_path, monkeypatch):
    """Ctrl-C raised inside torch.export.save's Python write callback aborted the process
    (SIGABRT from the C++ writer's destructor, an outside audit): it now waits for the archive
    to be complete, then goes to the handler in place (here Python's: KeyboardInterrupt)."""
    import os
    import signal

    import torch

    from alexbench.exporters.base import save_program

    real_save = torch.export.save

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives as the writer starts
        for _ in range(1000):  # Python bytecode, where a handler would run
            pass
        real_save(*args, **kwargs)

    monkeypatch.setattr(torch.export, "save", interrupted_save)
    program = torch.export.export(small_model.model.eval(), (torch.zeros(1, 3, 64, 64),))
    path = tmp_path / "m.pt2"
    with pytest.raises(KeyboardInterrupt):
        save_program(program, path, {})
    assert torch.export.load(str(path)) is not None  # the archive was finished first


def test_a_held_interrupt_comes_first_when_the_block_fails():
    """The review: a SIGINT held while the write then failed (a full disk) was lost, and the
    command exited 2 for the disk instead of 130."""
    import os
    import signal

    from alexbench.fileio import signals_held

    with pytest.raises(KeyboardInterrupt) as caught, signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        raise OSError(28, "No space left on device")
    assert isinstance(caught.value.__context__, OSError)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_temporaries_of_a_killed_export_are_removed_by_the_next(small_model, tmp_path):
    ensure_artifacts(small_model, tmp_path, [ArtifactFormat.TORCHSCRIPT])
    stale = [tmp_path / ".alexnet.k1ll3d.tmp.onnx", tmp_path / ".manifest.abc.tmp.json"]
    for path in stale:
        path.write_bytes(b"half")
    (tmp_path / ".alexnet.work.xyz").mkdir()
    (tmp_path / ".alexnet.work.xyz" / "preprocessed.onnx").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("mine")
    _, outcomes = ensure_artifacts(small_model, tmp_path, [ArtifactFormat.TORCHSCRIPT])
    assert [s for _, _, s in outcomes] == [ArtifactStatus.REUSED]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["alexnet.pt", "manifest.json", "notes.txt"]


def test_a_users_own_file_in_a_folder_without_manifest_is_not_overwritten(small_model, tmp_path):
    mine = tmp_path / "alexnet.onnx"
    mine.write_bytes(b"my own model")
    with pytest.raises(InputError, match=r"holds alexnet\.onnx but no manifest\.json"):
        ensure_artifacts(small_model, tmp_path, [ArtifactFormat.ONNX])
    assert mine.read_bytes() == b"my own model" and not (tmp_path / "manifest.json").exists()
    ensure_artifacts(small_model, tmp_path, [ArtifactFormat.ONNX], force=True)  # asked for
    assert mine.read_bytes() != b"my own model"
    # A manifest that does not list the file: verify replaced it, then said PASS of its own.
    ensure_artifacts(small_model, tmp_path, [ArtifactFormat.TORCHSCRIPT])
    mine = tmp_path / "alexnet.pt2"
    mine.write_bytes(b"my own program")
    with pytest.raises(InputError, match=r"holds alexnet\.pt2, which its manifest\.json does not"):
        ensure_artifacts(small_model, tmp_path, [ArtifactFormat.PT2], keep_modified=True)
    assert mine.read_bytes() == b"my own program"


def test_a_disk_too_small_is_refused_before_writing(small_model, tmp_path, monkeypatch):
    import collections
    import shutil as shutil_module

    from alexbench import fileio

    usage = collections.namedtuple("usage", "total used free")
    real = shutil_module.disk_usage
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(1 << 40, 0, 50 * 2**20))
    with pytest.raises(InputError, match=r"not enough free disk space .* for alexnet\.pt: about"):
        ensure_artifacts(small_model, tmp_path / "art" / "a", [ArtifactFormat.TORCHSCRIPT])
    assert not (tmp_path / "art").exists()  # a refused first export leaves no folder above
    monkeypatch.setattr(fileio.shutil, "disk_usage", real)
    ensure_artifacts(small_model, tmp_path / "art", [ArtifactFormat.TORCHSCRIPT])
    # The TorchScript file exists twice while it is made (saved, then copied without its debug
    # records): twice the room of a format of the same bytes per weight.
    from alexbench.exporters import _bytes_needed

    margin = _bytes_needed(ArtifactFormat.PT2, 0)  # the fixed part
    ts, pt2 = (
        _bytes_needed(f, 10**6) - margin for f in (ArtifactFormat.TORCHSCRIPT, ArtifactFormat.PT2)
    )
    assert ts == 2 * pt2


def test_an_ir_version_is_set_to_what_the_operator_sets_need_and_checked(tmp_path):
    """Lowered to the oldest the opset allows, raised where a file declares less than its
    opset needs (the int8 quantiser may raise the opset of the file it derives from); the
    checker itself accepts an opset-21 model declaring IR 3, so check_file refuses it."""
    from onnx import TensorProto, helper

    from alexbench.exporters.onnx import check_file, set_ir_version

    def model(opset: int, ir: int) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        node = helper.make_node("Relu", ["x"], ["y"])
        node.metadata_props.add(key="debug", value="a record of IR 10")
        graph = helper.make_graph([node], "g", [x], [y])
        opsets = [helper.make_opsetid("", opset)]
        return helper.make_model(graph, opset_imports=opsets, ir_version=ir)

    lowered = model(18, 10)
    set_ir_version(lowered)
    assert lowered.ir_version == 8 and not lowered.graph.node[0].metadata_props
    raised = model(21, 8)
    set_ir_version(raised)
    assert raised.ir_version == 10 and raised.graph.node[0].metadata_props  # IR 10 keeps them
    path = tmp_path / "low.onnx"
    onnx.save(model(21, 3), str(path))
    with pytest.raises(ExportError, match="IR version 3 is below the 10 its operator sets need"):
        check_file(path)
