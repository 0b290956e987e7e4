"""Inputs for parity checks and benchmarks: seeded random tensors or real images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexbench.checkpoint import ModelMeta
from alexbench.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class InputSet:
    batch: np.ndarray  # (N, 3, H, W) float32, already normalised
    kind: str  # "random" or "images"
    description: str


def random_inputs(count: int, image_size: int, seed: int = 0) -> InputSet:
    # Standard normal in normalised space: the statistics of a normalised natural image.
    rng = np.random.default_rng(seed)
    batch = rng.standard_normal((count, 3, image_size, image_size), dtype=np.float32)
    return InputSet(batch, "random", f"{count} seeded N(0,1) tensors (seed {seed})")


def image_inputs(directory: Path, count: int, meta: ModelMeta, seed: int = 0) -> InputSet:
    """`count` images drawn (seeded) from an ImageFolder tree or a flat folder of images,
    resized to the model's input size and normalised with the model's statistics."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"--data {directory}: no such directory")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--data {directory}: no image files found")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    size = meta.image_size
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(meta.mean), list(meta.std)),
        ]
    )
    images: list[torch.Tensor] = []
    skipped = 0
    for i in order:
        if len(images) == count:
            break
        try:
            with Image.open(files[i]) as im:
                images.append(transform(im.convert("RGB")))
        except (UnidentifiedImageError, OSError):
            skipped += 1  # one unreadable file must not stop a parity run
    if not images:
        raise DataError(f"--data {directory}: none of the image files could be read")
    batch = torch.stack(images)
    if len(images) < count:  # fewer images than asked: repeat them to fill the batch
        reps = -(-count // len(images))
        batch = batch.repeat(reps, 1, 1, 1)[:count]
    note = f", {skipped} unreadable skipped" if skipped else ""
    desc = f"{min(count, len(files))} images from {directory}{note}"
    return InputSet(batch.numpy().astype(np.float32), "images", desc)
