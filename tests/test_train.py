"""Training: the loss falls, runs are reproducible, resume equals an uninterrupted run, DDP
replicas agree, and bad inputs fail in one line. Tiny synthetic sets at 64 px keep it fast."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from alexbench.checkpoint import load_model, safe_load
from alexbench.cli import train as train_cli
from alexbench.errors import AlexbenchError, CheckpointError, DataError, InputError
from alexbench.fileio import folder_lock
from alexbench.model import build_alexnet, state_dict_sha256
from alexbench.plots import plot_training_curves
from alexbench.precision import Precision
from alexbench.training.config import InitKind, OptimizerKind, ScheduleKind, TrainConfig
from alexbench.training.data import DatasetKind, DataSpec
from alexbench.training.parts import init_weights, make_optimizer, make_scheduler
from alexbench.training.train import TrainingInterrupted, TrainReporter, fit
from tests.test_data import CIFAR_CLASSES, extract_cifar_subset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path: Path):
    """Checkpoints are ~0.7 GB a run (AlexNet's 57 M parameters plus momentum); pytest keeps
    the last three sessions' temp dirs, so remove them once a test is done with them."""
    yield
    for ckpt in tmp_path.rglob("*.pt"):
        ckpt.unlink()


def tiny_config(out: Path, **kw: object) -> TrainConfig:
    data = DataSpec(kind=DatasetKind.SYNTHETIC, image_size=64, synthetic_size=96)
    base: dict[str, object] = dict(data=data, epochs=2, batch_size=16, steps_per_epoch=3, out=out)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def trained_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run long enough to learn something (2 epochs x 15 steps); trained once per session."""
    out = tmp_path_factory.getbasetemp() / "synthetic-run"
    if not (out / "history.json").is_file():
        data = DataSpec(kind=DatasetKind.SYNTHETIC, image_size=64, synthetic_size=480)
        config = TrainConfig(
            data=data, epochs=2, batch_size=32, optimizer=OptimizerKind.ADAM, lr=1e-4, out=out
        )
        fit(config)
    return out


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_synthetic(tmp_path_factory)


def test_synthetic_loss_falls_and_run_files_are_complete(synthetic_run: Path) -> None:
    history = json.loads((synthetic_run / "history.json").read_text())
    first, last = history["epochs"][0], history["epochs"][-1]
    assert last["train_loss"] < first["train_loss"] - 0.1
    assert last["val_top1"] > 0.25  # chance is 0.10
    assert len(history["replica_sha256"]) == 1
    csv_lines = (synthetic_run / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss") and len(csv_lines) == 3
    assert not (synthetic_run / "curves.png").exists()  # fit returns data; the CLI draws
    best = load_model(checkpoint=synthetic_run / "best.pt")  # weights_only=True
    meta = best.meta
    assert (meta.num_classes, meta.image_size, meta.class_names[0]) == (10, 64, "class0")
    assert meta.provenance["seed"] == 0 and meta.provenance["versions"]["torch"]
    best_epoch = max(history["epochs"], key=lambda r: r["val_top1"])["epoch"]
    assert meta.provenance["epoch"] == best_epoch
    last_ckpt = safe_load(synthetic_run / "last.pt")
    assert last_ckpt["epoch"] == 2 and "optimizer" in last_ckpt["train_state"]
    assert (
        state_dict_sha256(load_model(checkpoint=synthetic_run / "last.pt").model)
        == (history["replica_sha256"][0])
    )


def test_same_seed_same_curve_other_seed_differs(tmp_path: Path) -> None:
    runs = [
        fit(tiny_config(tmp_path / name, epochs=1, seed=seed))
        for name, seed in (("a", 7), ("b", 7), ("c", 8))
    ]
    assert runs[0].records[0].train_loss == runs[1].records[0].train_loss
    assert runs[0].replica_sha256 == runs[1].replica_sha256
    assert runs[0].replica_sha256 != runs[2].replica_sha256


class _InterruptAt(TrainReporter):
    """Simulates Ctrl-C in the middle of an epoch."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.current = epoch, step, 0

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.current = epoch

    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None:
        if (self.current, step) == (self.epoch, self.step):
            raise KeyboardInterrupt


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    straight = fit(tiny_config(tmp_path / "straight"))
    out = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted, match="last complete checkpoint") as info:
        fit(tiny_config(out), reporter=_InterruptAt(epoch=2, step=2))
    assert info.value.exit_code == 130
    assert safe_load(out / "last.pt")["epoch"] == 1  # the epoch-1 checkpoint survived intact
    # Resume under a different seed and learning rate: the checkpoint's recipe must win.
    resumed = fit(tiny_config(out, seed=99, lr=0.5), resume=out / "last.pt")
    assert resumed.replica_sha256 == straight.replica_sha256
    a = safe_load(tmp_path / "straight" / "last.pt")
    b = safe_load(out / "last.pt")
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    assert [r.train_loss for r in resumed.records] == [r.train_loss for r in straight.records]


def test_a_run_resumed_into_another_folder_takes_its_best_checkpoint_along(
    tmp_path: Path,
) -> None:
    run, moved = tmp_path / "run", tmp_path / "moved"
    with pytest.raises(TrainingInterrupted):
        fit(tiny_config(run, lr=1e-12), reporter=_InterruptAt(epoch=2, step=2))
    # Stopped before its first save, a run resumed elsewhere names the file that continues it.
    with pytest.raises(TrainingInterrupted, match=f"checkpoint: {run / 'last.pt'} \\(epoch 1\\)"):
        fit(tiny_config(moved), resume=run / "last.pt", reporter=_InterruptAt(epoch=2, step=1))
    # lr 1e-12: epoch 2 scores as epoch 1 did, so it is not a new best and writes no best.pt.
    result = fit(tiny_config(moved), resume=run / "last.pt")
    assert not result.records[1].best
    assert (moved / "best.pt").read_bytes() == (run / "best.pt").read_bytes()
    assert safe_load(moved / "last.pt")["epoch"] == 2
    (run / "best.pt").unlink()
    with pytest.raises(InputError, match="best.pt: missing, so the run's best checkpoint"):
        fit(tiny_config(tmp_path / "third"), resume=run / "last.pt")


def test_a_diverged_run_stops_and_saves_nothing_of_its_nan_epoch(tmp_path: Path) -> None:
    with pytest.raises(AlexbenchError, match=r"training diverged in epoch 1: .*NaN/inf"):
        fit(tiny_config(tmp_path / "run", epochs=1, lr=1e6))
    assert not list((tmp_path / "run").glob("*.pt"))


def test_resume_keeps_the_recorded_data_location_unless_moved() -> None:
    data = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=Path("/data/cifar"), image_size=64)
    recipe = TrainConfig(data=data, epochs=5, seed=3).recipe()
    here = TrainConfig(out=Path("elsewhere"), epochs=1)  # CLI defaults; only `out` applies
    resumed = here.resumed_with(recipe)
    assert (resumed.data.data_dir, resumed.epochs, resumed.seed) == (Path("/data/cifar"), 5, 3)
    assert resumed.out == Path("elsewhere") and resumed.data.image_size == 64
    assert here.resumed_with(recipe, Path("/mnt/cifar")).data.data_dir == Path("/mnt/cifar")
    # recorded absolute, as a new run records it, so evaluate finds it from anywhere
    assert here.resumed_with(recipe, Path("rel")).data.data_dir == Path("rel").resolve()
    # A streamed run resumes streamed (in memory it draws from torch's generator otherwise,
    # and did not continue exactly: an outside audit) unless a limit is given anew.
    streamed = TrainConfig(data=replace(data, cache_limit_bytes=0), epochs=5).recipe()
    assert here.data.cache_limit_bytes > 0
    assert here.resumed_with(streamed).data.cache_limit_bytes == 0
    assert here.resumed_with(streamed, None, 7).data.cache_limit_bytes == 7


def test_a_resume_on_changed_data_is_refused_and_keeps_its_normalisation(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root, tree = extract_cifar_subset(tmp_path_factory), tmp_path / "d"
    for cls in ("cat", "dog", "ship"):
        shutil.copytree(root / "train" / cls, tree / "train" / cls)
    data = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tree, image_size=64, val_fraction=0.3)
    config = TrainConfig(data=data, epochs=3, batch_size=8, steps_per_epoch=1, out=tmp_path / "r")
    with pytest.raises(TrainingInterrupted):
        fit(config, reporter=_InterruptAt(epoch=2, step=1))
    last = tmp_path / "r" / "last.pt"
    started = safe_load(last)
    assert started["data_fingerprint"]["val"] + started["data_fingerprint"]["train"] == 60
    # streamed now (--cache-limit-gb 0): ImageNet statistics would replace the measured ones
    streamed = replace(config, data=replace(data, cache_limit_bytes=0), workers=0)
    shutil.copy(tree / "train" / "cat" / sorted(os.listdir(tree / "train" / "cat"))[0],
                tree / "train" / "cat" / "zz-new.jpg")  # fmt: skip
    with pytest.raises(DataError, match="training data changed since this run started"):
        fit(config, resume=last)
    (tree / "train" / "cat" / "zz-new.jpg").unlink()
    # The same names holding other images (an outside audit resumed on another subset): the
    # bytes of the sampled training files are compared too.
    cats = sorted((tree / "train" / "cat").iterdir())
    kept = [p.read_bytes() for p in cats]
    for p, other in zip(cats, kept[1:] + kept[:1], strict=True):  # each holds the next's image
        p.write_bytes(other)
    with pytest.raises(DataError, match=r"training images changed .*hold other bytes under the"):
        fit(config, resume=last)
    for p, mine in zip(cats, kept, strict=True):
        p.write_bytes(mine)
    result = fit(streamed, resume=last, resume_cache_limit=0)
    meta = load_model(checkpoint=result.last).meta
    assert meta.mean == tuple(started["meta"]["mean"]) and meta.std == tuple(started["meta"]["std"])
    assert meta.mean != (0.485, 0.456, 0.406)


def test_the_history_records_the_rate_each_epoch_ended_with(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, epochs=2, schedule=ScheduleKind.COSINE, warmup_epochs=1.0)
    result = fit(config)
    # 3 steps an epoch, warm-up over the first 3: the last warm-up step runs at (2+1)/(3+1)
    # of the peak; the scheduler's next rate (the peak itself) was recorded before.
    peak = 0.02
    assert result.records[0].lr == pytest.approx(peak * 3 / 4)
    with pytest.raises(InputError, match=r"--warmup-epochs \(2\) must be less than --epochs"):
        tiny_config(tmp_path, epochs=2, schedule=ScheduleKind.COSINE, warmup_epochs=2.0)
    # a run recorded while warm-up as long as the run was allowed still resumes
    recipe = dict(config.recipe(), warmup_epochs=2.0)
    assert TrainConfig().resumed_with(recipe).warmup_epochs == 2.0


def test_dropout_is_a_training_knob_only_and_round_trips() -> None:
    low, default = build_alexnet(dropout=0.2), build_alexnet()
    rates = [m.p for m in low.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates == [0.2, 0.2]
    assert [m.p for m in default.modules() if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # eval mode: same seed, same weights, same outputs for any rate
        assert torch.equal(low(x), default(x))
    recipe = TrainConfig(dropout=0.2).recipe()
    assert TrainConfig().resumed_with(recipe).dropout == 0.2
    del recipe["dropout"]  # a run recorded before --dropout existed trained with 0.5
    assert TrainConfig(dropout=0.1).resumed_with(recipe).dropout == 0.5


def test_imagefolder_subset_trains(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = extract_cifar_subset(tmp_path_factory)
    data = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=root, image_size=64)
    result = fit(TrainConfig(data=data, epochs=1, batch_size=32, steps_per_epoch=2, out=tmp_path))
    assert len(result.records) == 1 and result.records[0].train_loss > 0
    assert result.records[0].val_top5 is not None  # ten classes
    meta = load_model(checkpoint=result.best).meta
    assert meta.class_names == CIFAR_CLASSES and meta.mean != (0.485, 0.456, 0.406)
    assert 0 <= result.records[0].data_fraction < 1


def test_evaluate_knows_training_images_by_their_bytes_in_a_renamed_copy(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A copied (or moved, or renamed) training folder scored as a test set: its paths are not
    the run's, its bytes are. The checkpoint records a sample of its training images' hashes."""
    from alexbench.cli import app

    root = extract_cifar_subset(tmp_path_factory)
    data = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=root, image_size=64, val_fraction=0.2)
    config = TrainConfig(data=data, epochs=1, batch_size=32, steps_per_epoch=1, out=tmp_path / "r")
    best = fit(config).best
    record = load_model(checkpoint=best).meta.provenance["trained_images"]
    assert 140 <= record["images"] <= 180 and len(record["sample"]) == record["images"]
    copy = tmp_path / "copy"
    for f in (root / "train").rglob("*.jpg"):
        (copy / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, copy / f.parent.name / f"x_{f.name}")
    # Unreadable files are left out of the scoring, so out of the share too (they were counted:
    # "6 of 8 checked", 75%, where all 6 scored images were trained on).
    (copy / "cat" / "garbage.jpg").write_bytes(b"\x00not a jpeg" * 40)
    (copy / "dog" / "garbage.jpg").write_bytes(b"\xff\xd8truncated")
    args = ["evaluate", "--checkpoint", best, "--dataset", "imagefolder", "--backend", "eager",
            "--precision", "fp32", "--out", tmp_path / "e.json"]  # fmt: skip
    r = CliRunner().invoke(app, [str(a) for a in [*args, "--data-dir", copy]])
    assert r.exit_code == 0, r.output
    found = f"{record['images']} of 200 scored images checked are byte-identical"
    assert found in r.stderr and f"about {record['images'] / 200:.0%}" in r.stderr
    assert "NOT the run's held-out split" in json.loads((tmp_path / "e.json").read_text())["data"]
    # The run's own folder: its held-out images only, none of them trained on, no warning.
    r = CliRunner().invoke(app, [str(a) for a in [*args, "--data-dir", root]])
    assert r.exit_code == 0 and "byte-identical" not in r.stderr and "warning" not in r.stderr
    # A copy with a class the model does not predict is refused before any warning about it.
    (copy / "cat").rename(copy / "lynx")
    r = CliRunner().invoke(app, [str(a) for a in [*args, "--data-dir", copy]])
    assert r.exit_code == 2 and "has classes the model does not predict: lynx" in r.stderr
    assert "byte-identical" not in r.stderr and "warning" not in r.stderr, r.stderr


def test_streamed_training_reports_unreadable_images(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root, tree = extract_cifar_subset(tmp_path_factory), tmp_path / "d"
    for cls in ("cat", "dog"):
        shutil.copytree(root / "train" / cls, tree / "train" / cls)
    (tree / "train" / "dog" / "9999.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tree, image_size=64,
                    val_fraction=0.5, cache_limit_bytes=0)  # fmt: skip
    result = fit(TrainConfig(data=data, epochs=1, batch_size=16, out=tmp_path / "r", workers=0))
    assert [r.skipped_images for r in result.records] == [1]
    # two classes: top-5 is always 100%, so it is not recorded (as evaluate), and the curves skip it
    assert result.records[0].val_top5 is None
    history = json.loads((tmp_path / "r" / "history.json").read_text())["epochs"]
    assert history[0]["val_top5"] is None
    plot_training_curves(history, tmp_path / "curves.png")


def test_a_streamed_split_that_reads_no_image_is_refused_as_a_decoded_one_is(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root, tree = extract_cifar_subset(tmp_path_factory), tmp_path / "d"
    for cls in ("cat", "dog"):
        shutil.copytree(root / "train" / cls, tree / "train" / cls)
        (tree / "val" / cls).mkdir(parents=True)
        for i in range(3):
            (tree / "val" / cls / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "r"
    for limit in (0, 2**30):  # streamed, then decoded in memory: the same one-line refusal
        data = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tree, image_size=64,
                        cache_limit_bytes=limit)  # fmt: skip
        config = TrainConfig(data=data, epochs=1, batch_size=16, out=out, workers=0)
        with pytest.raises(DataError, match="none of the val split's 6 images could be read$"):
            fit(config)
        assert not out.exists()  # no epoch recorded as top-1 0% of 0 images, no best.pt


def test_a_run_folder_is_held_for_the_run_and_cleaned_of_a_killed_runs_temporaries(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    busy = pytest.raises(InputError, match="another alexbench train is writing this run")
    with folder_lock(out), busy:  # another process is training into the same folder
        fit(tiny_config(out, epochs=1, steps_per_epoch=1))
    left = [out / ".last.4242-deadbeef.tmp.pt", out / ".history.4242-deadbeef.tmp.json"]
    mine = out / "notes.txt"  # not a temporary of the run's files: kept
    for path in [*left, mine]:
        path.write_bytes(b"x")
    fit(tiny_config(out, epochs=1, steps_per_epoch=1))
    assert not any(p.exists() for p in left) and mine.exists()
    assert not list(out.glob(".*tmp*"))
    # a run that fails before writing anything does not leave the folder it created
    absent = tmp_path / "never"
    data = DataSpec(kind=DatasetKind.IMAGEFOLDER, data_dir=tmp_path / "no-data", image_size=64)
    with pytest.raises(InputError):
        fit(TrainConfig(data=data, epochs=1, out=absent))
    assert not absent.exists()


def test_bad_training_inputs(tmp_path: Path, synthetic_run: Path) -> None:
    with pytest.raises(InputError, match="fp16"):
        fit(tiny_config(tmp_path, precision=Precision.FP16))
    with pytest.raises(InputError, match=r"--dropout must be in \[0, 1\), got 1.5"):
        fit(tiny_config(tmp_path, dropout=1.5))
    with pytest.raises(CheckpointError, match="no training state"):
        fit(tiny_config(tmp_path), resume=synthetic_run / "best.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        fit(tiny_config(tmp_path), resume=tmp_path / "junk.pt")


def test_hand_edited_resume_checkpoints_fail_in_one_line(
    tmp_path: Path, synthetic_run: Path
) -> None:
    real = safe_load(synthetic_run / "last.pt")
    light = {k: v for k, v in real.items() if k not in ("state_dict", "train_state")}
    light["state_dict"] = real["state_dict"]  # only the weights: no optimizer state to save
    light["train_state"] = {k: {} for k in ("optimizer", "scheduler", "scaler", "rng")}
    shutil.copyfile(synthetic_run / "best.pt", tmp_path / "best.pt")  # beside them, as in a run

    def resume_with(name: str, **edits: object) -> None:
        torch.save({**light, **edits}, tmp_path / name)
        fit(tiny_config(tmp_path / "out"), resume=tmp_path / name)

    with pytest.raises(CheckpointError, match="'meta' is missing"):
        resume_with("no-meta.pt", meta=None)
    with pytest.raises(CheckpointError, match="train_state lacks rng"):
        resume_with("no-rng.pt", train_state={"optimizer": {}, "scheduler": {}, "scaler": {}})
    bad_recipe = dict(real["train_config"], optimizer="rmsprop")
    with pytest.raises(CheckpointError, match="unreadable training recipe"):
        resume_with("bad-recipe.pt", train_config=bad_recipe)
    with pytest.raises(CheckpointError, match="no-weights.pt: not an AlexNet state dict"):
        resume_with("no-weights.pt", state_dict={})
    fc8 = {k: v for k, v in real["state_dict"].items() if k.startswith("classifier.6")}
    with pytest.raises(CheckpointError, match=r"missing classifier\.1\.bias"):
        resume_with("partial-weights.pt", state_dict=fc8)
    with pytest.raises(CheckpointError, match="training state is unusable"):
        resume_with("empty-state.pt", epoch=0, history=[])  # the optimizer state is empty
    # Each of these was "unexpected TypeError/ValueError/AttributeError" (exit 3).
    malformed = "'epoch', 'history' or 'best_top1' is malformed"
    for name, edit in [
        ("history-text.pt", {"history": "x"}),
        ("history-items.pt", {"history": ["x", "y"]}),
        ("history-short.pt", {"history": real["history"][:1]}),  # 2 epochs finished
        ("epoch-negative.pt", {"epoch": -1, "history": []}),
        ("best-text.pt", {"best_top1": "x"}),
    ]:
        with pytest.raises(CheckpointError, match=f"{name}: {malformed}"):
            resume_with(name, **edit)
    # A recipe value the checks refuse was blamed on an option ("--lr must be ...").
    nan_lr = dict(real["train_config"], lr=float("nan"))
    with pytest.raises(
        CheckpointError,
        match=r"nan-lr.pt: its stored training recipe is invalid"
        r" \(--lr must be a positive number, got nan; options given now",
    ):
        resume_with("nan-lr.pt", train_config=nan_lr)  # fmt: skip
    longer = dict(real["train_config"], epochs=3)  # a run with an epoch still to train
    odd_record = [dict(r, colour="red") for r in real["history"]]
    with pytest.raises(CheckpointError, match="odd-record.pt: 'history' is malformed"):
        resume_with("odd-record.pt", history=odd_record, train_config=longer)
    optimizer_text = dict(real["train_state"], optimizer="x")
    with pytest.raises(CheckpointError, match="training state is unusable"):
        resume_with("optimizer-text.pt", train_state=optimizer_text, train_config=longer)
    # The epochs edited: the one-cycle schedule stored 2 epochs' steps. It trained an epoch,
    # rewrote last.pt and then failed ("Tried to step 31 times").
    with pytest.raises(CheckpointError, match=r"schedule has 30 steps, but its recipe asks for 45"):
        resume_with("epochs-edited.pt", train_state=real["train_state"], train_config=longer)
    assert not (tmp_path / "out" / "last.pt").exists()
    with pytest.raises(CheckpointError, match="bad-meta.pt: metadata 'std'"):
        resume_with("bad-meta.pt", meta=dict(real["meta"], std=[0.0, 0.0, 0.0]))
    with pytest.raises(CheckpointError, match="newer than this build reads"):
        resume_with("future.pt", version=99)
    # A finished run has nothing to resume: one line, and nothing claimed to be written.
    with pytest.raises(InputError, match="already finished its [0-9]+ epochs"):
        resume_with("finished.pt", epoch=real["train_config"]["epochs"])


def test_cosine_schedule_warms_up_then_decays() -> None:
    config = TrainConfig(epochs=4, schedule=ScheduleKind.COSINE, warmup_epochs=1.0, lr=0.1)
    opt = make_optimizer(config, [torch.nn.Parameter(torch.zeros(1))])
    sched = make_scheduler(config, opt, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < 0.02 and max(lrs) == pytest.approx(0.1, rel=1e-6)
    assert lrs.index(max(lrs)) == 10 and lrs[-1] < 0.001


def test_he_init_keeps_the_signal_and_is_seeded() -> None:
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def logits_std(kind: InitKind, seed: int) -> tuple[float, str]:
        model = build_alexnet(num_classes=10, seed=seed)
        init_weights(model, kind, seed)
        with torch.no_grad():
            return float(model(x).std()), state_dict_sha256(model)

    he, tv = logits_std(InitKind.HE, 0), logits_std(InitKind.TORCHVISION, 0)
    # PyTorch's defaults leave AlexNet's logits near zero; He init keeps them at order one.
    assert tv[0] < 0.05 < 0.3 < he[0] < 5
    assert logits_std(InitKind.HE, 0)[1] == he[1] != logits_std(InitKind.HE, 1)[1]


def test_constant_schedule_keeps_the_rate_and_round_trips() -> None:
    config = TrainConfig(epochs=2, schedule=ScheduleKind.CONSTANT, lr=1e-3)
    opt = make_optimizer(config, [torch.nn.Parameter(torch.zeros(1))])
    sched = make_scheduler(config, opt, steps_per_epoch=5)
    for _ in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["last_epoch"] == 10


def _local_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    train_cli.register(app)
    return app


def test_cli_train_synthetic_one_epoch(tmp_path: Path) -> None:
    args = ["train", "--dataset", "synthetic", "--epochs", "1", "--image-size", "64"]
    args += ["--synthetic-size", "40", "--batch", "16", "--steps-per-epoch", "2"]
    args += ["--out", str(tmp_path / "run")]
    runner = CliRunner()
    result = runner.invoke(_local_app(), args)
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.stdout and "val top-1" in result.stdout
    assert (tmp_path / "run" / "last.pt").is_file()
    assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(_local_app(), args)  # refuses to overwrite a finished run
    assert again.exit_code == 2 and "already holds a run" in again.stderr
    other = tmp_path / "other"  # nor does a resume of another run into it
    into = runner.invoke(_local_app(), ["train", "--resume", str(other / "last.pt"), *args[-2:]])
    assert into.exit_code == 2 and "already holds a run" in into.stderr
    assert "--force to replace it" in again.stderr
    small = runner.invoke(_local_app(), ["train", "--dataset", "synthetic", "--image-size", "32"])
    assert small.exit_code == 2
    assert small.stderr.strip() == "error: --image-size 32 is below the minimum of 64"


def test_cli_app_has_train_and_evaluate() -> None:
    from alexbench.cli import app

    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--resume" in result.stdout
    result = CliRunner().invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0 and "--calib-data" in result.stdout


def test_ddp_two_processes_end_with_identical_weights(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "alexbench", "train", "--dataset", "synthetic", "--epochs", "1"]
    cmd += ["--image-size", "64", "--synthetic-size", "64", "--batch", "8", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    hashes = history["replica_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    # Each rank saw its own half: 64 images / 2 ranks / batch 8 = 4 steps, 64 images in all.
    assert "4 steps per epoch" in proc.stdout and "2 process(es)" in proc.stdout
    assert proc.stdout.count("epoch 1/1") == 1  # only rank 0 reports
    assert state_dict_sha256(load_model(checkpoint=out / "last.pt").model) == hashes[0]


def test_resume_names_the_recipe_options_it_ignores(synthetic_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from alexbench.cli import app

    args = ["train", "--resume", str(synthetic_run / "last.pt"), "--epochs", "9", "--lr", "0.5"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "more" / "runs" / "a")])
    assert "warning: ignored with --resume: --epochs, --lr" in r.stderr
    assert r.exit_code == 2 and "already finished" in r.stderr  # the stored 2 epochs are done
    assert not (tmp_path / "more").exists()  # nor the folders above the run's it created


def test_a_disk_too_small_for_the_checkpoints_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collections

    from alexbench import fileio

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(1 << 40, 0, 100 * 2**20))
    with pytest.raises(InputError, match="not enough free disk space .* the run's checkpoints"):
        fit(tiny_config(tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' in the environment is not an integer"),
        ({"LOCAL_RANK": "x"}, "LOCAL_RANK='x' in the environment is not an integer"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 in the environment must be >= 1"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 asks for distributed training, but RANK, "
         "MASTER_ADDR, MASTER_PORT are not set: launch with torchrun"),
        ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"},
         "RANK=5 must be below WORLD_SIZE=2"),
    ],
)  # fmt: skip
def test_a_bad_torchrun_environment_is_one_line_naming_the_variable(monkeypatch, env, message):
    # They ended in "unexpected ValueError" (exit 3), two of them naming no variable.
    from alexbench.devices import Device
    from alexbench.training.parts import init_distributed

    for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(")):
        init_distributed(Device.CPU)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert init_distributed(Device.CPU).world_size == 1


def test_an_interrupt_between_best_and_last_says_best_is_ahead(tmp_path: Path) -> None:
    """best.pt is written before last.pt: interrupted between the two, best.pt held epoch 2
    while last.pt and the history said 1, and the message named last.pt only (an audit)."""
    import os

    from alexbench.training.train import _best_ahead

    out = tmp_path / "run"
    out.mkdir()
    best, last = out / "best.pt", out / "last.pt"
    best.write_bytes(b"b")
    assert "holds epoch 1; nothing to resume" in _best_ahead(out, last, 0)  # no last.pt yet
    last.write_bytes(b"l")
    os.utime(best, ns=(1_000, 1_000))
    os.utime(last, ns=(2_000, 2_000))
    assert _best_ahead(out, last, 1) == ""  # the usual order: last.pt written after best.pt
    os.utime(best, ns=(3_000, 3_000))
    assert "already holds epoch 2, which the history does not show yet" in _best_ahead(out, last, 1)
    other = tmp_path / "other" / "last.pt"  # resumed from another folder: its best was copied
    assert _best_ahead(out, other, 1) == ""
    assert _best_ahead(out, last, 1, since_ns=5_000) == ""  # an earlier run's best.pt
