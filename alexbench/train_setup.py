"""The parts of training that are set up once: process group, optimiser, schedule, autocast,
and the history files written beside the checkpoints."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from alexbench.devices import Device
from alexbench.fileio import write_json, write_text
from alexbench.precision import Precision

if TYPE_CHECKING:
    from alexbench.train import TrainConfig


class OptimizerKind(str, Enum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class ScheduleKind(str, Enum):
    ONECYCLE = "onecycle"
    COSINE = "cosine"  # linear warm-up, then cosine decay to zero


DEFAULT_LR = {OptimizerKind.SGD: 0.02, OptimizerKind.ADAM: 1e-3, OptimizerKind.ADAMW: 1e-3}
DEFAULT_WEIGHT_DECAY = {
    OptimizerKind.SGD: 5e-4,
    OptimizerKind.ADAM: 5e-4,
    OptimizerKind.ADAMW: 0.05,
}
HISTORY_JSON, HISTORY_CSV, CURVES_PNG = "history.json", "history.csv", "curves.png"


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: Device) -> DistContext:
    """Join the process group torchrun describes in WORLD_SIZE/RANK/LOCAL_RANK (gloo on CPU,
    nccl on CUDA); a plain process gets a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    tdev = torch.device("cuda", local) if device is Device.CUDA else torch.device("cpu")
    if world <= 1:
        return DistContext(device=tdev)
    if device is Device.CUDA:
        torch.cuda.set_device(tdev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device is Device.CUDA else "gloo")
    return DistContext(dist.get_rank(), local, dist.get_world_size(), tdev)


def make_optimizer(
    config: TrainConfig, params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    lr = config.lr if config.lr is not None else DEFAULT_LR[config.optimizer]
    wd = config.weight_decay
    wd = DEFAULT_WEIGHT_DECAY[config.optimizer] if wd is None else wd
    if config.optimizer is OptimizerKind.SGD:
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, nesterov=config.momentum > 0, weight_decay=wd
        )
    cls = torch.optim.Adam if config.optimizer is OptimizerKind.ADAM else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=wd)


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> Any:
    """Stepped once per batch. Both kinds keep only plain numbers in their state dicts, so a
    checkpoint holding them still loads with weights_only=True."""
    total = max(1, config.epochs * steps_per_epoch)
    peak = optimizer.param_groups[0]["lr"]
    if config.schedule is ScheduleKind.ONECYCLE:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total)
    warmup = min(total - 1, round(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if precision in (Precision.BF16, Precision.FP16):
        dtype = torch.bfloat16 if precision is Precision.BF16 else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


@contextlib.contextmanager
def tf32(precision: Precision) -> Iterator[None]:
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = (
        precision is Precision.TF32
    )
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def write_history(
    out: Path,
    recipe: dict[str, Any],
    description: str,
    records: list[dict[str, Any]],
    replica_sha256: list[str] | None,
) -> None:
    """history.json (with the recipe), history.csv and curves.png, rewritten every epoch."""
    from alexbench.plots import plot_training_curves

    doc: dict[str, Any] = {"config": recipe, "data": description, "epochs": records}
    if replica_sha256 is not None:
        doc["replica_sha256"] = replica_sha256
    write_json(out / HISTORY_JSON, doc)
    if records:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        write_text(out / HISTORY_CSV, buf.getvalue())
        plot_training_curves(records, out / CURVES_PNG)
