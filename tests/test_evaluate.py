"""Evaluation through runtimes: accuracy, agreement with eager fp32, per-class accuracy,
confusion matrix, and one-line errors for bad inputs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from alexbench.checkpoint import load_model
from alexbench.cli import evaluate as evaluate_cli
from alexbench.devices import Device
from alexbench.errors import DataError
from alexbench.evaluate import CellStatus, evaluate_model
from alexbench.exporters import prepare_bundle
from alexbench.precision import Precision
from alexbench.runtimes import ArtifactFormat, Backend, ModelBundle
from alexbench.training.data import DatasetKind, DataSpec, Split, load_data
from tests.test_data import extract_cifar_subset
from tests.test_train import trained_synthetic

SYNTHETIC = DataSpec(kind=DatasetKind.SYNTHETIC, image_size=64, synthetic_size=480)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_synthetic(tmp_path_factory)


@pytest.fixture(scope="module")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    loaded = load_model(checkpoint=run_dir / "best.pt")
    return prepare_bundle(loaded, tmp_path_factory.mktemp("eval-exports"), [ArtifactFormat.ONNX])


def test_eager_and_onnxruntime_agree_at_fp32(bundle: ModelBundle) -> None:
    data = load_data(SYNTHETIC, (Split.VAL,))
    report = evaluate_model(
        bundle,
        data,
        [Backend.EAGER, Backend.ONNXRUNTIME],
        [Precision.FP32, Precision.BF16],
        Device.CPU,
        batch_size=40,  # several batches, the last one partial
    )
    cells = {(c.backend, c.precision): c for c in report.cells}
    eager, ort = cells[Backend.EAGER, Precision.FP32], cells[Backend.ONNXRUNTIME, Precision.FP32]
    assert eager.status is ort.status is CellStatus.OK
    assert report.samples == 96
    assert ort.agreement == 1.0 and ort.top1 == eager.top1 and ort.top5 == eager.top5
    assert eager.top1 > 0.25  # the trained model beats chance (0.10)
    assert cells[Backend.EAGER, Precision.BF16].status is CellStatus.OK
    unsupported = cells[Backend.ONNXRUNTIME, Precision.BF16]
    assert unsupported.status is CellStatus.UNSUPPORTED and unsupported.reason
    # The confusion matrix and per-class accuracy describe the same predictions as top-1.
    cm = report.confusion
    assert cm.sum() == 96 and cm.trace() / 96 == pytest.approx(eager.top1)
    per_class = [cm[i, i] / cm[i].sum() for i in range(10)]
    assert report.per_class_accuracy == pytest.approx(per_class)


def test_reference_is_added_when_not_requested(bundle: ModelBundle) -> None:
    data = load_data(SYNTHETIC, (Split.VAL,))
    report = evaluate_model(bundle, data, [Backend.ONNXRUNTIME], [Precision.FP32], Device.CPU)
    assert [(c.backend, c.requested) for c in report.cells] == [
        (Backend.EAGER, False),
        (Backend.ONNXRUNTIME, True),
    ]


def test_reference_found_wherever_the_user_lists_it(bundle: ModelBundle) -> None:
    data = load_data(SYNTHETIC, (Split.VAL,))
    report = evaluate_model(
        bundle, data, [Backend.ONNXRUNTIME, Backend.EAGER], [Precision.BF16, Precision.FP32],
        Device.CPU,
    )  # fmt: skip
    cells = {(c.backend, c.precision): c for c in report.cells}
    assert report.cells[0].backend is Backend.ONNXRUNTIME  # the user's order is kept
    eager = cells[Backend.EAGER, Precision.FP32]
    assert eager.requested and eager.agreement == 1.0
    assert report.confusion.trace() / report.samples == pytest.approx(eager.top1)


def test_class_count_mismatch_is_an_error(
    bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = extract_cifar_subset(tmp_path_factory)
    subset = tmp_path / "three"
    subset.mkdir()
    for cls in ("cat", "dog", "frog"):
        (subset / cls).symlink_to(root / "train" / cls, target_is_directory=True)
    data = load_data(DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=subset, image_size=64))
    # The checkpoint names its classes: the folder's are matched by name, and these are not its.
    with pytest.raises(DataError, match="has classes the model does not predict: cat, dog, frog"):
        evaluate_model(bundle, data, [Backend.EAGER], [Precision.FP32], Device.CPU)
    # A model without class names (plain weights, the seeded one) is matched by count.
    unnamed = prepare_bundle(load_model(seed=0, num_classes=10, image_size=64), tmp_path / "e", [])
    with pytest.raises(DataError, match="predicts 10 classes but .* has 3"):
        evaluate_model(unnamed, data, [Backend.EAGER], [Precision.FP32], Device.CPU)


@pytest.fixture(autouse=True)
def _drop_weights(tmp_path: Path):
    yield
    for big in (*tmp_path.rglob("*.pth"), *tmp_path.rglob("*.onnx*"), *tmp_path.rglob("*.pt2")):
        if big.is_file():
            big.unlink()


def _local_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    evaluate_cli.register(app)
    return app


def test_cli_evaluate_writes_tables_plot_and_json(run_dir: Path, tmp_path: Path) -> None:
    # No --dataset: the checkpoint records that it was trained on synthetic data.
    args = ["evaluate", "--checkpoint", str(run_dir / "best.pt")]
    args += ["--backend", "eager,onnxruntime", "--artifacts", str(tmp_path / "exports")]
    args += ["--plot", str(tmp_path / "cm.png"), "--out", str(tmp_path / "eval.json")]
    result = CliRunner().invoke(_local_app(), args)
    assert result.exit_code == 0, result.output
    assert "Dataset: synthetic (the checkpoint's training data" in result.stdout
    assert "Confusion matrix" in result.stdout and "Per-class accuracy" in result.stdout
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["samples"] == 96  # the checkpoint's synthetic size and split seed were reused
    ort = next(c for c in doc["cells"] if c["backend"] == "onnxruntime")
    assert ort["status"] == "ok" and ort["agreement"] == 1.0
    assert f"artifacts: {tmp_path / 'exports'}" in " ".join(result.stdout.split())
    # eager alone reads no exported file: no folder is named (nor made)
    eager = ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--backend", "eager"]
    result = CliRunner().invoke(_local_app(), [*eager, "--artifacts", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert "artifacts:" not in result.stdout and not (tmp_path / "x").exists()


def test_cli_evaluate_plain_state_dict(run_dir: Path, tmp_path: Path) -> None:
    weights = tmp_path / "plain.pth"
    torch.save(load_model(checkpoint=run_dir / "best.pt").model.state_dict(), weights)
    args = ["evaluate", "--weights", str(weights), "--image-size", "64", "--normalize", "none"]
    args += [
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "480",
        "--out",
        str(tmp_path / "e.json"),
    ]
    result = CliRunner().invoke(_local_app(), [*args, "--artifacts", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["model"]["meta"]["num_classes"] == 10  # inferred from the state dict
    assert doc["model"]["meta"]["mean"] == [0.0, 0.0, 0.0]
    # torchvision's evaluation crop for plain weights: 64 / 0.875 = 73
    assert doc["data"].endswith("resize 73, centre crop 64")


def test_plain_weights_on_an_image_folder_say_classes_are_matched_by_order(
    run_dir: Path, tmp_path: Path, cifar_subset: Path
) -> None:
    weights = tmp_path / "plain.pth"
    torch.save(load_model(checkpoint=run_dir / "best.pt").model.state_dict(), weights)
    args = ["evaluate", "--weights", str(weights), "--image-size", "64", "--backend", "eager",
            "--precision", "fp32", "--dataset", "imagefolder", "--data-dir", str(cifar_subset),
            "--artifacts", str(tmp_path / "x")]  # fmt: skip
    result = CliRunner().invoke(_local_app(), args)
    assert result.exit_code == 0, result.output
    assert "output i is scored as the i-th class folder in sorted order (airplane," in (
        " ".join(result.stderr.split())
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "imagefolder", "--data-dir", "{tmp}/nowhere"], "no such directory"),
        (["--dataset", "imagefolder", "--data-dir", "{tmp}/f.txt"], "a file, not a directory"),
        (["--dataset", "synthetic", "--image-size", "32"], "below the minimum of 64"),
        (["--dataset", "synthetic", "--num-classes", "5"], "10 classes, but 5"),
        (["--dataset", "synthetic", "--crop-fraction", "0"], "--crop-fraction must be in [0.2, 1]"),
    ],
)
def test_cli_evaluate_bad_inputs_fail_in_one_line(
    run_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    args = ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--artifacts", str(tmp_path)]
    (tmp_path / "f.txt").write_text("not a folder")
    result = CliRunner().invoke(_local_app(), args + [e.format(tmp=tmp_path) for e in extra])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_cli_evaluate_needs_a_model() -> None:
    result = CliRunner().invoke(_local_app(), ["evaluate", "--dataset", "synthetic"])
    assert result.exit_code == 2 and "--checkpoint" in result.stderr


def test_cli_evaluate_exits_4_when_no_requested_cell_ran(run_dir: Path, tmp_path: Path) -> None:
    # onnxruntime has no bf16 variant: the only requested cell is unsupported, nothing is scored.
    args = ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--dataset", "synthetic"]
    args += ["--backend", "onnxruntime", "--precision", "bf16"]
    result = CliRunner().invoke(_local_app(), [*args, "--artifacts", str(tmp_path / "x")])
    assert result.exit_code == 4, result.output
    assert "nothing was evaluated" in result.stderr


def test_cli_evaluate_exits_4_when_a_precision_asked_for_ran_nowhere(
    run_dir: Path, tmp_path: Path
) -> None:
    # fp32 is scored, bf16 (no bf16 ONNX variant) nowhere: not a pass.
    args = ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--dataset", "synthetic"]
    args += ["--backend", "onnxruntime", "--precision", "fp32,bf16", "--out", str(tmp_path / "e")]
    result = CliRunner().invoke(_local_app(), [*args, "--artifacts", str(tmp_path / "x")])
    assert result.exit_code == 4, result.output
    said = " ".join(result.stderr.split())
    assert "nothing was evaluated at --precision bf16, though asked for" in said, said
    assert json.loads((tmp_path / "e").read_text())["asked_not_evaluated"] == ["--precision bf16"]


def test_which_share_of_a_folder_is_scored(tmp_path: Path, monkeypatch) -> None:
    """The folder a checkpoint trained on: its held-out share; any other folder: every image;
    a relative record of an older checkpoint is read from the working directory."""
    from alexbench.cli.evaluate import _val_fraction

    trained = {"data_dir": str(tmp_path / "cifar"), "val_fraction": 0.2}
    assert _val_fraction(None, tmp_path / "cifar", trained, Split.VAL) == 0.2
    assert _val_fraction(None, tmp_path / "test-set", trained, Split.VAL) == 0.0
    assert _val_fraction(0.3, tmp_path / "test-set", trained, Split.VAL) == 0.3
    assert _val_fraction(None, tmp_path / "test-set", trained, Split.TRAIN) == 0.2
    assert _val_fraction(None, tmp_path / "x", {}, Split.VAL) == 0.0
    monkeypatch.chdir(tmp_path)
    old = {"data_dir": "cifar", "val_fraction": 0.1}
    assert _val_fraction(None, Path("cifar"), old, Split.VAL) == 0.1
    # DIR and DIR/train are one folder: scoring "every image" of DIR/train scored the images
    # the model trained on (85% where its held-out share gave 25%)
    (tmp_path / "cifar" / "train").mkdir(parents=True)
    assert _val_fraction(None, tmp_path / "cifar" / "train", trained, Split.VAL) == 0.2
    inside = {"data_dir": str(tmp_path / "cifar" / "train"), "val_fraction": 0.2}
    assert _val_fraction(None, tmp_path / "cifar", inside, Split.VAL) == 0.2


def test_another_split_of_the_runs_folder_is_not_called_held_out(tmp_path: Path) -> None:
    from alexbench.cli.evaluate import held_out_mismatch

    trained = {"data_dir": str(tmp_path), "val_fraction": 0.1, "split_seed": 0}
    spec = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path, image_size=64)
    assert held_out_mismatch(spec, trained) is None
    other_seed = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path, image_size=64,
                          split_seed=1)  # fmt: skip
    assert "include ones the model trained on" in (held_out_mismatch(other_seed, trained) or "")
    # A smaller share with the run's seed scores a subset of its held-out images: no warning
    # (it said "include ones the model trained on"); a larger one does include some.
    for fraction, warned in ((0.05, False), (0.1, False), (0.2, True)):
        share = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path, image_size=64,
                         val_fraction=fraction)  # fmt: skip
        assert (held_out_mismatch(share, trained) is not None) is warned, fraction
    from alexbench.training.data import SplitMethod, holdout

    samples = [(f"/d/c{i % 3}/{i}.jpg", i % 3) for i in range(500)]
    for method in SplitMethod:  # the reason: a subset, split by path hash or by shuffle
        small = holdout(samples, 0.05, 0, method, "/d")[1]
        assert len(small) > 0 and set(small) <= set(holdout(samples, 0.1, 0, method, "/d")[1])
    other_dir = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path / "x", image_size=64,
                         val_fraction=0.5)  # fmt: skip
    assert held_out_mismatch(other_dir, trained) is None  # another folder: a test set
    whole = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path, image_size=64,
                     val_fraction=0.0)  # fmt: skip
    assert "--val-fraction 0 scores every image of" in (held_out_mismatch(whole, trained) or "")


def test_a_run_that_validated_on_val_held_nothing_out_of_its_train_folder(tmp_path: Path) -> None:
    from alexbench.cli.evaluate import _val_fraction, held_out_mismatch

    (tmp_path / "ds" / "train").mkdir(parents=True)
    (tmp_path / "ds" / "val").mkdir()
    trained = {"data_dir": str(tmp_path / "ds"), "val_fraction": 0.1, "split_seed": 0}
    # ds/train is all training images: scored whole, and said to be, not "held out" by hash
    assert _val_fraction(None, tmp_path / "ds" / "train", trained, Split.VAL) == 0.0
    train_spec = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path / "ds" / "train",
                          image_size=64, val_fraction=0.0)  # fmt: skip
    assert "the folder the model trained on" in (held_out_mismatch(train_spec, trained) or "")
    # ds itself: its val/ is scored whole whatever the seed
    seeded = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path / "ds", image_size=64,
                      split_seed=7)  # fmt: skip
    assert held_out_mismatch(seeded, trained) is None


def test_cli_evaluate_scores_both_int8_models_calibrated_on_calib_data(
    run_dir: Path, tmp_path: Path, cifar_subset: Path
) -> None:
    args = ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--json"]
    # int8 only: the fp32 cells are other tests' (compile's would add a compilation here).
    args += ["--backend", "onnxruntime,compile", "--precision", "int8"]
    args += ["--artifacts", str(tmp_path / "exports")]
    result = CliRunner().invoke(_local_app(), [*args, "--calib-data", str(cifar_subset)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cells = {(c["backend"], c["precision"]): c for c in doc["cells"]}
    assert str(cifar_subset) in doc["int8_calibration"]["onnx-int8"]  # what int8 saw
    # Which bytes were scored: the file's own hash, whatever its manifest says.
    scored = Path(doc["artifacts"]["onnx-int8"])
    assert scored.is_file() and scored.is_relative_to(tmp_path / "exports")
    assert doc["artifact_sha256"]["onnx-int8"] == hashlib.sha256(scored.read_bytes()).hexdigest()
    pt2e = importlib.util.find_spec("torchao") is not None  # the GPU image has none
    for backend in ("onnxruntime", "compile") if pt2e else ("onnxruntime",):
        int8 = cells[backend, "int8"]
        assert int8["status"] == "ok", int8
        assert int8["agreement"] > 0.5  # the same model, quantised: mostly the same answers
    if not pt2e:
        assert "needs torchao" in cells["compile", "int8"]["reason"]
    # Without calibration images the int8 files made above are scored as they are (the
    # images are needed to make one, not to score it)...
    result = CliRunner().invoke(_local_app(), args)
    again = {(c["backend"], c["precision"]): c for c in json.loads(result.stdout)["cells"]}
    for backend in ("onnxruntime", "compile") if pt2e else ("onnxruntime",):
        assert again[backend, "int8"]["status"] == "ok"
        assert again[backend, "int8"]["top1"] == cells[backend, "int8"]["top1"]
    # ...and where there are none, the int8 cells say what they need.
    fresh = [a if a != str(tmp_path / "exports") else str(tmp_path / "fresh") for a in args]
    result = CliRunner().invoke(_local_app(), fresh)
    cells = {(c["backend"], c["precision"]): c for c in json.loads(result.stdout)["cells"]}
    assert "--calib-data" in cells["onnxruntime", "int8"]["reason"]
    if pt2e:
        assert "--calib-data" in cells["compile", "int8"]["reason"]


def test_calibration_overlaps_the_scored_images_only_where_it_holds_them(tmp_path: Path) -> None:
    # By folder, DIR/train calibrating while DIR/val was scored was warned about as an overlap.
    from alexbench.cli.evaluate import _scored_inside

    for folder in ("ds/train/cat", "ds/val/cat", "test/cat", "calib"):
        (tmp_path / folder).mkdir(parents=True)
    val = [str(tmp_path / "ds" / "val" / "cat" / f"{i}.jpg") for i in range(3)]
    held_out = [str(tmp_path / "ds" / "train" / "cat" / "0.jpg")]  # a hold-out of DIR/train
    for f in [*val, *held_out, str(tmp_path / "ds" / "train" / "cat" / "1.jpg")]:
        Path(f).write_bytes(b"jpeg")
    assert _scored_inside(tmp_path / "ds" / "train", val) == 0
    assert _scored_inside(tmp_path / "ds", val) == 3
    assert _scored_inside(tmp_path / "ds" / "train", held_out) == 1
    assert _scored_inside(tmp_path / "ds" / "tr", held_out) == 0  # a prefix is not a parent
    assert _scored_inside(tmp_path / "test", val + held_out) == 0
    (tmp_path / "link").symlink_to(tmp_path / "ds" / "val")  # the same folder, another path
    assert _scored_inside(tmp_path / "link", val) == 3
    # Calibration reads linked folders and files too: a folder of links to scored images.
    (tmp_path / "calib" / "v").symlink_to(tmp_path / "ds" / "val")
    (tmp_path / "calib" / "a.jpg").symlink_to(held_out[0])
    assert _scored_inside(tmp_path / "calib", val + held_out) == 4


def test_left_out_images_empty_classes_and_few_classes_are_reported_as_such(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import shutil

    cifar = extract_cifar_subset(tmp_path_factory) / "train"
    root = tmp_path / "three"
    for name in ("cat", "dog"):
        shutil.copytree(cifar / name, root / name)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "ship").mkdir()
    (root / "ship" / "only.jpg").write_bytes(b"neither")  # a class with no readable image
    spec = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=root, image_size=64, val_fraction=0.0)
    data = load_data(spec, (Split.VAL,))  # the whole folder, as evaluate scores a test set
    assert len(data.skipped) == 2 and "2 unreadable left out" in data.description
    loaded = load_model(seed=0, num_classes=3, image_size=64)
    bundle = prepare_bundle(loaded, tmp_path / "exports", [])
    report = evaluate_model(bundle, data, [Backend.EAGER], [Precision.FP32], Device.CPU)
    doc = report.to_dict()
    assert doc["skipped_images"] == 2  # left out at load time count too, not only streamed ones
    assert doc["samples"] == 40
    assert doc["per_class_accuracy"]["ship"] is None  # no images: no accuracy, not 0%
    assert all(isinstance(doc["per_class_accuracy"][c], float) for c in ("cat", "dog"))
    (cell,) = report.cells
    assert cell.top1 is not None and cell.top5 is None  # 3 classes: top-5 would always be 100%


def test_a_test_set_with_some_of_the_models_classes_is_scored_by_name(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import shutil

    from alexbench.checkpoint import ModelMeta, save_checkpoint

    names = ["airplane", "automobile", "bird", "cat"]
    ckpt = tmp_path / "four.pt"
    model = load_model(seed=1, num_classes=4, image_size=64).model
    save_checkpoint(ckpt, model, ModelMeta(num_classes=4, image_size=64, class_names=names))
    cifar = extract_cifar_subset(tmp_path_factory) / "train"
    for name in ("bird", "cat"):  # two of the four, which sort as labels 0 and 1 in the folder
        shutil.copytree(cifar / name, tmp_path / "test" / name)
    spec = DataSpec(
        kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path / "test", image_size=64, val_fraction=0.0
    )
    data = load_data(spec, (Split.VAL,))
    bundle = prepare_bundle(load_model(checkpoint=ckpt), tmp_path / "exports", [])
    report = evaluate_model(bundle, data, [Backend.EAGER], [Precision.FP32], Device.CPU)
    assert report.class_names == names and report.confusion.shape == (4, 4)
    assert report.confusion.sum(axis=1).tolist() == [0, 0, 20, 20]  # mapped by name, not index
    assert report.per_class_accuracy[:2] == [None, None]
    (tmp_path / "test" / "ship").mkdir()
    shutil.copy(cifar / "ship" / "0000.jpg", tmp_path / "test" / "ship")
    with pytest.raises(DataError, match="has classes the model does not predict: ship"):
        evaluate_model(bundle, load_data(spec, (Split.VAL,)), [Backend.EAGER], [], Device.CPU)


def test_a_val_folder_beside_train_is_matched_to_a_named_model_by_its_own_classes(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import shutil

    from alexbench.checkpoint import ModelMeta, save_checkpoint

    names = ["airplane", "automobile", "bird", "cat"]
    ckpt = tmp_path / "four.pt"
    model = load_model(seed=1, num_classes=4, image_size=64).model
    save_checkpoint(ckpt, model, ModelMeta(num_classes=4, image_size=64, class_names=names))
    cifar = extract_cifar_subset(tmp_path_factory) / "train"
    for split, classes in (("train", ("bird", "frog")), ("val", ("automobile", "bird"))):
        for name in classes:  # frog: not the model's, and not scored; automobile: not in train/
            shutil.copytree(cifar / name, tmp_path / "ds" / split / name)
    spec = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path / "ds", image_size=64)
    data = load_data(spec, (Split.VAL,), by_name=True)
    bundle = prepare_bundle(load_model(checkpoint=ckpt), tmp_path / "exports", [])
    report = evaluate_model(bundle, data, [Backend.EAGER], [Precision.FP32], Device.CPU)
    assert report.confusion.sum(axis=1).tolist() == [0, 20, 20, 0]
    # A model without names has output i for train/'s i-th folder: val/ must number alike.
    with pytest.raises(DataError, match="classes not in .*train: automobile"):
        load_data(spec, (Split.VAL,))


def test_imbalanced_classes_get_a_balanced_top1() -> None:
    import io

    import numpy as np
    from rich.console import Console

    from alexbench.devices import Device
    from alexbench.evaluate import EvalReport
    from alexbench.report import render_evaluation

    # 10 images of a, all right; 2 of b, both wrong: top-1 83%, each class once 50%.
    confusion = np.array([[10, 0], [2, 0]])
    rep = EvalReport(["a", "b"], "val", 12, Device.CPU, [], [1.0, 0.0], confusion)
    assert rep.balanced_top1 == 0.5 and rep.to_dict()["balanced_top1"] == 0.5
    out = io.StringIO()
    render_evaluation(Console(file=out, width=150), rep)
    assert "Classes are imbalanced (2-10 images)" in out.getvalue()
    assert "balanced top-1 (each class once) 50.00%" in out.getvalue()


def test_hold_out_options_on_a_folder_with_its_own_val_split_are_said_to_be_ignored(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import shutil

    from alexbench.checkpoint import ModelMeta, save_checkpoint

    cifar = extract_cifar_subset(tmp_path_factory) / "train"
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            shutil.copytree(cifar / name, tmp_path / "ds" / split / name)
    ckpt = tmp_path / "two.pt"
    model = load_model(seed=1, num_classes=2, image_size=64).model
    save_checkpoint(
        ckpt, model, ModelMeta(num_classes=2, image_size=64, class_names=["cat", "dog"])
    )
    args = ["evaluate", "--checkpoint", str(ckpt), "--dataset", "imagefolder"]
    args += ["--data-dir", str(tmp_path / "ds"), "--backend", "eager"]
    args += ["--artifacts", str(tmp_path / "exports"), "--val-fraction", "0.3"]
    result = CliRunner().invoke(_local_app(), args)
    assert result.exit_code == 0, result.output
    assert "--val-fraction ignored: " in result.stderr and "has val/, which is scored whole" in (
        result.stderr
    )


def test_a_cell_whose_logits_are_not_finite_is_an_error_not_an_accuracy(tmp_path: Path) -> None:
    loaded = load_model(seed=0, num_classes=10, image_size=64)
    with torch.no_grad():  # logits far beyond fp16's range (65504); fine in fp32
        loaded.model.classifier[6].weight.mul_(1e8)
    bundle = prepare_bundle(loaded, tmp_path / "exports", [])
    data = load_data(SYNTHETIC, (Split.VAL,))
    report = evaluate_model(bundle, data, [Backend.EAGER], [Precision.FP32, Precision.FP16],
                            Device.CPU)  # fmt: skip
    cells = {c.precision: c for c in report.cells}
    assert cells[Precision.FP32].status is CellStatus.OK
    fp16 = cells[Precision.FP16]
    assert fp16.status is CellStatus.ERROR and "not finite" in (fp16.reason or "")
    assert fp16.top1 is None  # 22% was shown as "ok" for a cell with 67% inf/NaN logits


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("split_method", "bogus", "'provenance.data.split_method' is 'bogus', expected one of"),
        ("val_fraction", "x", "'provenance.data.val_fraction' is 'x', expected a number in"),
        ("data_dir", 5, "'provenance.data.data_dir' is 5, expected a path"),
        ("kind", ["cifar10"], "'provenance.data.kind' is ['cifar10'], expected one of"),
    ],
)
def test_a_checkpoint_with_an_odd_data_record_is_refused_in_one_line(
    run_dir: Path, tmp_path: Path, field: str, value: object, message: str
) -> None:
    # Each gave "unexpected ValueError/TypeError" (exit 3) deep in the split.
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    ckpt["meta"]["provenance"]["data"][field] = value
    torch.save(ckpt, tmp_path / "edited.pt")
    args = ["evaluate", "--checkpoint", str(tmp_path / "edited.pt"), "--artifacts", str(tmp_path)]
    result = CliRunner().invoke(_local_app(), args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_an_int8_file_calibrated_on_the_scored_images_is_warned_about_from_its_manifest(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The warning came only with --calib-data given again: an int8 file made earlier on the
    scored images was scored on them without a word. Its manifest records the folder, absolute
    (a relative one named another folder from another working directory)."""
    import shutil

    from alexbench.checkpoint import ModelMeta, save_checkpoint
    from alexbench.exporters.manifest import Manifest

    cifar = extract_cifar_subset(tmp_path_factory) / "train"
    for name in ("cat", "dog"):
        shutil.copytree(cifar / name, tmp_path / "ds" / name)
    ckpt = tmp_path / "two.pt"
    model = load_model(seed=1, num_classes=2, image_size=64).model
    meta = ModelMeta(num_classes=2, image_size=64, class_names=["cat", "dog"])
    save_checkpoint(ckpt, model, meta)
    args = ["evaluate", "--checkpoint", str(ckpt), "--dataset", "imagefolder"]
    args += ["--data-dir", str(tmp_path / "ds"), "--backend", "onnxruntime", "--precision", "int8"]
    args += ["--artifacts", str(tmp_path / "exports")]
    result = CliRunner().invoke(_local_app(), [*args, "--calib-data", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "are inside --calib-data" in result.stderr
    record = Manifest.load(tmp_path / "exports").artifacts["onnx-int8"]
    assert record.calibration_dir == str(tmp_path / "ds")
    assert f"images from {tmp_path / 'ds'}" in record.calibration
    result = CliRunner().invoke(_local_app(), args)  # the same file, scored as it is
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    assert f"inside {tmp_path / 'ds'}, which onnx-int8 was calibrated on" in stderr


def test_image_inputs_name_their_folder_absolute(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their description goes into manifests and reports: "32 images from sub" named another
    folder (or none) when read from another working directory."""
    from alexbench.checkpoint import ModelMeta
    from alexbench.inputs import image_inputs

    root = extract_cifar_subset(tmp_path_factory)
    monkeypatch.chdir(root)
    inputs = image_inputs(Path("train"), 4, ModelMeta(num_classes=10, image_size=32))
    assert inputs.description.startswith(f"4 images from {root / 'train'}")
    assert inputs.directory == str(root / "train")


def test_class_names_match_whatever_their_unicode_form(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A folder unpacked on macOS spells "äutö" decomposed (NFD): it was refused as a class the
    model does not predict, beside a composed name that printed the same."""
    import shutil
    import unicodedata

    from alexbench.checkpoint import ModelMeta, save_checkpoint

    composed = ["bird", unicodedata.normalize("NFC", "äutö")]
    ckpt = tmp_path / "two.pt"
    model = load_model(seed=1, num_classes=2, image_size=64).model
    save_checkpoint(ckpt, model, ModelMeta(num_classes=2, image_size=64, class_names=composed))
    cifar = extract_cifar_subset(tmp_path_factory) / "train"
    shutil.copytree(cifar / "bird", tmp_path / "test" / "bird")
    shutil.copytree(cifar / "cat", tmp_path / "test" / unicodedata.normalize("NFD", "äutö"))
    spec = DataSpec(
        kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path / "test", image_size=64, val_fraction=0.0
    )
    bundle = prepare_bundle(load_model(checkpoint=ckpt), tmp_path / "exports", [])
    data = load_data(spec, (Split.VAL,))
    report = evaluate_model(bundle, data, [Backend.EAGER], [Precision.FP32], Device.CPU)
    assert report.confusion.sum(axis=1).tolist() == [20, 20]


def test_a_class_name_the_plot_font_lacks_is_one_warning_line(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """matplotlib's "Glyph 40165 missing from font" came out as Python's two-line UserWarning
    with a source line of plots.py."""
    import shutil

    from alexbench.checkpoint import ModelMeta, save_checkpoint

    ckpt = tmp_path / "two.pt"
    model = load_model(seed=1, num_classes=2, image_size=64).model
    save_checkpoint(
        ckpt, model, ModelMeta(num_classes=2, image_size=64, class_names=["bird", "鳥"])
    )
    cifar = extract_cifar_subset(tmp_path_factory) / "train"
    shutil.copytree(cifar / "bird", tmp_path / "test" / "bird")
    shutil.copytree(cifar / "cat", tmp_path / "test" / "鳥")
    args = ["evaluate", "--checkpoint", str(ckpt), "--dataset", "imagefolder", "--backend", "eager"]
    args += ["--data-dir", str(tmp_path / "test"), "--artifacts", str(tmp_path / "exports")]
    result = CliRunner().invoke(_local_app(), [*args, "--plot", str(tmp_path / "cm.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cm.png").is_file()
    lines = [line for line in result.stderr.splitlines() if "font" in line]
    assert lines == ["warning: a character of a plot's labels is not in the font: drawn as a box"]
    assert "UserWarning" not in result.stderr


def test_a_corrupt_or_wrong_artifact_is_its_cell_s_error_not_the_run_s(
    run_dir: Path, tmp_path: Path
) -> None:
    """A truncated ONNX file ended evaluate with "unexpected InvalidProtobuf" (exit 3), every
    cell lost; a file that tells its consumers other preprocessing than the model's was scored
    as ok (verify and bench fail it)."""
    import onnx

    loaded = load_model(checkpoint=run_dir / "best.pt")
    bundle = prepare_bundle(loaded, tmp_path / "exports", [ArtifactFormat.ONNX])
    path = bundle.artifacts[ArtifactFormat.ONNX]
    data = load_data(SYNTHETIC, (Split.VAL,))
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "alexbench.mean":
            prop.value = "[0.5, 0.5, 0.5]"
    onnx.save(model, str(path))
    report = evaluate_model(bundle, data, [Backend.ONNXRUNTIME], [Precision.FP32], Device.CPU)
    cells = {c.backend: c for c in report.cells}
    assert cells[Backend.EAGER].status is CellStatus.OK
    onnx_cell = cells[Backend.ONNXRUNTIME]
    assert onnx_cell.status is CellStatus.ERROR and "alexbench.mean" in (onnx_cell.reason or "")
    path.write_bytes(path.read_bytes()[:1000])
    report = evaluate_model(bundle, data, [Backend.ONNXRUNTIME], [Precision.FP32], Device.CPU)
    onnx_cell = {c.backend: c for c in report.cells}[Backend.ONNXRUNTIME]
    assert onnx_cell.status is CellStatus.ERROR and onnx_cell.top1 is None
    assert onnx_cell.reason and "\n" not in onnx_cell.reason
