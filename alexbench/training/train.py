"""Training: `fit` runs epochs of `train_one_epoch` + `evaluate_split` and writes checkpoints
and the history. DDP-aware: under torchrun each process trains on its shard; rank 0 writes.

Every random stream (shuffle, augmentation, dropout) is drawn from a seed derived from
(seed, epoch, rank), so a run resumed at an epoch boundary repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alexbench.checkpoint import ModelMeta
from alexbench.devices import require
from alexbench.errors import AlexbenchError, CheckpointError, DataError, InputError, Interrupted
from alexbench.fileio import (
    atomic_path,
    folder_lock,
    missing_folders,
    remove_empty_folders,
    require_free_space,
    stale_temporaries,
)
from alexbench.model import build_alexnet
from alexbench.precision import Precision
from alexbench.training.batches import BatchLoader, BatchTransform, augment_config, derive_seed
from alexbench.training.config import OptimizerKind, TrainConfig
from alexbench.training.data import (
    REDRAW_HINT,
    STREAMED_STATS_NOTE,
    DataSpec,
    LoadedData,
    Split,
    StreamSplit,
    load_data,
    none_readable,
    val_folder,
)
from alexbench.training.parts import (
    DistContext,
    all_reduce,
    autocast,
    check_precision,
    init_distributed,
    init_weights,
    make_optimizer,
    make_scheduler,
    replica_hashes,
    tf32,
)
from alexbench.training.persist import (
    BEST,
    LAST,
    RUN_FILES,
    EpochState,
    load_resume,
    save_epoch,
    write_history,
)

_DROPOUT_STREAM, _AUGMENT_STREAM = 1, 2  # the shuffle uses stream 0 (batches.py)


class TrainingDiverged(AlexbenchError):
    """The weights or the validation loss became NaN/inf: the epoch is not saved (a best.pt of
    NaN weights would be exported and benchmarked as if it were a model)."""


def _diverged(model: nn.Module, val_loss: float) -> str | None:
    """What is not finite after an epoch, in words (None: all finite)."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        return f"{len(bad)} weight tensor(s) hold NaN/inf ({bad[0]} first)"
    if not math.isfinite(val_loss):
        return f"the validation loss is {val_loss}"
    return None


class TrainingInterrupted(AlexbenchError):
    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 130 after SIGINT, 143 after SIGTERM


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    val_top5: float | None  # None with 5 classes or fewer: always 100% (as in evaluate)
    lr: float  # the rate of the epoch's last step (the scheduler's next one is not used yet)
    epoch_time_s: float
    images_per_s: float  # training images per second, all ranks together, data pipeline included
    data_fraction: float  # share of the training time spent fetching and transforming batches
    best: bool = False
    # unreadable files met while streaming this epoch, all ranks together (those left out when a
    # folder is decoded into memory are counted once, in the data description)
    skipped_images: int = 0


class TrainReporter:
    """Progress hooks; the CLI renders them, the library stays silent. All no-ops here."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None: ...
    def on_epoch_end(self, record: EpochRecord) -> None: ...
    # Main process only, after each epoch's files are written: every epoch so far (a resumed
    # run's earlier ones too), for a caller that draws curves.
    def on_history(self, out: Path, history: list[dict[str, Any]]) -> None: ...


@dataclass
class TrainResult:
    out: Path
    last: Path
    best: Path
    records: list[EpochRecord]
    replica_sha256: list[str]  # final weights' hash on every rank (all equal, or fit raises)
    rank: int = 0  # under DDP, only rank 0 should report


@dataclass
class TrainStep:
    """What one optimisation step needs."""

    model: nn.Module  # DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    config: TrainConfig
    device: torch.device


def train_one_epoch(
    s: TrainStep,
    loader: BatchLoader,
    transform: BatchTransform,
    epoch: int,
    steps: int,
    reporter: TrainReporter,
) -> tuple[float, float, int, float, float, float]:
    """At most `steps` batches of this rank's shard -> loss, top-1, images, seconds, data secs,
    and the learning rate of the epoch's last step."""
    s.model.train()
    rank = dist.get_rank() if dist.is_initialized() else 0
    gen = torch.Generator(s.device)
    gen.manual_seed(derive_seed(s.config.seed, epoch, rank, _AUGMENT_STREAM))
    loss_sum = torch.zeros((), dtype=torch.float64, device=s.device)
    correct = torch.zeros((), dtype=torch.int64, device=s.device)
    seen, data_time, start = 0, 0.0, time.perf_counter()
    lr_used = s.optimizer.param_groups[0]["lr"]
    batches = loader.epoch(epoch)
    update_every = max(1, steps // 100) if s.device.type == "cuda" else 1  # .item() syncs CUDA
    for step in range(steps):
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        x = transform(batch[0], gen)
        labels = batch[1]
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
        lr_used = s.optimizer.param_groups[0]["lr"]  # before the scheduler moves it on
        s.scheduler.step()
        loss_sum += loss.detach().double() * labels.numel()
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += labels.numel()
        if (step + 1) % update_every == 0 or step + 1 == steps:
            rate = seen / max(time.perf_counter() - start, 1e-9)
            reporter.on_step(step + 1, steps, float(loss.detach()), rate)
    elapsed = time.perf_counter() - start
    total_loss, total_correct, total = all_reduce([loss_sum.item(), correct.item(), seen], s.device)
    n = max(total, 1)
    return total_loss / n, total_correct / n, int(total), elapsed, data_time, lr_used


def evaluate_split(
    model: nn.Module,
    loader: BatchLoader,
    transform: BatchTransform,
    criterion: nn.Module,
    precision: Precision,
    device: torch.device,
) -> tuple[float, float, float, int]:
    """Loss, top-1, top-5 and the number of images scored, over the whole split (summed over
    ranks)."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    with torch.inference_mode(), autocast(precision, device):
        for images, labels in loader.epoch(0):
            logits = model(transform(images)).float()
            hit = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
            n = torch.tensor(labels.numel(), dtype=torch.float64, device=device)
            loss = criterion(logits, labels).double() * n
            totals += torch.stack([loss, hit[:, 0].sum(), hit.any(1).sum(), n])
    loss, c1, c5, n = all_reduce(totals.tolist(), device)
    return loss / max(n, 1), c1 / max(n, 1), c5 / max(n, 1), int(n)


def _require_images_read(data: LoadedData, seen: int, scored: int, skipped: int) -> None:
    """A streamed split meets its unreadable files only as it reads them: one that read none
    would record loss 0 and top-1 0% from 0 images as an epoch, and save it. Refused as the
    decoded splits are when none of their images can be read."""
    if not scored and isinstance(val := data.splits[Split.VAL], StreamSplit):
        spec = data.spec
        drawn = spec.data_dir is not None and val_folder(spec.data_dir) is None
        raise none_readable(val.samples, "the val split", REDRAW_HINT if drawn else "")
    if not seen and isinstance(data.splits[Split.TRAIN], StreamSplit):
        raise DataError(
            f"none of the {skipped} training images this epoch drew could be read; "
            "remove the unreadable files from the training folder"
        )


def _checkpoint_bytes(model: torch.nn.Module, config: TrainConfig, out: Path) -> int:
    """Disk a run's checkpoints need at their peak: last.pt (weights and the optimizer's state:
    SGD's momentum, Adam's two moments) and best.pt, each beside its temporary copy while it is
    replaced; files already there (a resumed run) are replaced, so count once."""
    weights = 4 * sum(p.numel() for p in model.parameters())
    state = 1 if config.optimizer is OptimizerKind.SGD else 2
    peak = 2 * weights * (1 + state) + 2 * weights
    there = sum(f.stat().st_size for f in (out / LAST, out / BEST) if f.is_file())
    return max(0, peak - there) + 64 * 2**20


def fit(
    config: TrainConfig,
    *,
    resume: Path | None = None,
    resume_data_dir: Path | None = None,
    resume_cache_limit: int | None = None,
    reporter: TrainReporter | None = None,
) -> TrainResult:
    """Train, or continue from the last.pt `resume` (its stored recipe wins; only the device,
    output, workers and, with `resume_data_dir`, the data location come from `config`)."""
    ckpt = load_resume(resume) if resume is not None else None
    carried_best: Path | None = None
    if resume is not None and ckpt is not None:
        try:
            config = config.resumed_with(ckpt["train_config"], resume_data_dir, resume_cache_limit)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{resume}: unreadable training recipe ({e!r})") from e
        except InputError as e:  # the checks speak of options the user never passed
            raise CheckpointError(
                f"{resume}: its stored training recipe is invalid ({e}; options given now do "
                "not change a resumed recipe)"
            ) from e
        if ckpt["epoch"] >= config.epochs:  # nothing would run, and no checkpoint be written
            raise InputError(
                f"{resume}: the run already finished its {config.epochs} epochs (a resumed run "
                "keeps its recipe, epochs included); start a new run to train longer"
            )
        carried_best = _best_to_carry(resume, config.out)
    if not 0.0 <= config.dropout < 1.0:
        raise InputError(f"dropout {config.dropout} is outside [0, 1)")
    check_precision(config.precision, config.device)
    require(config.device)
    ctx = init_distributed(config.device)
    try:
        with _run_folder(config.out, ctx), tf32(config.precision):
            return _fit(
                config,
                ckpt,
                ctx,
                reporter if ctx.is_main and reporter else TrainReporter(),
                resume,
                carried_best,
            )
    finally:
        if ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


def resumes_in_place(resume: Path, out: Path) -> bool:
    """Whether a run resumed from `resume` writes into the folder it came from."""
    return out.resolve() == resume.parent.resolve()


def _best_to_carry(resume: Path, out: Path) -> Path | None:
    """The run's best.pt when it resumes into another folder (None in place). The resumed run
    writes best.pt only when it beats the best so far, so without it the new folder would have
    no best.pt, or keep another run's."""
    if resumes_in_place(resume, out):
        return None
    best = resume.parent / BEST
    if not best.is_file():
        raise InputError(
            f"{best}: missing, so the run's best checkpoint cannot go with it to --out {out}; "
            "resume it in its own folder"
        )
    return best


def _carry_best(best: Path, out: Path) -> None:
    try:
        with atomic_path(out / BEST) as tmp:
            shutil.copyfile(best, tmp)
    except OSError as e:  # removed or unreadable since the run started
        raise CheckpointError(f"{best}: cannot copy it to {out} ({e.strerror or e})") from e


@contextlib.contextmanager
def _run_folder(out: Path, ctx: DistContext) -> Iterator[None]:
    """The writing rank holds the run folder for the whole run: a second `train --out` there
    fails at once instead of interleaving its checkpoints with this run's. Holding it, the
    temporaries a killed run left (a SIGKILL mid-save: hundreds of MiB) are removed. A folder
    this call created (and the folders above it it created) is removed again if the run fails
    before writing anything into it."""
    if not ctx.is_main:
        yield
        return
    created = missing_folders(out)
    with folder_lock(out, busy="another alexbench train is writing this run folder"):
        for path in stale_temporaries(out, RUN_FILES):
            path.unlink(missing_ok=True)
        try:
            yield
        except BaseException:
            remove_empty_folders(created)  # with the lock held: never another run's folder
            raise


def _build(
    config: TrainConfig, data: LoadedData, ctx: DistContext, ckpt: dict[str, Any] | None
) -> tuple[nn.Module, TrainStep, BatchLoader, BatchLoader, int]:
    model = build_alexnet(num_classes=data.num_classes, seed=config.seed, dropout=config.dropout)
    if ckpt is None:  # a resumed run loads its weights below: no need to draw fresh ones
        init_weights(model, config.init, config.seed)
    else:
        if ckpt["meta"].get("num_classes") != data.num_classes:
            raise CheckpointError(
                f"the checkpoint has {ckpt['meta'].get('num_classes')} classes, "
                f"the dataset {data.num_classes}"
            )
        trained_with = (ckpt["meta"].get("provenance") or {}).get("world_size", ctx.world_size)
        if trained_with != ctx.world_size:
            # The schedule's length and each rank's shard follow the process count.
            raise CheckpointError(
                f"the run was trained with {trained_with} process(es); resume it with the same "
                f"number, not {ctx.world_size}"
            )
        model.load_state_dict(ckpt["state_dict"])  # load_resume checked names and shapes
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(ctx.device, memory_format=fmt)
    net: nn.Module = model
    if ctx.enabled:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    kw: dict[str, Any] = dict(device=ctx.device, rank=ctx.rank, world_size=ctx.world_size)
    kw["workers"] = config.workers
    train_split, val_split = data.splits[Split.TRAIN], data.splits[Split.VAL]
    bs = config.batch_size
    train = BatchLoader(train_split, bs, shuffle=True, drop_last=True, seed=config.seed, **kw)
    val = BatchLoader(val_split, bs * 2, shuffle=False, drop_last=False, **kw)
    steps = min(len(train), config.steps_per_epoch or len(train))
    optimizer = make_optimizer(config, model.parameters())
    s = TrainStep(
        net,
        optimizer,
        make_scheduler(config, optimizer, steps),
        torch.amp.GradScaler(ctx.device.type, enabled=config.precision is Precision.FP16),
        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        config,
        ctx.device,
    )
    if ckpt is not None:
        state = ckpt["train_state"]
        try:
            s.optimizer.load_state_dict(state["optimizer"])
            s.scheduler.load_state_dict(state["scheduler"])
            s.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"]["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"the checkpoint's training state is unusable ({e!r})") from e
        # A one-cycle schedule keeps its length in its state: one that disagrees with the
        # recipe's epochs (an edited epoch count) failed in the middle of the next epoch, after
        # rewriting last.pt.
        stored = getattr(s.scheduler, "total_steps", None)
        planned = max(1, config.epochs * steps)
        if stored is not None and stored != planned:
            raise CheckpointError(
                f"the checkpoint's schedule has {stored} steps, but its recipe asks for "
                f"{planned} ({config.epochs} epochs x {steps} steps): the file was edited?"
            )
    return model, s, train, val, steps


def _train_state(s: TrainStep) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if s.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "scaler": s.scaler.state_dict(),
        "rng": rng,
    }


def _check_same_data(ckpt: dict[str, Any], data: LoadedData) -> None:
    """A resumed run continues on the images it started on, normalised as it started: other
    files would move images between its training and validation splits (validation would
    score images it trained on, and best.pt be chosen on another set), and --cache-limit-gb
    may switch a folder between measured and ImageNet statistics."""
    then = ckpt.get("data_fingerprint")
    if isinstance(then, dict) and data.fingerprint is not None and then != data.fingerprint:
        counts = ", ".join(f"{k} {then.get(k)} -> {data.fingerprint[k]}" for k in ("train", "val"))
        same = all(then.get(k) == data.fingerprint[k] for k in ("train", "val"))
        raise DataError(
            "the training data changed since this run started ("
            + ("same counts, other files" if same else f"images: {counts}")
            + "): a resumed run must see the images it started on; start a new run instead"
        )
    meta = ckpt.get("meta") or {}
    _check_same_bytes(ckpt, meta, data)
    mean, std = meta.get("mean"), meta.get("std")
    if isinstance(mean, list | tuple) and isinstance(std, list | tuple):
        data.mean, data.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        # The run's statistics, whatever this load would have used (a run that started in
        # memory may resume streamed).
        data.description = data.description.replace(STREAMED_STATS_NOTE, "")


def _best_ahead(out: Path, last: Path, saved: int, since_ns: int = 0) -> str:
    """A note when this run (started at `since_ns`) wrote best.pt after `last`, in its folder:
    it holds the epoch after `saved`. (A run resumed into another folder copies the old best.pt
    in: not compared.)"""
    best = out / BEST
    if last.parent.resolve() != out.resolve():
        return ""
    try:
        written = best.stat().st_mtime_ns
        if written < since_ns or written <= (last.stat().st_mtime_ns if last.exists() else -1):
            return ""
    except OSError:
        return ""
    return (
        f" ({best} already holds epoch {saved + 1}, which the history does not show yet; "
        "--resume repeats that epoch)"
        if saved
        else f" ({best} holds epoch 1; nothing to resume: start again)"
    )


def _check_same_bytes(ckpt: dict[str, Any], meta: dict[str, Any], data: LoadedData) -> None:
    """The paths and labels can match while the files hold other images (another subset under
    the same names: an outside audit resumed on it, and one history mixed validation scores of
    two datasets). The run recorded the content hashes of a seeded sample of its training
    files (`seen.training_sample`, chosen by path); in the same folder this load draws the same
    sample, whose bytes must be the same. A moved folder (--data-dir) draws another sample by
    its other paths: not compared."""
    then = (meta.get("provenance") or {}).get("trained_images")
    now = data.train_sample
    recipe = (ckpt.get("train_config") or {}).get("data") or {}
    if not (isinstance(then, dict) and now and recipe.get("data_dir") == str(data.spec.data_dir)):
        return
    before, after = then.get("sample"), now.get("sample")
    if isinstance(before, list) and before and before != after:
        after = after if isinstance(after, list) else []
        changed = sum(a != b for a, b in zip(before, after, strict=False))
        changed += abs(len(before) - len(after))
        raise DataError(
            f"the training images changed since this run started ({changed} of the "
            f"{len(before)} files it sampled hold other bytes under the same names): a resumed "
            "run must see the images it started on; start a new run instead"
        )


def _load_data(spec: DataSpec, ctx: DistContext) -> LoadedData:
    if not (ctx.enabled and spec.download):
        return load_data(spec)
    # One download per node, not one per rank writing the same files at once; the other
    # ranks read what it fetched. If it fails, torchrun stops the ranks held at the barrier.
    if ctx.local_rank == 0:
        data = load_data(spec)
    dist.barrier()
    return data if ctx.local_rank == 0 else load_data(replace(spec, download=False))


def _fit(
    config: TrainConfig,
    ckpt: dict[str, Any] | None,
    ctx: DistContext,
    reporter: TrainReporter,
    resume: Path | None = None,
    carried_best: Path | None = None,
) -> TrainResult:
    data = _load_data(config.data, ctx)
    if ckpt is not None:
        _check_same_data(ckpt, data)
    try:
        records = [EpochRecord(**r) for r in (ckpt or {}).get("history", [])]
    except TypeError as e:  # a record with fields EpochRecord does not have
        raise CheckpointError(f"{resume}: 'history' is malformed ({e})") from e
    model, s, train_loader, val_loader, steps = _build(config, data, ctx, ckpt)
    size, cl = config.data.image_size, config.channels_last
    train_tf = BatchTransform(size, data.mean, data.std, augment_config(config.data.augment), cl)
    val_tf = BatchTransform(size, data.mean, data.std, None, cl)
    best_top1 = float((ckpt or {}).get("best_top1", -math.inf))
    start_epoch = int((ckpt or {}).get("epoch", 0))
    out, meta = config.out, ModelMeta(data.num_classes, size, data.class_names, data.mean, data.std)
    reporter.on_start(
        {
            "data": data.description,
            "skipped": data.skipped,
            "classes": data.num_classes,
            "train_images": len(data.splits[Split.TRAIN]),
            "val_images": len(data.splits[Split.VAL]),
            "steps_per_epoch": steps,
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "start_epoch": start_epoch,
            "out": str(out),
        }
    )
    if ctx.is_main:
        require_free_space(out, _checkpoint_bytes(model, config, out), "the run's checkpoints")
    # The last.pt that continues this run and its epoch, for the interrupt message: the one
    # resumed from (perhaps in another folder) until this run writes its own.
    last, saved = (resume, start_epoch) if resume is not None else (out / LAST, 0)
    started_ns = time.time_ns()  # a best.pt older than this run is not this run's
    try:
        for epoch in range(start_epoch, config.epochs):
            # Dropout draws from the global generator: reseed it per (seed, epoch, rank).
            torch.manual_seed(derive_seed(config.seed, epoch, ctx.rank, _DROPOUT_STREAM))
            reporter.on_epoch_start(epoch + 1, config.epochs, steps)
            t0 = time.perf_counter()
            train_before, val_before = train_loader.skipped, val_loader.skipped
            loss, top1, seen, secs, data_s, lr = train_one_epoch(
                s, train_loader, train_tf, epoch, steps, reporter
            )
            v_loss, v1, v5, scored = evaluate_split(
                model, val_loader, val_tf, s.criterion, config.precision, ctx.device
            )
            train_skipped = train_loader.skipped - train_before
            _require_images_read(data, seen, scored, train_skipped)
            broken = _diverged(model, v_loss)
            if broken:
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch + 1}: {broken} (train loss {loss:.4g}); "
                    f"epoch {epoch + 1} was not saved. In a new run lower --lr (or set "
                    "--clip-grad), and check the data's normalisation"
                )
            rate, share = seen / max(secs, 1e-9), data_s / max(secs, 1e-9)
            wall = time.perf_counter() - t0
            v5_or_none = v5 if data.num_classes > 5 else None
            rec = EpochRecord(epoch + 1, loss, top1, v_loss, v1, v5_or_none, lr, wall, rate, share)
            skipped = train_skipped + val_loader.skipped - val_before
            rec.skipped_images = int(all_reduce([skipped], ctx.device)[0])
            rec.best, best_top1 = v1 > best_top1, max(best_top1, v1)
            records.append(rec)
            if ctx.is_main:
                history = [asdict(r) for r in records]
                state = EpochState(
                    config.recipe(), config.data.to_dict(), data.description, history,
                    best_top1, ctx.world_size, _train_state(s), data.fingerprint,
                    data.train_sample,
                )  # fmt: skip
                if carried_best is not None and not rec.best:  # before last.pt, as save_epoch
                    _carry_best(carried_best, out)
                carried_best = None
                save_epoch(out, model, meta, state)
                last, saved = out / LAST, epoch + 1  # whatever interrupts the plot below
                reporter.on_history(out, history)
            reporter.on_epoch_end(rec)
    except (KeyboardInterrupt, Interrupted) as e:
        why = str(e) if isinstance(e, Interrupted) else "interrupted"
        code = e.exit_code if isinstance(e, Interrupted) else TrainingInterrupted.exit_code
        # best.pt is written before last.pt: an interrupt between the two leaves a best.pt one
        # epoch ahead of last.pt and the history, which the message said nothing of (an audit).
        ahead = _best_ahead(out, last, saved, started_ns) if ctx.is_main else ""
        if not saved:  # best.pt may be written; last.pt, which --resume reads, is not
            raise TrainingInterrupted(
                f"{why} before the first complete checkpoint{ahead}", code
            ) from None
        raise TrainingInterrupted(
            f"{why}; last complete checkpoint: {last} (epoch {saved}); "
            f"continue with --resume {last}{ahead}",
            code,
        ) from None
    hashes = replica_hashes(model, ctx)
    if len(set(hashes)) > 1:
        raise AlexbenchError(f"DDP replicas diverged: weight hashes differ across ranks {hashes}")
    if ctx.is_main:
        write_history(out, config.recipe(), data.description, [asdict(r) for r in records], hashes)
    return TrainResult(out, out / LAST, out / BEST, records, hashes, ctx.rank)
