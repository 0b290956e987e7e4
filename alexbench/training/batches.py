"""Batches: a rank-sharded loader over a decoded cache or a streamed folder, and the batched
transform that augments, resizes and normalises on the batch's device.

Both paths decode and resize identically, so they yield the same pixels; augmentation is one
affine `grid_sample` plus colour jitter on the whole batch, far cheaper than per-image PIL ops.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from alexbench.errors import DataError
from alexbench.training.data import Augment, MemorySplit, SplitData, StreamSplit
from alexbench.training.data_files import decode_image, resize_size


@dataclass(frozen=True)
class AugmentConfig:
    pad_fraction: float = 0.125  # random crop with padding: 4 px at 32 px, as CIFAR recipes use
    flip: bool = True
    rotation_deg: float = 5.0
    jitter: float = 0.1  # brightness, contrast and saturation factors drawn from 1 ± jitter


def augment_config(level: Augment) -> AugmentConfig | None:
    if level is Augment.NONE:
        return None
    if level is Augment.CROP_FLIP:
        return AugmentConfig(rotation_deg=0.0, jitter=0.0)
    return AugmentConfig()


def derive_seed(*parts: int) -> int:
    """An independent 63-bit seed per (seed, epoch, rank, stream): resuming at an epoch boundary
    reproduces every random stream without carrying generator state across epochs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, split: StreamSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.split.samples[i]
        img = decode_image(path, self.split.resolution)
        return None if img is None else (img, label)


def _quiet_worker(_worker_id: int) -> None:
    """Decode workers are forked with the CLI's handlers, which raise an exception on SIGINT /
    SIGTERM: Ctrl-C (sent to the whole process group) then printed a traceback per worker.
    The main process handles the interrupt and stops them; they ignore SIGINT and die on
    SIGTERM quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
    ok = [it for it in items if it is not None]
    images = torch.stack([im for im, _ in ok]) if ok else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
    return images, torch.tensor([y for _, y in ok], dtype=torch.int64), len(items) - len(ok)


def default_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    # On CPU, decode workers steal cores from the training step itself; keep them few.
    return min(8, cpus) if device.type == "cuda" else max(1, min(4, cpus // 2))


class BatchLoader:
    """Yields (uint8 images, int64 labels) on `device`, one epoch at a time, rank-sharded."""

    def __init__(
        self,
        split: SplitData,
        batch_size: int,
        *,
        device: torch.device,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int | None = None,
    ) -> None:
        self.split, self.batch_size, self.device = split, batch_size, device
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.workers = default_workers(device) if workers is None else workers
        self.skipped = 0  # unreadable images met while streaming, summed over epochs
        if isinstance(split, MemorySplit) and device.type == "cuda":
            # The decoded cache is small enough to live on the GPU: batches never cross PCIe.
            self.split = MemorySplit(split.images.to(device), split.labels.to(device))

    def _per_rank(self) -> int:
        n = len(self.split)
        return n // self.world_size if self.drop_last else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        n = self._per_rank()
        # Drop a partial last batch only when a full one exists, so tiny sets still train.
        return max(1, n // self.batch_size) if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self, epoch: int) -> torch.Tensor:
        n = len(self.split)
        if self.shuffle:  # the same permutation on every rank, then sharded
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.drop_last:
            order = order[: self._per_rank() * self.world_size]
        order = order[self.rank :: self.world_size]
        return order[: len(self) * self.batch_size] if self.drop_last else order

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices(epoch)
        if isinstance(self.split, MemorySplit):
            idx = order.to(self.split.images.device)
            for start in range(0, idx.numel(), self.batch_size):
                i = idx[start : start + self.batch_size]
                yield (
                    self.split.images.index_select(0, i).to(self.device, non_blocking=True),
                    self.split.labels.index_select(0, i).to(self.device, non_blocking=True),
                )
            return
        loader = DataLoader(
            _FileDataset(self.split),
            batch_size=self.batch_size,
            sampler=order.tolist(),
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=_collate,
            worker_init_fn=_quiet_worker,
        )
        for images, labels, skipped in loader:
            self.skipped += skipped
            if not labels.numel() and self.world_size > 1 and self.drop_last:
                # Skipping the step on this rank alone would leave the others waiting in
                # all-reduce forever; failing lets torchrun stop every rank.
                raise DataError(
                    f"all {skipped} images of a training batch on rank {self.rank} are "
                    "unreadable; remove the unreadable files for multi-process training"
                )
            if labels.numel():
                yield (
                    images.to(self.device, non_blocking=True),
                    labels.to(self.device, non_blocking=True),
                )


class BatchTransform:
    """uint8 (B, 3, h, w) -> normalised float (B, 3, S, S): augmentation (training only),
    resize and normalisation as batched tensor ops on the batch's device."""

    _LUMA = (0.299, 0.587, 0.114)

    def __init__(
        self,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: AugmentConfig | None = None,
        channels_last: bool = False,
        crop_fraction: float = 1.0,
    ) -> None:
        self.size, self.augment, self.channels_last = image_size, augment, channels_last
        self.resize = resize_size(image_size, crop_fraction)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = images.float().div_(255.0)
        if self.augment is not None:
            # Augment at the stored resolution (CIFAR: 32 px, 4x fewer pixels than 64 px), then
            # resize once: the geometric and colour ops cost a fraction of the model's step.
            x = self._augment(x, self.augment, generator)
        if x.shape[-1] != self.resize or x.shape[-2] != self.resize:
            x = F.interpolate(
                x,
                size=(self.resize, self.resize),
                mode="bilinear",
                align_corners=False,
                antialias=x.shape[-1] > self.resize,
            )
        if self.resize != self.size:
            top = round((self.resize - self.size) / 2.0)  # as torchvision's center_crop
            x = x[..., top : top + self.size, top : top + self.size]
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _augment(
        self, x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None
    ) -> torch.Tensor:
        b, dev = x.shape[0], x.device

        def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1)
            return torch.rand(*shape, generator=g, device=dev) * 2 - 1

        # One affine grid does crop-with-padding (a translation with zero fill), flip and
        # rotation; grid_sample then reads each pixel once.
        angle = uniform(b) * math.radians(cfg.rotation_deg)
        flip = torch.where(uniform(b) < 0, -1.0, 1.0) if cfg.flip else torch.ones(b, device=dev)
        shift = uniform(b, 2) * 2 * cfg.pad_fraction  # normalised coordinates span 2 per image
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
                torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if cfg.jitter > 0:
            luma = torch.tensor(self._LUMA, device=dev).view(1, 3, 1, 1)
            x = x * (1 + cfg.jitter * uniform(b, 1, 1, 1))  # brightness
            gray = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = (x - gray) * (1 + cfg.jitter * uniform(b, 1, 1, 1)) + gray  # contrast
            gray = (x * luma).sum(1, keepdim=True)
            x = (x - gray) * (1 + cfg.jitter * uniform(b, 1, 1, 1)) + gray  # saturation
            x = x.clamp_(0.0, 1.0)
        return x
