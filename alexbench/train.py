"""Training: `fit` runs epochs of `train_one_epoch` + `evaluate_split`, writes checkpoints and the
history. DDP-aware: under torchrun every process trains on its shard; only rank 0 writes."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alexbench import __version__
from alexbench.checkpoint import CHECKPOINT_FORMAT, ModelMeta, safe_load, save_checkpoint
from alexbench.data import (
    AugmentConfig,
    BatchLoader,
    BatchTransform,
    DataSpec,
    LoadedData,
    Split,
    derive_seed,
    load_data,
)
from alexbench.devices import Device, require
from alexbench.errors import AlexbenchError, CheckpointError, InputError
from alexbench.model import build_alexnet, state_dict_sha256
from alexbench.precision import Precision
from alexbench.train_setup import (
    DistContext,
    OptimizerKind,
    ScheduleKind,
    autocast,
    init_distributed,
    make_optimizer,
    make_scheduler,
    tf32,
    write_history,
)

# Streams drawn per (seed, epoch, rank): independent, and re-creatable on resume.
_DROPOUT_STREAM, _AUGMENT_STREAM = 1, 2


class TrainingInterrupted(AlexbenchError):
    exit_code = 130


@dataclass
class TrainConfig:
    data: DataSpec = field(default_factory=DataSpec)
    epochs: int = 12
    batch_size: int = 128  # per process under DDP
    optimizer: OptimizerKind = OptimizerKind.SGD
    lr: float | None = None  # None: 0.02 for SGD, 1e-3 for Adam/AdamW
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 5e-4 for SGD and Adam, 0.05 for AdamW
    schedule: ScheduleKind = ScheduleKind.ONECYCLE
    warmup_epochs: float = 1.0  # cosine only; one-cycle warms up over its first 30 %
    label_smoothing: float = 0.1
    clip_grad: float | None = None
    precision: Precision = Precision.FP32
    channels_last: bool = True
    seed: int = 0
    steps_per_epoch: int | None = None  # cap, for smoke tests and quick checks
    # Where and how, not what: these may change when a run is resumed.
    device: Device = Device.CPU
    out: Path = Path("runs/train")
    workers: int | None = None

    RUNTIME_FIELDS = ("device", "out", "workers")

    def recipe(self) -> dict[str, Any]:
        """Everything that decides the result, as plain types (stored in checkpoints)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in self.RUNTIME_FIELDS:
                d[f.name] = v.to_dict() if isinstance(v, DataSpec) else getattr(v, "value", v)
        return d

    def resumed_with(self, recipe: dict[str, Any]) -> TrainConfig:
        """The stored recipe, with this config's device, output and data location."""
        kw = {k: v for k, v in recipe.items() if k in {f.name for f in fields(self)}}
        data = dict(kw.pop("data"), data_dir=str(self.data.data_dir), download=self.data.download)
        data["cache_limit_bytes"] = self.data.cache_limit_bytes
        kw.update(
            data=DataSpec.from_dict(data),
            optimizer=OptimizerKind(kw["optimizer"]),
            schedule=ScheduleKind(kw["schedule"]),
            precision=Precision(kw["precision"]),
        )
        return TrainConfig(**kw, **{k: getattr(self, k) for k in self.RUNTIME_FIELDS})


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    val_top5: float
    lr: float
    epoch_time_s: float
    images_per_s: float  # training images per second, all ranks together, data pipeline included
    data_fraction: float  # share of the training time spent fetching and transforming batches
    best: bool = False


class TrainReporter:
    """Progress hooks; the CLI renders them, the library stays silent. All no-ops here."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None: ...
    def on_epoch_end(self, record: EpochRecord) -> None: ...


@dataclass
class TrainResult:
    out: Path
    last: Path
    best: Path
    records: list[EpochRecord]
    replica_sha256: list[str]  # final weights' hash on every rank (all equal, or fit raises)


@dataclass
class _Step:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    config: TrainConfig
    device: torch.device


def check_precision(precision: Precision, device: Device) -> None:
    if precision in (Precision.INT8, Precision.TF32) and device is Device.CPU:
        raise InputError(f"--precision {precision.value} cannot train on cpu (use fp32 or bf16)")
    if precision is Precision.INT8:
        raise InputError("--precision int8 is for exported models, not training")
    if precision is Precision.FP16 and device is Device.CPU:
        raise InputError("--precision fp16 training needs CUDA (GradScaler); use bf16 on cpu")


def train_one_epoch(
    s: _Step,
    loader: BatchLoader,
    transform: BatchTransform,
    epoch: int,
    steps: int,
    reporter: TrainReporter,
) -> tuple[float, float, int, float, float]:
    """One pass over (at most `steps` batches of) the shard: loss, top-1, images, seconds, data s."""
    s.model.train()
    gen = torch.Generator(s.device).manual_seed(
        derive_seed(s.config.seed, epoch, _rank(), _AUGMENT_STREAM)
    )
    loss_sum = torch.zeros((), dtype=torch.float64, device=s.device)
    correct = torch.zeros((), dtype=torch.int64, device=s.device)
    seen, data_time, start = 0, 0.0, time.perf_counter()
    batches = loader.epoch(epoch)
    update_every = max(1, steps // 100) if s.device.type == "cuda" else 1  # .item() syncs CUDA
    for step in range(steps):
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        images, labels = batch
        x = transform(images, gen)
        data_time += time.perf_counter() - t0
        with autocast(s.config.precision, s.device):
            logits = s.model(x)
            loss = s.criterion(logits, labels)
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        if s.config.clip_grad:
            s.scaler.unscale_(s.optimizer)
            nn.utils.clip_grad_norm_(s.model.parameters(), s.config.clip_grad)
        s.scaler.step(s.optimizer)
        s.scaler.update()
        s.scheduler.step()
        loss_sum += loss.detach().double() * labels.numel()
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += labels.numel()
        if (step + 1) % update_every == 0 or step + 1 == steps:
            elapsed = time.perf_counter() - start
            reporter.on_step(step + 1, steps, float(loss), seen / max(elapsed, 1e-9))
    elapsed = time.perf_counter() - start
    totals = _all_reduce([loss_sum.item(), correct.item(), seen], s.device)
    loss_avg, top1 = totals[0] / max(totals[2], 1), totals[1] / max(totals[2], 1)
    return loss_avg, top1, int(totals[2]), elapsed, data_time


def evaluate_split(
    model: nn.Module,
    loader: BatchLoader,
    transform: BatchTransform,
    criterion: nn.Module,
    precision: Precision,
    device: torch.device,
) -> tuple[float, float, float]:
    """Loss, top-1 and top-5 over the whole split (summed over ranks)."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    with torch.inference_mode(), autocast(precision, device):
        for images, labels in loader.epoch(0):
            logits = model(transform(images)).float()
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit = top == labels[:, None]
            totals += torch.stack(
                [
                    criterion(logits, labels).double() * labels.numel(),
                    hit[:, 0].sum().double(),
                    hit.any(1).sum().double(),
                    torch.tensor(labels.numel(), dtype=torch.float64, device=device),
                ]
            )
    loss, c1, c5, n = _all_reduce(totals.tolist(), device)
    return loss / max(n, 1), c1 / max(n, 1), c5 / max(n, 1)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _versions() -> dict[str, str]:
    import torchvision

    return {
        "alexbench": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def _load_resume(path: Path) -> dict[str, Any]:
    ckpt = safe_load(path)
    if not (isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT):
        raise CheckpointError(f"{path}: not an alexbench checkpoint")
    if "train_state" not in ckpt or "train_config" not in ckpt:
        raise CheckpointError(f"{path}: holds no training state (resume from a last.pt)")
    return ckpt


def fit(
    config: TrainConfig, *, resume: Path | None = None, reporter: TrainReporter | None = None
) -> TrainResult:
    """Train (or continue training) and return where the checkpoints are."""
    ckpt = _load_resume(resume) if resume is not None else None
    if ckpt is not None:
        config = config.resumed_with(ckpt["train_config"])
    check_precision(config.precision, config.device)
    require(config.device)
    ctx = init_distributed(config.device)
    try:
        with tf32(config.precision):
            return _fit(
                config, ckpt, ctx, reporter if ctx.is_main and reporter else TrainReporter()
            )
    finally:
        if ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _fit(
    config: TrainConfig, ckpt: dict[str, Any] | None, ctx: DistContext, reporter: TrainReporter
) -> TrainResult:
    device = ctx.device
    data: LoadedData = load_data(config.data)
    model = build_alexnet(num_classes=data.num_classes, seed=config.seed)
    if ckpt is not None:
        if ckpt["meta"].get("num_classes") != data.num_classes:
            raise CheckpointError(
                f"checkpoint has {ckpt['meta'].get('num_classes')} classes, "
                f"the dataset {data.num_classes}"
            )
        model.load_state_dict(ckpt["state_dict"])
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    net: nn.Module = model
    if ctx.enabled:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    kw = dict(device=device, rank=ctx.rank, world_size=ctx.world_size, workers=config.workers)
    train_loader = BatchLoader(
        data.splits[Split.TRAIN],
        config.batch_size,
        shuffle=True,
        drop_last=True,
        seed=config.seed,
        **kw,
    )
    val_loader = BatchLoader(
        data.splits[Split.VAL], config.batch_size * 2, shuffle=False, drop_last=False, **kw
    )
    steps = min(len(train_loader), config.steps_per_epoch or len(train_loader))
    augment = AugmentConfig() if config.data.augment else None
    size, cl = config.data.image_size, config.channels_last
    train_tf = BatchTransform(size, data.mean, data.std, augment, cl)
    val_tf = BatchTransform(size, data.mean, data.std, None, cl)
    optimizer = make_optimizer(config, model.parameters())
    s = _Step(
        net,
        optimizer,
        make_scheduler(config, optimizer, steps),
        torch.amp.GradScaler(device.type, enabled=config.precision is Precision.FP16),
        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        config,
        device,
    )
    records: list[EpochRecord] = []
    best_top1, start_epoch = -math.inf, 0
    if ckpt is not None:
        state = ckpt["train_state"]
        s.optimizer.load_state_dict(state["optimizer"])
        s.scheduler.load_state_dict(state["scheduler"])
        s.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        records = [EpochRecord(**r) for r in ckpt.get("history", [])]
        best_top1, start_epoch = float(ckpt.get("best_top1", -math.inf)), int(ckpt["epoch"])
    out = config.out
    last, best = out / "last.pt", out / "best.pt"
    reporter.on_start(
        {
            "data": data.description,
            "skipped": data.skipped,
            "classes": data.num_classes,
            "train_images": len(data.splits[Split.TRAIN]),
            "val_images": len(data.splits[Split.VAL]),
            "steps_per_epoch": steps,
            "world_size": ctx.world_size,
            "device": str(device),
            "start_epoch": start_epoch,
            "out": str(out),
        }
    )
    meta = ModelMeta(data.num_classes, size, list(data.class_names), data.mean, data.std)
    try:
        for epoch in range(start_epoch, config.epochs):
            # Dropout draws from the global generator: reseed it per (seed, epoch, rank).
            torch.manual_seed(derive_seed(config.seed, epoch, ctx.rank, _DROPOUT_STREAM))
            reporter.on_epoch_start(epoch + 1, config.epochs, steps)
            t0 = time.perf_counter()
            loss, top1, seen, secs, data_s = train_one_epoch(
                s, train_loader, train_tf, epoch, steps, reporter
            )
            val_loss, val1, val5 = evaluate_split(
                model, val_loader, val_tf, s.criterion, config.precision, device
            )
            rec = EpochRecord(
                epoch + 1,
                loss,
                top1,
                val_loss,
                val1,
                val5,
                s.scheduler.get_last_lr()[0],
                time.perf_counter() - t0,
                seen / max(secs, 1e-9),
                data_s / max(secs, 1e-9),
                best=val1 > best_top1,
            )
            best_top1 = max(best_top1, val1)
            records.append(rec)
            if ctx.is_main:
                _save(s, model, meta, config, data, records, best_top1, last, best, ctx)
            reporter.on_epoch_end(rec)
    except KeyboardInterrupt:
        done = records[-1].epoch if records else 0
        where = f"{last} (epoch {done})" if last.exists() else "none written yet"
        raise TrainingInterrupted(
            f"interrupted; last complete checkpoint: {where}"
            + (f"; continue with --resume {last}" if last.exists() else "")
        ) from None
    hashes = _replica_hashes(model, ctx)
    if len(set(hashes)) > 1:
        raise AlexbenchError(f"DDP replicas diverged: weight hashes differ across ranks {hashes}")
    if ctx.is_main:
        write_history(out, config.recipe(), data.description, [asdict(r) for r in records], hashes)
    return TrainResult(out, last, best, records, hashes)


def _replica_hashes(model: nn.Module, ctx: DistContext) -> list[str]:
    mine = state_dict_sha256(model)
    if not ctx.enabled:
        return [mine]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, mine)
    return [str(h) for h in gathered]


def _save(
    s: _Step,
    model: nn.Module,
    meta: ModelMeta,
    config: TrainConfig,
    data: LoadedData,
    records: list[EpochRecord],
    best_top1: float,
    last: Path,
    best: Path,
    ctx: DistContext,
) -> None:
    rec = records[-1]
    history = [asdict(r) for r in records]
    meta.provenance = {
        "epoch": rec.epoch,
        "metrics": asdict(rec),
        "seed": config.seed,
        "dataset": data.description,
        "data": config.data.to_dict(),
        "train": config.recipe(),
        "world_size": ctx.world_size,
        "versions": _versions(),
        "host": platform.node() or os.environ.get("HOSTNAME", ""),
    }
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and s.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = {
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "scaler": s.scaler.state_dict(),
        "rng": rng,
    }
    common = {
        "epoch": rec.epoch,
        "metrics": asdict(rec),
        "history": history,
        "best_top1": best_top1,
    }
    extra = dict(common, train_config=config.recipe(), train_state=state)
    save_checkpoint(last, model, meta, extra)
    if rec.best:  # weights and meta only: best.pt is for evaluation and export, not resuming
        save_checkpoint(best, model, meta, common)
    write_history(config.out, config.recipe(), data.description, history, None)
