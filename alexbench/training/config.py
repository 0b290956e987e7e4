"""What a training run is: `TrainConfig` and the kinds it chooses from (optimiser, schedule,
initialisation). Both the loop (`train.py`) and its parts (`parts.py`) read it; it imports
neither, so the two never import each other."""

from __future__ import annotations

import math
from dataclasses import InitVar, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from alexbench.devices import Device
from alexbench.errors import InputError
from alexbench.precision import Precision
from alexbench.training.data import DataSpec


class OptimizerKind(StrEnum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class ScheduleKind(StrEnum):
    ONECYCLE = "onecycle"
    COSINE = "cosine"  # linear warm-up, then cosine decay to zero
    CONSTANT = "constant"  # the guide's recipe: a fixed learning rate, no warm-up


class InitKind(StrEnum):
    """How the weights start when training from scratch."""

    HE = "he"  # He-normal convs, N(0, 0.01) linear layers: the signal keeps its scale
    TORCHVISION = "torchvision"  # PyTorch's layer defaults, as torchvision builds AlexNet


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
    dropout: float = 0.5  # torchvision's; runs recorded before --dropout existed used it
    init: InitKind = InitKind.HE
    clip_grad: float | None = None
    precision: Precision = Precision.FP32
    channels_last: bool = True
    seed: int = 0
    steps_per_epoch: int | None = None  # cap, for smoke tests and quick checks
    # Where and how, not what: these may change when a run is resumed.
    device: Device = Device.CPU
    out: Path = Path("runs/train")
    workers: int | None = None

    # A stored recipe being resumed: rules added after it was recorded do not apply to it.
    resuming: InitVar[bool] = False

    RUNTIME_FIELDS = ("device", "out", "workers")

    def __post_init__(self, resuming: bool) -> None:
        """Every number checked before any data loads or any epoch runs, in the CLI's words."""
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch must be at least 1, got {self.batch_size}"),
            (self.lr is None or (self.lr > 0 and math.isfinite(self.lr)),
             f"--lr must be a positive number, got {self.lr}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay is None or 0 <= self.weight_decay < math.inf,
             f"--weight-decay must be a finite number >= 0, got {self.weight_decay}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            # As long as the run or longer, the learning rate never leaves the ramp (100 of 1:
            # near 0; 1 of 1: the peak at the last step, and no decay at all).
            (self.schedule is not ScheduleKind.COSINE or self.warmup_epochs < self.epochs
             or (resuming and self.warmup_epochs == self.epochs),  # allowed until 2026-11-27
             f"--warmup-epochs ({self.warmup_epochs:g}) must be less than --epochs "
             f"({self.epochs})"),
            (0 <= self.label_smoothing < 1,
             f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.clip_grad is None or self.clip_grad > 0,
             f"--clip-grad must be > 0, got {self.clip_grad}"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"--steps-per-epoch must be at least 1, got {self.steps_per_epoch}"),
            (self.workers is None or self.workers >= 0,
             f"--workers must be >= 0, got {self.workers}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:  # nan fails every comparison, so it lands here too
                raise InputError(message)

    def recipe(self) -> dict[str, Any]:
        """Everything that decides the result, as plain types (stored in checkpoints)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in self.RUNTIME_FIELDS:
                d[f.name] = v.to_dict() if isinstance(v, DataSpec) else getattr(v, "value", v)
        return d

    def resumed_with(
        self,
        recipe: dict[str, Any],
        data_dir: Path | None = None,
        cache_limit_bytes: int | None = None,
    ) -> TrainConfig:
        """The stored recipe, with this config's device, output and workers; the data stays
        where the recipe says unless `data_dir` moves it, and is decoded into memory or
        streamed as the run started unless `cache_limit_bytes` (given anew) says otherwise:
        the two draw from torch's generator differently, so a run that started streamed and
        resumed in memory (the default limit) did not continue exactly (an outside audit)."""
        kw = {k: v for k, v in recipe.items() if k in {f.name for f in fields(self)}}
        data = dict(kw.pop("data"), download=self.data.download)
        if cache_limit_bytes is not None or "cache_limit_bytes" not in data:
            data["cache_limit_bytes"] = (
                self.data.cache_limit_bytes if cache_limit_bytes is None else cache_limit_bytes
            )
        if data_dir is not None:  # absolute, as a new run records it: evaluate finds it again
            data["data_dir"] = str(Path(data_dir).resolve())
        kw.update(
            data=DataSpec.from_dict(data),
            optimizer=OptimizerKind(kw["optimizer"]),
            schedule=ScheduleKind(kw["schedule"]),
            # Runs recorded before --init existed started from PyTorch's defaults.
            init=InitKind(kw.get("init", InitKind.TORCHVISION.value)),
            precision=Precision(kw["precision"]),
        )
        runtime = {k: getattr(self, k) for k in self.RUNTIME_FIELDS}
        return TrainConfig(**kw, **runtime, resuming=True)
