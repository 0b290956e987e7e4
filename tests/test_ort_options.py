"""ONNX Runtime on CPU: the optimised-model cache (keyed by the source file, the ORT build and the
CPU) and the int8 recipe recorded in the manifest.

The small model is still 200+ MiB (AlexNet's classifier does not shrink with the image), so the
shared export is only read here: each test points its bundle's folder, where the cache lives, at
a folder of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

from alexbench.artifacts import ArtifactFormat, ModelBundle
from alexbench.checkpoint import load_model
from alexbench.devices import Device
from alexbench.exporters import ensure_artifacts
from alexbench.exporters import onnx_int8 as int8
from alexbench.exporters.base import ExportRequest
from alexbench.exporters.manifest import Manifest
from alexbench.inputs import random_inputs
from alexbench.precision import Precision
from alexbench.runtimes import ort_cache as ortmod
from alexbench.runtimes.base import SessionOptions
from alexbench.runtimes.onnxruntime import OnnxRuntime
from alexbench.runtimes.ort_cache import CACHE_DIR, ENTRY_DATA, ENTRY_MODEL

from .conftest import SMALL_CLASSES, SMALL_SIZE


def _bundle(small_bundle: ModelBundle, folder: Path) -> ModelBundle:
    """The shared fp32 export, with `folder` as its artifact folder (where ort-cache/ goes)."""
    paths = {ArtifactFormat.ONNX: small_bundle.artifacts[ArtifactFormat.ONNX]}
    return ModelBundle(small_bundle.loaded, paths, {}, folder)


def _load(bundle: ModelBundle, precision: Precision = Precision.FP32, cache: bool = True):
    return OnnxRuntime(cache=cache).load(bundle, Device.CPU, precision)


def _cache(session) -> dict:
    return session.info()["optimized_model_cache"]


def _entries(folder: Path) -> list[Path]:
    cache = folder / CACHE_DIR  # a folder left empty by a failed build is removed
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def _leftovers(folder: Path) -> list[str]:
    cache = folder / CACHE_DIR
    return [p.name for p in cache.iterdir() if p.name.startswith(".")] if cache.is_dir() else []


def test_first_session_writes_the_cache_and_the_next_one_loads_it(
    small_bundle, small_batch, tmp_path
):
    bundle = _bundle(small_bundle, tmp_path)
    plain = _load(bundle, cache=False)
    assert plain.info()["optimized_model_cache"] is None
    expected = plain(small_batch)

    first = _load(bundle)
    made = _cache(first)
    assert made["hit"] is False and made["written"] is True
    assert made["reason"] == "no cached model yet"
    (entry,) = _entries(tmp_path)
    # The first session, too, runs the entry it wrote: every timed session runs the same model.
    assert made["runs_cached_model"] is True and made["session_level"] == "ORT_DISABLE_ALL"
    assert first.sess._model_path.startswith(str(entry))
    assert {p.name for p in entry.iterdir()} == {ENTRY_MODEL, ENTRY_DATA, "entry.json"}
    record = json.loads((entry / "entry.json").read_text())
    assert record["key"] == made["key"] and record["fields"]["level"] == "ORT_ENABLE_ALL"
    assert record["fields"]["cpu"] == ortmod.cpu_signature()

    second = _load(bundle)
    used = _cache(second)
    assert used["hit"] is True and used["written"] is False and used["key"] == made["key"]
    assert used["runs_cached_model"] is True and used["session_level"] == "ORT_DISABLE_ALL"
    # The graph it runs was optimised at ORT_ENABLE_ALL, when the entry was made.
    assert second.info()["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert second.sess._model_path.startswith(str(entry))  # the cached file, not the source
    np.testing.assert_array_equal(first(small_batch), expected)
    np.testing.assert_array_equal(second(small_batch), expected)
    assert _leftovers(tmp_path) == []


def test_an_unchanged_source_is_not_hashed_again(small_bundle, tmp_path, monkeypatch):
    bundle = _bundle(small_bundle, tmp_path)
    _load(bundle)
    # The export is seconds old: within the racy window its stat alone is not trusted.
    monkeypatch.setattr(ortmod, "RACY_NS", 0)

    def no_hash(*_):
        raise AssertionError("the source was hashed")

    monkeypatch.setattr(ortmod, "_source_sha256", no_hash)
    assert _cache(_load(bundle))["hit"] is True


@pytest.fixture(scope="module")
def int8_folder(small_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("int8")
    calibration = random_inputs(16, SMALL_SIZE, seed=3)
    ensure_artifacts(small_model, folder, [ArtifactFormat.ONNX_INT8], calibration=calibration)
    return folder


def test_int8_cached_model_gives_the_same_outputs(small_model, small_batch, int8_folder, tmp_path):
    int8_path = int8_folder / "alexnet.int8.onnx"
    bundle = ModelBundle(small_model, {ArtifactFormat.ONNX_INT8: int8_path}, {}, tmp_path)
    expected = _load(bundle, Precision.INT8, cache=False)(small_batch)
    first, second = _load(bundle, Precision.INT8), _load(bundle, Precision.INT8)
    assert _cache(first)["written"] and _cache(second)["hit"]
    np.testing.assert_array_equal(first(small_batch), expected)
    np.testing.assert_array_equal(second(small_batch), expected)


def _other_cpu(monkeypatch) -> dict:
    # A CPU one instruction-set extension apart: AVX2 dropped (or added, where this one has none).
    # Dropping AVX-512 said nothing on a CPU without it (AMD EPYC family 25 model 1).
    real = ortmod.cpu_signature()
    flags = real["flags"]
    other = real | {
        "flags": [f for f in flags if f != "avx2"] if "avx2" in flags else [*flags, "avx2"]
    }
    monkeypatch.setattr(ortmod, "cpu_signature", lambda: other)
    return other


def test_another_cpu_gets_its_own_entry(small_bundle, tmp_path, monkeypatch):
    bundle = _bundle(small_bundle, tmp_path)
    here = _cache(_load(bundle))
    with monkeypatch.context() as m:
        _other_cpu(m)
        there = _cache(_load(bundle))
        assert there["hit"] is False and there["written"] is True
        assert there["key"] != here["key"] and there["entry"] != here["entry"]
        assert _cache(_load(bundle))["hit"] is True  # that CPU's own entry
    assert len(_entries(tmp_path)) == 2
    back = _cache(_load(bundle))
    assert back["hit"] is True and back["key"] == here["key"]


def test_an_entry_made_on_another_cpu_is_never_served(
    small_bundle, small_batch, tmp_path, monkeypatch
):
    bundle = _bundle(small_bundle, tmp_path)
    made = _cache(_load(bundle))
    # Put this CPU's entry where the other CPU looks for its own (a shared folder, a copy).
    with monkeypatch.context() as m:
        _other_cpu(m)
        source = bundle.artifacts[ArtifactFormat.ONNX]
        cache = ortmod.OptimizedModelCache(onnxruntime, source, tmp_path / CACHE_DIR, None)
        target = cache.entry(cache.fields())
        assert target != Path(made["entry"])
        shutil.copytree(made["entry"], target)
        session = _load(bundle)
        got = _cache(session)
    assert got["hit"] is False and got["reason"] == "the cache entry was made for another key"
    assert got["written"] is True
    record = json.loads((target / "entry.json").read_text())
    assert record["fields"]["cpu"]["flags"] != ortmod.cpu_signature()["flags"]  # rebuilt
    expected = _load(bundle, cache=False)(small_batch)
    np.testing.assert_array_equal(session(small_batch), expected)


def test_a_corrupt_cached_model_is_rebuilt_with_one_warning(
    small_bundle, small_batch, tmp_path, capfd
):
    bundle = _bundle(small_bundle, tmp_path)
    entry = Path(_cache(_load(bundle))["entry"])
    model = entry / ENTRY_MODEL
    model.write_bytes(b"\xff" * model.stat().st_size)  # same size: only loading can tell
    capfd.readouterr()
    session = _load(bundle)
    got = _cache(session)
    err = capfd.readouterr().err  # ORT's own log lines would show here too
    assert got["hit"] is False and got["written"] is True
    assert got["reason"].startswith("the cached model did not load")
    assert err.count("\n") == 1 and err.startswith("warning: ") and str(entry) in err
    np.testing.assert_array_equal(session(small_batch), _load(bundle, cache=False)(small_batch))
    assert _cache(_load(bundle))["hit"] is True  # rebuilt whole
    assert capfd.readouterr().err == ""


def test_a_truncated_cache_file_is_rebuilt(small_bundle, tmp_path, capsys):
    bundle = _bundle(small_bundle, tmp_path)
    entry = Path(_cache(_load(bundle))["entry"])
    with open(entry / ENTRY_DATA, "r+b") as f:
        f.truncate(1000)
    got = _cache(_load(bundle))
    assert got["hit"] is False and got["written"] is True
    assert got["reason"] == "the cached files are incomplete or were modified"
    assert (entry / ENTRY_DATA).stat().st_size > 1000
    assert capsys.readouterr().err == ""


def test_an_entry_that_does_not_load_back_is_removed_with_one_warning(
    small_bundle, small_batch, tmp_path, monkeypatch, capfd
):
    bundle = _bundle(small_bundle, tmp_path)

    def broken(*_):
        raise RuntimeError("cannot map model.onnx.data")

    monkeypatch.setattr(ortmod.OptimizedModelCache, "_load", broken)
    capfd.readouterr()
    session = _load(bundle)
    got = _cache(session)
    err = capfd.readouterr().err
    assert got["written"] is False and got["runs_cached_model"] is False
    assert got["reason"].startswith("the cached model just written did not load")
    assert err.count("\n") == 1 and "cannot map" in err
    assert _entries(tmp_path) == [] and _leftovers(tmp_path) == []
    np.testing.assert_array_equal(session(small_batch), _load(bundle, cache=False)(small_batch))


def test_an_unwritable_cache_folder_loads_the_session_uncached(small_bundle, small_batch, tmp_path):
    bundle = _bundle(small_bundle, tmp_path)
    (tmp_path / CACHE_DIR).write_text("not a folder")  # mkdir fails even for root
    session = _load(bundle)
    got = _cache(session)
    assert got["hit"] is False and got["written"] is False and got["runs_cached_model"] is False
    assert got["reason"].startswith("the cache folder is not writable")
    assert got["session_level"] == "ORT_ENABLE_ALL"
    np.testing.assert_array_equal(session(small_batch), _load(bundle, cache=False)(small_batch))


def test_a_failed_write_leaves_nothing_half_written(small_bundle, tmp_path, monkeypatch):
    bundle = _bundle(small_bundle, tmp_path)

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ortmod.OptimizedModelCache, "_install", staticmethod(disk_full))
    got = _cache(_load(bundle))
    assert got["written"] is False and "No space left on device" in got["reason"]
    assert _entries(tmp_path) == [] and _leftovers(tmp_path) == []


def test_ort_failing_to_save_falls_back_to_a_plain_session(small_bundle, tmp_path, monkeypatch):
    bundle = _bundle(small_bundle, tmp_path)
    gone = tmp_path / "gone"
    # ORT is told to save into a folder that does not exist: its session creation fails.
    monkeypatch.setattr(ortmod.tempfile, "mkdtemp", lambda **_: str(gone))
    got = _cache(_load(bundle))
    assert got["written"] is False and got["reason"].startswith("the optimised model could not")
    assert not (tmp_path / CACHE_DIR).exists() or _entries(tmp_path) == []


def test_replaced_or_edited_source_is_never_served_from_the_cache(small_batch, tmp_path):
    """`export --force` replaces the file (new inode), an edit in place keeps it: both are seen,
    by the stat and then the sha256 that is part of the key."""
    folder = tmp_path / "art"
    first = load_model(seed=0, num_classes=SMALL_CLASSES, image_size=SMALL_SIZE)
    ensure_artifacts(first, folder, [ArtifactFormat.ONNX])
    source = folder / "alexnet.onnx"
    bundle = ModelBundle(first, {ArtifactFormat.ONNX: source}, {}, folder)
    old = _cache(_load(bundle))
    assert _cache(_load(bundle))["hit"] is True

    other = load_model(seed=1, num_classes=SMALL_CLASSES, image_size=SMALL_SIZE)
    ensure_artifacts(other, folder, [ArtifactFormat.ONNX], force=True)
    # Another model took the folder: the old model's cached copies went with its files.
    assert not (folder / CACHE_DIR).exists()
    new_bundle = ModelBundle(other, {ArtifactFormat.ONNX: source}, {}, folder)
    session = _load(new_bundle)
    got = _cache(session)
    assert got["hit"] is False and got["written"] is True
    assert got["key"] != old["key"] and got["entry"] == old["entry"]
    expected = _load(new_bundle, cache=False)(small_batch)
    np.testing.assert_array_equal(session(small_batch), expected)
    assert _cache(_load(new_bundle))["hit"] is True

    # A weight changed in place (bench uses a modified file as it is): same size, same inode.
    with open(source, "r+b") as f:
        f.seek(source.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    edited = _load(new_bundle)
    assert _cache(edited)["hit"] is False
    expected = _load(new_bundle, cache=False)(small_batch)
    np.testing.assert_array_equal(edited(small_batch), expected)
    assert len(_entries(folder)) == 1


def _weight_scales(path: Path) -> list[np.ndarray]:
    """The scales of the weights' DequantizeLinear nodes (int8 initializers)."""
    model = onnx.load(str(path))
    init = {i.name: i for i in model.graph.initializer}
    return [
        numpy_helper.to_array(init[n.input[1]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in init
        and init[n.input[0]].data_type == onnx.TensorProto.INT8
    ]


def test_the_manifest_records_the_default_int8_recipe(int8_folder):
    record = Manifest.load(int8_folder).artifacts["onnx-int8"]
    assert record.exporter == int8.DEFAULT_RECIPE.describe()
    assert record.exporter == "onnxruntime.quantization.quantize_static (QDQ, per-channel, MinMax)"
    scales = _weight_scales(int8_folder / "alexnet.int8.onnx")
    assert len(scales) == 8 and all(s.ndim == 1 and s.size > 1 for s in scales)  # per channel
    model = onnx.load(str(int8_folder / "alexnet.int8.onnx"), load_external_data=False)
    # Only the operator sets its nodes use (quant_pre_process declared com.microsoft and more).
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"} | {
        n.domain for n in model.graph.node
    }


def test_a_recipe_is_applied_and_described(small_model, int8_folder, tmp_path):
    recipe = int8.Recipe(
        per_channel=False, calibration=int8.Calibration.PERCENTILE, float_output_layer=True
    )
    request = ExportRequest(
        small_model.model,
        SMALL_SIZE,
        SMALL_CLASSES,
        calibration=random_inputs(16, SMALL_SIZE, seed=3).batch,
        calibration_desc="16 seeded N(0,1) tensors",
        onnx_path=int8_folder / "alexnet.onnx",
    )
    path = tmp_path / "pt.int8.onnx"
    fields = int8.export(request, path, recipe)
    assert fields["exporter"].endswith("(QDQ, per-tensor, Percentile, fp32 output layer)")
    scales = _weight_scales(path)
    # One scale per weight tensor; the last layer's weights stay fp32, its output unquantised.
    assert len(scales) == 7 and all(s.size == 1 for s in scales)
    graph = onnx.load(str(path)).graph
    (last,) = [n for n in graph.node if "logits" in n.output]
    assert last.op_type == "Gemm"
    described = int8.Recipe(reduce_range=True).describe()
    assert described.endswith("(QDQ, per-channel, MinMax, reduce_range)")


def test_the_int8_config_key_follows_the_recipe(small_model, monkeypatch):
    """A changed default recipe makes another file: an int8 model quantised the old way is never
    reused as if it were the new one."""
    from alexbench.exporters import _artifact_config, onnx_metadata
    from alexbench.exporters.base import OnnxExporter
    from alexbench.exporters.manifest import config_key, stack_versions

    versions = stack_versions()

    def key() -> str:
        cfg = _artifact_config(
            versions,
            ArtifactFormat.ONNX_INT8,
            "w",
            small_model.meta,
            onnx_metadata(small_model),
            18,
            OnnxExporter.DYNAMO,
            "c",
        )
        return config_key(cfg)

    before = key()
    monkeypatch.setattr(int8, "DEFAULT_RECIPE", int8.Recipe(per_channel=False))
    assert key() != before


class _Stream:
    """Stands in for the torch stream ORT was given: counts synchronisations."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def synchronize(self) -> None:
        self.log.append("sync")


class _Binding:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        self.log.append("copy")
        return [np.zeros((1, 3), dtype=np.float32)]


class _CudaSess:
    def __init__(self) -> None:
        self.run_options: list[object] = []

    def run_with_iobinding(self, binding: object, run_options: object = None) -> None:
        self.run_options.append(run_options)

    def get_session_options(self) -> onnxruntime.SessionOptions:
        so = onnxruntime.SessionOptions()
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as load sets it
        return so

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider"]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {"CUDAExecutionProvider": {"use_tf32": "0"}}

    def get_modelmeta(self) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(custom_metadata_map={"alexbench.output": "logits, 3 classes"})


@pytest.mark.parametrize(
    ("accepted", "transfers", "asynchronous"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
def test_a_cuda_run_on_our_stream_returns_when_enqueued_and_is_synchronised_before_reading(
    accepted, transfers, asynchronous
):
    # ORT's CUDA run waits for its stream by default, which made the throughput loop
    # synchronous per call for ORT alone; on the stream we synchronise ourselves it must not.
    from alexbench.runtimes.onnxruntime import ASYNC_RUN_KEY, OnnxRuntimeSession

    log: list[str] = []
    sess = _CudaSess()
    opts = SessionOptions(include_transfers=transfers)
    session = OnnxRuntimeSession(
        sess, Device.CUDA, Precision.FP32, opts, stream=_Stream(log), stream_accepted=accepted
    )
    binding = _Binding(log)
    session.run((binding,))
    (options,) = sess.run_options
    if asynchronous:
        assert options.get_run_config_entry(ASYNC_RUN_KEY) == "1"
    else:
        assert options is None  # ORT's default: the run returns when the device is done
    assert session.info()["run_returns_when_enqueued"] is asynchronous
    session.to_numpy(binding)
    assert log == (["sync", "copy"] if accepted else ["copy"])  # ready before it is read


def test_an_existing_int8_file_is_used_without_calibration_images(small_model, int8_folder):
    # Calibration images make an int8 file; verifying or timing the one a user has needs none
    # (the cell was "unsupported" and verify said PASS beside an unchecked int8 file).
    from alexbench.exporters import NEEDS_CALIBRATION, prepare_bundle

    seen: list[Path] = []
    bundle = prepare_bundle(small_model, int8_folder, [ArtifactFormat.ONNX_INT8])
    assert bundle.artifacts[ArtifactFormat.ONNX_INT8] == int8_folder / "alexnet.int8.onnx"
    # another model (seed 1) finds no int8 file of its own there: still needs calibration
    other = load_model(seed=1, num_classes=SMALL_CLASSES, image_size=SMALL_SIZE)
    bundle = prepare_bundle(other, int8_folder, [ArtifactFormat.ONNX_INT8])
    assert ArtifactFormat.ONNX_INT8 not in bundle.artifacts
    assert bundle.missing[ArtifactFormat.ONNX_INT8] == NEEDS_CALIBRATION
    # a changed file is used as it is, and said to differ (verify must test the file on disk)
    copy = int8_folder.parent / "int8-copy"
    shutil.copytree(int8_folder, copy)
    with open(copy / "alexnet.int8.onnx", "ab") as f:
        f.write(b"\0")
    prepare_bundle(small_model, copy, [ArtifactFormat.ONNX_INT8],
                   on_modified=lambda fmt, path: seen.append(path))  # fmt: skip
    assert seen == [copy / "alexnet.int8.onnx"]


def test_an_interrupted_first_build_leaves_no_empty_cache_folder(
    small_bundle, tmp_path, monkeypatch
):
    """Ctrl-C while ORT optimises the first model: the temporary entry went, the folder stayed."""
    bundle = _bundle(small_bundle, tmp_path)
    real = onnxruntime.InferenceSession

    def interrupted(*args, **kwargs):
        if "sess_options" in kwargs and kwargs["sess_options"].optimized_model_filepath:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _load(bundle)
    assert not (tmp_path / CACHE_DIR).exists()
