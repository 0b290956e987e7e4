"""`alexbench train`: parse options -> TrainConfig -> train.fit, with a rich progress bar."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from alexbench.cli import options as opt
from alexbench.cli.common import (
    Command,
    check_not_inside,
    click,
    console,
    err_console,
    handle_errors,
)
from alexbench.devices import Device
from alexbench.errors import InputError
from alexbench.model import MAX_SEED
from alexbench.precision import Precision
from alexbench.training.config import InitKind, OptimizerKind, ScheduleKind, TrainConfig
from alexbench.training.data import Augment, DatasetKind, DataSpec, NormalizeChoice
from alexbench.training.persist import CURVES_PNG
from alexbench.training.train import EpochRecord, TrainReporter, fit, resumes_in_place


class TrainPrecision(StrEnum):
    """The precisions training supports (int8 is for exported models only)."""

    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"


class RichReporter(TrainReporter):
    """A progress bar per epoch, then one summary line. Transient, so a log (or a non-TTY
    console, where rich draws no live bar) keeps only the summaries."""

    def __init__(self, out: Console) -> None:
        self.console = out
        self.progress: Progress | None = None
        self.task: Any = None
        self.epochs = 0

    def on_start(self, info: dict[str, Any]) -> None:
        c = self.console
        c.print(f"Data: {info['data']}", markup=False, highlight=False)
        c.print(
            f"{info['train_images']} train / {info['val_images']} val images, "
            f"{info['classes']} classes; {info['steps_per_epoch']} steps per epoch; "
            f"device {info['device']}, {info['world_size']} process(es); writing {info['out']}",
            highlight=False,
        )
        if info["skipped"]:
            err_console.print(
                f"warning: skipped {len(info['skipped'])} unreadable image(s) "
                f"(first: {info['skipped'][0]})",
                markup=False,
            )
        if info["start_epoch"]:
            c.print(f"Resuming after epoch {info['start_epoch']}", highlight=False)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.0f} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,  # no bar (and no stray newline) in logs
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, loss=float("nan"), ips=0.0)

    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=loss, ips=images_per_s)

    def on_history(self, out: Path, history: list[dict[str, Any]]) -> None:
        from alexbench.plots import plot_training_curves  # matplotlib only when a run writes

        plot_training_curves(history, out / CURVES_PNG)

    def on_epoch_end(self, r: EpochRecord) -> None:
        self.close()
        self.console.print(
            f"epoch {r.epoch}/{self.epochs}  train loss {r.train_loss:.4f}  "
            f"val loss {r.val_loss:.4f}  val top-1 {100 * r.val_top1:.2f}%  "
            + (f"top-5 {100 * r.val_top5:.2f}%  " if r.val_top5 is not None else "")
            + f"lr {r.lr:.3g}  {r.epoch_time_s:.1f} s  "
            f"{r.images_per_s:.0f} img/s (data {100 * r.data_fraction:.0f}%)"
            + ("  best" if r.best else ""),
            highlight=False,
        )
        if r.skipped_images:
            err_console.print(
                f"warning: skipped {r.skipped_images} unreadable image(s) this epoch", markup=False
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@handle_errors
def train_cmd(
    ctx: typer.Context,
    dataset: DatasetKind = typer.Option(
        DatasetKind.CIFAR10, "--dataset", help="cifar10, imagefolder, or synthetic (no data)."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="CIFAR-10 root, or an ImageFolder tree DIR/train/<class> (default: data, or the "
        "resumed run's).",
    ),
    download: bool = typer.Option(False, "--download", help="Download CIFAR-10 if missing."),
    val_fraction: float = typer.Option(
        0.1,
        "--val-fraction",
        help="Share of train held out for validation, in [0, 1), when there is no val/ or test/.",
    ),
    image_size: int = typer.Option(
        224, "--image-size", help="Training resolution in pixels, 64 to 4096."
    ),
    augment: Augment = typer.Option(
        Augment.CROP_FLIP,
        "--augment",
        help="crop-flip: random crop with padding + flip; full: also rotation and colour jitter "
        "(the guide's set); none.",
    ),
    normalize: NormalizeChoice = typer.Option(
        NormalizeChoice.DATASET,
        "--normalize",
        help="Per-channel mean/std the model's input is normalised with, recorded in the "
        "checkpoint: dataset (CIFAR-10's table, or measured on the training images), imagenet, "
        "cifar10 or none.",
    ),
    synthetic_size: int = typer.Option(
        2000, "--synthetic-size", help="Training images of --dataset synthetic.", min=10
    ),
    epochs: int = typer.Option(12, "--epochs", help="Passes over the training images.", min=1),
    batch_size: int = opt.batch_one(128, "Images per optimizer step (per process under DDP)."),
    optimizer: OptimizerKind = typer.Option(
        OptimizerKind.SGD, "--optimizer", help="sgd (Nesterov momentum), adam or adamw."
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (default: 0.02 sgd, 1e-3 adam/adamw)."
    ),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD (Nesterov) momentum."),
    weight_decay: float | None = typer.Option(
        None, "--weight-decay", help="Weight decay factor (default: 5e-4 sgd/adam, 0.05 adamw)."
    ),
    schedule: ScheduleKind = typer.Option(
        ScheduleKind.ONECYCLE,
        "--schedule",
        help="onecycle; cosine (with --warmup-epochs); constant (the guide's fixed rate).",
    ),
    warmup_epochs: float = typer.Option(
        1.0, "--warmup-epochs", help="Epochs of linear warm-up of --schedule cosine."
    ),
    label_smoothing: float = typer.Option(
        0.1,
        "--label-smoothing",
        # [0, 1), checked by the config: 1 leaves the true class no more than the others, and
        # Click's range cannot be open at one end here (its help showed <=1.0)
        help="Share of each target's probability spread over the other classes, in [0, 1).",
    ),
    dropout: float = typer.Option(
        0.5, "--dropout", min=0.0, max=0.95, help="Dropout before each hidden FC layer."
    ),
    init: InitKind = typer.Option(
        InitKind.HE,
        "--init",
        help="he: He-normal convs (trains from the first epoch); torchvision: PyTorch's defaults.",
    ),
    clip_grad: float | None = typer.Option(
        None, "--clip-grad", help="Clip the gradients' L2 norm to this value (default: no clip)."
    ),
    precision: TrainPrecision = opt.precision_one(
        TrainPrecision.FP32,
        "fp32; tf32 (cuda); fp16 (cuda, with loss scaling); bf16 (autocast, cpu or cuda).",
    ),
    channels_last: bool = typer.Option(
        True, "--channels-last/--no-channels-last", help="Train in the channels_last layout."
    ),
    device: Device | None = opt.device_one(),
    seed: int = typer.Option(
        0, "--seed", help="Seeds init, shuffling, augmentation, dropout.", min=0, max=MAX_SEED
    ),
    split_seed: int = typer.Option(
        0,
        "--split-seed",
        help="Seed of the held-out validation split; kept apart from --seed so that runs with "
        "different seeds are scored on the same images.",
        min=0,
        max=MAX_SEED,
    ),
    steps_per_epoch: int | None = typer.Option(
        None, "--steps-per-epoch", help="Cap the batches per epoch (quick checks).", min=1
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Decode workers when a folder is streamed (default: auto).", min=0
    ),
    cache_limit_gb: float = opt.CACHE_LIMIT_GB,
    out: Path | None = opt.out_folder(
        None, "Run folder (default: runs/<dataset>-<size>px, or the resumed run's)."
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Continue from a last.pt file (its recipe wins over options).",
        dir_okay=False,
    ),
    force: bool = opt.force("Replace a run already in --out.", "--overwrite"),
) -> None:
    """Train AlexNet; write last.pt/best.pt, history.json/csv and curves.png into --out.

    Examples:

      alexbench train --dataset synthetic --epochs 2 --image-size 64

      alexbench train --dataset imagefolder --data-dir data/cifar10 --image-size 64 --precision bf16

      alexbench train --resume runs/imagefolder-64px/last.pt

      torchrun --nproc_per_node 2 -m alexbench train --dataset synthetic --image-size 64
    """
    device = opt.device_default(device)
    spec = DataSpec(
        kind=dataset,
        # Absolute: evaluate compares it with the folder it is given, from any directory.
        data_dir=(data_dir or Path("data")).resolve(),
        image_size=image_size,
        augment=augment,
        val_fraction=val_fraction,
        split_seed=split_seed,
        download=download,
        normalize=normalize,
        cache_limit_bytes=opt.cache_limit_bytes(cache_limit_gb),
        synthetic_size=synthetic_size,
    )
    if out is None:
        out = resume.parent if resume else Path("runs") / f"{dataset.value}-{image_size}px"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, expected a folder")
    if dataset is DatasetKind.IMAGEFOLDER:  # the run's folder would become a class, curves.png
        check_not_inside(out, "--out", spec.data_dir, "--data-dir")  # in one an image of it
    in_place = resume is not None and resumes_in_place(resume, out)
    if not in_place and (out / "last.pt").exists() and not force:
        raise InputError(
            f"{out} already holds a run: --resume {out / 'last.pt'} to continue it, "
            "--force to replace it, or --out for a new folder"
        )
    config = TrainConfig(
        data=spec,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,
        init=init,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        dropout=dropout,
        clip_grad=clip_grad,
        precision=Precision(precision.value),
        channels_last=channels_last,
        seed=seed,
        steps_per_epoch=steps_per_epoch,
        device=device,
        out=out,
        workers=workers,
    )
    if resume is not None:
        _warn_ignored_recipe(ctx)
    reporter = RichReporter(console)
    try:
        # The run's own cache limit unless one is given: it decides in memory or streamed.
        given = ctx.get_parameter_source("cache_limit_gb") is click.core.ParameterSource.COMMANDLINE
        result = fit(
            config,
            resume=resume,
            resume_data_dir=data_dir,
            resume_cache_limit=spec.cache_limit_bytes if given else None,
            reporter=reporter,
        )
    finally:
        reporter.close()
    if result.rank != 0 or not result.records:
        return
    best = max(result.records, key=lambda r: r.val_top1)
    console.print(
        f"Best val top-1 {100 * best.val_top1:.2f}% (epoch {best.epoch}); "
        f"checkpoints: {result.best}, {result.last}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("train", cls=Command)(train_cmd)


# What a resumed run may change; every other option is part of the recipe stored in last.pt.
_RESUME_OPTIONS = {
    "resume", "out", "device", "workers", "data_dir", "cache_limit_gb", "download", "force"
}  # fmt: skip


def _warn_ignored_recipe(ctx: typer.Context) -> None:
    """Options given on the command line that a resumed run ignores, named on stderr."""
    given = [
        p for p in ctx.command.params
        if p.name not in _RESUME_OPTIONS
        and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE
    ]  # fmt: skip
    if given:
        names = ", ".join(p.opts[0] for p in given)
        err_console.print(
            f"warning: ignored with --resume: {names} (a resumed run keeps its stored recipe)",
            markup=False,
        )
