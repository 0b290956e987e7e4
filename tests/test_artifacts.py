"""Artifact folders belong to one model: refusal, --force, locking, sources found when moved."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexbench.artifacts import ArtifactFormat
from alexbench.checkpoint import (
    CheckpointError,
    ModelMeta,
    Normalization,
    file_sha256,
    load_model,
    save_checkpoint,
)
from alexbench.errors import InputError
from alexbench.exporters import ensure_artifacts, folder_for, model_for_artifacts
from alexbench.exporters.manifest import Manifest
from alexbench.fileio import folder_lock

SMALL = {"num_classes": 10, "image_size": 64}
TS = [ArtifactFormat.TORCHSCRIPT]


def test_a_folder_holds_one_model_and_force_replaces_it_whole(tmp_path):
    out = tmp_path / "x"
    ensure_artifacts(load_model(seed=1, **SMALL), out, TS)
    (out / "alexnet.pt2").write_bytes(b"orphan")  # an artifact no manifest lists
    (out / "notes.txt").write_text("mine")  # not alexbench's: kept by --force
    (out / "alexnet.pth").write_text("my weights")  # named like ours, but no artifact's name
    with pytest.raises(InputError, match="holds the artifacts of another model.*seed 1"):
        ensure_artifacts(load_model(seed=2, **SMALL), out, TS)
    assert Manifest.load(out).source["seed"] == 1  # untouched by the refusal
    two = load_model(seed=2, **SMALL)
    manifest, _ = ensure_artifacts(two, out, [ArtifactFormat.ONNX], force=True)
    assert manifest.source["seed"] == 2 and set(manifest.artifacts) == {"onnx"}
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "alexnet.pth").read_text() == "my weights"  # was deleted by alexnet.*
    assert not (out / "alexnet.pt").exists()  # seed 1's TorchScript file went with it
    assert not (out / "alexnet.pt2").exists()  # and the orphan artifact beside it


def test_same_model_other_normalisation_is_another_model(tmp_path):
    out = tmp_path / "x"
    ensure_artifacts(load_model(seed=1, **SMALL), out, TS)
    other = load_model(seed=1, normalization=Normalization.NONE, **SMALL)
    with pytest.raises(InputError, match="another model") as refused:
        ensure_artifacts(other, out, TS)
    # The two descriptions differ where the models do, not only in the word "another".
    assert "mean [0.485, 0.456, 0.406]" in str(refused.value)
    assert "mean [0.0, 0.0, 0.0]" in str(refused.value), str(refused.value)
    assert folder_for(other) != folder_for(load_model(seed=1, **SMALL))


def test_a_failed_first_export_leaves_no_folder(tmp_path, monkeypatch):
    from alexbench import exporters
    from alexbench.errors import ExportError

    def broken(_request, _path):
        raise RuntimeError("exporter crashed")

    # Fails inside the folder lock, after the folder was made for it.
    monkeypatch.setattr(exporters.EXPORTERS[ArtifactFormat.TORCHSCRIPT], "export", broken)
    with pytest.raises(ExportError, match="exporter crashed"):
        ensure_artifacts(load_model(seed=1, **SMALL), tmp_path / "new" / "a" / "b", TS)
    assert not (tmp_path / "new").exists()  # nor the folders above it that it made
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("x")
    with pytest.raises(ExportError, match="exporter crashed"):
        ensure_artifacts(load_model(seed=1, **SMALL), tmp_path / "kept" / "a", TS)
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["mine.txt"]


def test_sources_are_absolute_and_found_by_hash_when_moved(tmp_path, monkeypatch):
    ckpt = tmp_path / "a" / "best.pt"
    model = load_model(seed=3, **SMALL)
    save_checkpoint(ckpt, model.model, ModelMeta(num_classes=10, image_size=64))
    monkeypatch.chdir(tmp_path)
    relative = load_model(checkpoint=Path("a/best.pt"))
    assert relative.source.path == str(ckpt.resolve())  # results files record it absolute too
    ensure_artifacts(relative, Path("exp"), TS)
    recorded = Manifest.load(tmp_path / "exp").source
    assert recorded["path"] == str(ckpt.resolve()) and recorded["file_sha256"]
    (tmp_path / "b").mkdir()
    shutil.move(ckpt, tmp_path / "b" / "best.pt")
    monkeypatch.chdir(tmp_path / "b")  # another working directory, the file moved
    found = model_for_artifacts(tmp_path / "exp")
    assert found.source.path == str(tmp_path / "b" / "best.pt")
    (tmp_path / "b" / "best.pt").unlink()
    with pytest.raises(InputError, match="no longer exists"):
        model_for_artifacts(tmp_path / "exp")


def test_project_checkpoint_given_as_weights_is_refused(tmp_path):
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, load_model(seed=0, **SMALL).model, ModelMeta(num_classes=10))
    with pytest.raises(CheckpointError, match="use --checkpoint"):
        load_model(weights=ckpt)


def test_a_second_holder_of_the_lock_waits_then_fails_in_one_line(tmp_path):
    waited = []
    with (
        folder_lock(tmp_path),
        pytest.raises(InputError, match="another alexbench process"),
        folder_lock(tmp_path, on_wait=lambda: waited.append(1), timeout_s=0.3),
    ):
        pass
    assert waited == [1]
    with folder_lock(tmp_path):  # released: free again
        pass


def test_two_concurrent_exports_of_different_models_into_one_folder(tmp_path):
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "alexbench", "export", "--out", str(out), "--format",
           "torchscript", "--num-classes", "10", "--image-size", "64"]  # fmt: skip
    env = os.environ | {"NO_COLOR": "1"}
    procs = [
        subprocess.Popen(
            [*cmd, "--seed", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    *waiting, refusal = next(err for code, err in results if code == 2).strip().splitlines()
    # The loser either waited for the winner's lock (one line saying so) or came after it.
    assert all(w.startswith("waiting for another alexbench process") for w in waiting)
    assert refusal.startswith("error: ") and "another model" in refusal
    # What is on disk is one model, and the manifest describes exactly those bytes.
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["artifacts"]["torchscript"]
    assert file_sha256(out / record["path"]) == record["sha256"]
    winner = load_model(seed=manifest["source"]["seed"], **SMALL)
    scripted = torch.jit.load(str(out / record["path"]))
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(scripted(x), winner.model(x))


def test_export_evaluate_verify_bench_with_defaults_keep_to_their_models(tmp_path, monkeypatch):
    """export (seeded), then evaluate --checkpoint (another model), then verify and bench with
    defaults: each command uses the model it names (defaults: the last export), says which,
    and no folder ever holds two models."""
    from typer.testing import CliRunner

    from alexbench.cli import app

    def run(*args: str) -> str:
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == 0, r.output
        return r.stdout

    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "runs" / "best.pt"
    save_checkpoint(ckpt, load_model(seed=3, **SMALL).model,
                    ModelMeta(num_classes=10, image_size=64))  # fmt: skip
    out = run("export", "--num-classes", "10", "--image-size", "64", "--format", "onnx")
    assert "seeded random init (seed 0)" in out
    seeded = (tmp_path / "exports" / "latest").resolve()
    out = run("evaluate", "--checkpoint", str(ckpt), "--dataset", "synthetic",
              "--synthetic-size", "40", "--backend", "eager,onnxruntime")  # fmt: skip
    assert f"checkpoint {ckpt}" in out
    assert (tmp_path / "exports" / "latest").resolve() == seeded  # only export moves latest
    folders = sorted(p.name for p in (tmp_path / "exports").iterdir() if p.name != "latest")
    assert len(folders) == 2 and any(f.startswith("best-10c-64px-") for f in folders)
    out = run("verify", "--backend", "eager,onnxruntime", "--precision", "fp32", "--batch", "2")
    assert "seeded random init (seed 0)" in out and str(seeded.relative_to(tmp_path)) in out
    run("bench", "--backend", "eager,onnxruntime", "--precision", "fp32", "--batch", "1",
        "--min-time", "0.05", "--min-iters", "3", "--warmup", "1", "--device", "cpu",
        "--results-dir", "res")  # fmt: skip
    (results,) = (tmp_path / "res").glob("*.json")
    doc = json.loads(results.read_text())
    assert doc["model"]["source"]["kind"] == "seeded" and doc["model"]["source"]["seed"] == 0
    assert doc["model"]["artifacts_dir"] == str(seeded)
    for folder in folders:  # each folder's manifest matches the files in it
        manifest = json.loads((tmp_path / "exports" / folder / "manifest.json").read_text())
        for record in manifest["artifacts"].values():
            assert file_sha256(tmp_path / "exports" / folder / record["path"]) == record["sha256"]


def _set(doc: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc[key]
    doc[last] = value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ((None, []), "not a JSON object"),
        (("artifacts", "alexnet.onnx"), "artifacts must be an object"),
        (("source.kind", "bogus"), "source must be an object with kind"),
        (("source", "seeded"), "source must be an object"),
        (("model.num_classes", None), "model.num_classes"),
        (("model.image_size", "64"), "model.image_size"),
        (("model.mean", "0.5"), "model.mean"),
        (("model.mean", [0.5, 0.5]), "model.mean must be 3 finite numbers"),
        (("model.std", [0.2, 0.0, 0.2]), "model.std must be 3 finite numbers above 0"),
        (("source.seed", "abc"), "source.seed must be an integer"),
        # Each of these passed and crashed later ("unexpected ValueError/TypeError").
        (("source.seed", 2**70), "source.seed must be an integer from 0 to"),
        (("model.num_classes", True), "model.num_classes must be an integer from 1 to"),
        (("model.image_size", 10**9), "model.image_size must be an integer from 64 to 4,096"),
        (("artifacts.torchscript.path", None), "is not a file name"),
        (("artifacts.torchscript.path", "../victim.txt"), "is not a file name"),
        (("artifacts.torchscript.path", "/tmp/victim.txt"), "is not a file name"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line_and_names_no_file_outside(
    small_artifacts: Path, tmp_path: Path, change: tuple, message: str
) -> None:
    doc = json.loads((small_artifacts / "manifest.json").read_text())
    key, value = change
    if key is None:
        doc = value
    else:
        _set(doc, key, value)
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=f"unreadable manifest .*{message}"):
        Manifest.load(tmp_path)


def test_export_force_never_deletes_a_file_outside_the_folder(small_artifacts, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = tmp_path / "other"
    folder.mkdir()
    doc = json.loads((small_artifacts / "manifest.json").read_text())
    doc["source"]["weights_sha256"] = "0" * 64  # another model's folder: --force clears it
    doc["artifacts"]["torchscript"]["path"] = "../victim.txt"
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="unreadable manifest"):
        ensure_artifacts(load_model(seed=3, **SMALL), folder, TS, force=True)
    assert victim.read_text() == "keep me"


def test_verify_keeps_a_stale_file_and_says_what_differs(small_model, tmp_path):
    # A file made by other library versions was re-exported first, so verify checked a new
    # file and the user's one was gone (a corrupted stale file passed that way).
    from alexbench.exporters import prepare_bundle

    out = tmp_path / "art"
    ensure_artifacts(small_model, out, [ArtifactFormat.ONNX])
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"]["onnx"]["versions"]["torch"] = "2.13.0"
    manifest["artifacts"]["onnx"]["config_key"] = "0" * 16
    (out / "manifest.json").write_text(json.dumps(manifest))
    with open(out / "alexnet.onnx", "ab") as f:
        f.write(b"\0")  # the user's file, whatever its bytes: the one to check
    before = (out / "alexnet.onnx").read_bytes()
    stale: list[str] = []
    exported: list[ArtifactFormat] = []
    bundle = prepare_bundle(
        small_model, out, [ArtifactFormat.ONNX], keep_stale=True,
        on_stale=lambda fmt, path, why: stale.append(why), on_export=exported.append,
    )  # fmt: skip
    assert bundle.artifacts[ArtifactFormat.ONNX] == out / "alexnet.onnx" and not exported
    assert (out / "alexnet.onnx").read_bytes() == before
    assert stale == [f"made with torch 2.13.0, here {torch.__version__}"]
    prepare_bundle(small_model, out, [ArtifactFormat.ONNX], on_export=exported.append)
    assert exported == [ArtifactFormat.ONNX]  # bench and export make a fresh one


def test_a_variant_is_never_made_from_a_changed_onnx_file(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    out = tmp_path / "mine"
    mine = load_model(seed=1, **SMALL)
    ensure_artifacts(mine, out, [ArtifactFormat.ONNX])
    changed = onnx.load(str(out / "alexnet.onnx"))  # another model's file, kept as it is
    for init in changed.graph.initializer:
        if len(init.dims) >= 2:  # the weight matrices and kernels, not shapes or constants
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, init.name))
    onnx.save(changed, str(out / "alexnet.onnx"))
    _, outcomes = ensure_artifacts(mine, out, [ArtifactFormat.ONNX_FP16], keep_modified=True)
    assert [s.value for _, _, s in outcomes] == ["modified", "exported"]
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)

    def run(name: str) -> np.ndarray:
        sess = ort.InferenceSession(out / name, providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]

    with torch.no_grad():
        want = mine.model(torch.from_numpy(x)).numpy()
    got, theirs = run("alexnet.fp16.onnx"), run("alexnet.onnx")
    # The model's weights, not the changed file's (fp16 is off by ~1e-5 from the logits).
    error, wrong = np.abs(got - want).max(), np.abs(got - theirs).max()
    assert error < 1e-3 and wrong > 10 * error, (error, wrong)
    assert not list(out.glob(".alexnet.*"))  # the fresh parent it was made from is gone


def test_a_folder_without_manifest_names_no_model(tmp_path):
    folder = tmp_path / "mine"
    # A mistyped path made a new folder, the seeded random model was exported and passed.
    with pytest.raises(InputError, match=r"--artifacts .*mine: no such folder: name the model"):
        model_for_artifacts(folder)
    assert not folder.exists()
    folder.mkdir()
    with pytest.raises(InputError, match=r"mine: is empty \(no manifest\.json\)"):
        model_for_artifacts(folder)
    assert model_for_artifacts(folder, seed=0).source.seed == 0  # named: it goes there
    (folder / "model.onnx").write_bytes(b"the user's own")
    with pytest.raises(InputError, match=r"has no manifest\.json, so it names no model"):
        model_for_artifacts(folder)  # verify checked a seeded export beside it and said PASS
    assert model_for_artifacts(folder, seed=3, **SMALL).source.seed == 3  # a model named


@pytest.mark.parametrize("kind", ["seeded", "checkpoint", "weights"])
def test_the_model_options_in_hints_name_the_same_model(kind, tmp_path):
    # The hints of a stale or foreign folder (`alexbench export --out DIR ...`) must name the
    # folder's model: without options export names the default 1000-class seeded model.
    import shlex

    from alexbench.cli.model_args import model_options
    from alexbench.exporters import model_identity

    seeded = load_model(seed=3, normalization=Normalization.CIFAR10, **SMALL)
    if kind == "seeded":
        loaded = seeded
    elif kind == "checkpoint":
        path = save_checkpoint(tmp_path / "c.pt", seeded.model, seeded.meta)
        loaded = load_model(checkpoint=path, image_size=96)  # run at another size than trained
    else:
        torch.save(seeded.model.state_dict(), tmp_path / "w.pth")
        loaded = load_model(weights=tmp_path / "w.pth", image_size=64)
    words = shlex.split(model_options(loaded))
    args = dict(zip(words[::2], words[1::2], strict=True))
    kwargs = {
        "checkpoint": args.get("--checkpoint"),
        "weights": args.get("--weights"),
        "seed": int(args.get("--seed", 0)),
        "num_classes": int(args["--num-classes"]) if "--num-classes" in args else None,
        "image_size": int(args["--image-size"]) if "--image-size" in args else None,
        "normalization": Normalization(args["--normalize"]) if "--normalize" in args else None,
    }
    again = load_model(**kwargs)
    assert model_identity(again.meta, again.weights_sha256) == model_identity(
        loaded.meta, loaded.weights_sha256
    ), model_options(loaded)


def test_a_verify_report_goes_with_the_file_it_checked(tmp_path, small_model):
    """A re-exported file left the folder's verify-report.json saying PASS for bytes no longer
    there; a report that checked other files, or these very bytes, stays."""
    out = tmp_path / "art"
    manifest, _ = ensure_artifacts(small_model, out, [ArtifactFormat.ONNX])
    sha = manifest.artifacts["onnx"].sha256
    report = out / "verify-report.json"

    def reexport(checked: dict[str, str]) -> bool:
        report.write_text(json.dumps({"passed": True, "artifact_sha256": checked}))
        with (out / "alexnet.onnx").open("ab") as f:
            f.write(b"\0")  # modified: export makes it again
        ensure_artifacts(small_model, out, [ArtifactFormat.ONNX])
        return report.exists()

    assert not reexport({"onnx": "0" * 64})  # it checked other bytes
    assert reexport({"torchscript": "0" * 64})  # it did not check this file
    assert reexport({"onnx": sha})  # the export made the very bytes it checked again
    assert Manifest.load(out).artifacts["onnx"].sha256 == sha


def test_a_manifest_field_a_later_version_added_is_not_fatal(small_artifacts: Path, tmp_path):
    """An unknown field in an artifact's record ("unexpected keyword argument 'calibration_dir'")
    made the folder unreadable, with the advice to delete its manifest."""
    doc = json.loads((small_artifacts / "manifest.json").read_text())
    doc["artifacts"]["onnx"]["added_later"] = {"any": "value"}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    manifest = Manifest.load(tmp_path)
    assert (
        manifest is not None
        and manifest.artifacts["onnx"].sha256 == doc["artifacts"]["onnx"]["sha256"]
    )
    del doc["artifacts"]["onnx"]["sha256"]  # a field this version needs is still required
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="unreadable manifest"):
        Manifest.load(tmp_path)


def test_a_run_that_reuses_every_file_leaves_the_manifest_as_it_was(tmp_path, small_model):
    """verify and bench rewrote manifest.json on every run; and its records carry the int8-only
    fields only where set, so versions that refuse unknown fields still read the others."""
    out = tmp_path / "art"
    ensure_artifacts(small_model, out, [ArtifactFormat.ONNX])
    path = out / "manifest.json"
    assert "calibration_dir" not in json.loads(path.read_text())["artifacts"]["onnx"]
    os.utime(path, (1_000_000, 1_000_000))
    ensure_artifacts(small_model, out, [ArtifactFormat.ONNX], keep_modified=True)
    assert path.stat().st_mtime == 1_000_000
