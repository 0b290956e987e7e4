"""Inputs for parity checks and benchmarks: seeded random tensors or real images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexbench.checkpoint import ModelMeta
from alexbench.errors import DataError
from alexbench.fileio import not_a_folder


@dataclass(frozen=True)
class InputSet:
    batch: np.ndarray  # (N, 3, H, W) float32, already normalised
    kind: str  # "random" or "images"
    description: str
    # What fell short of the request (unreadable files skipped, too few images repeated), for a
    # warning: calibrating on 30 images repeated to 256 must not pass without a word.
    shortfall: str = ""
    directory: str = ""  # images: the folder they were drawn from, absolute
    files: tuple[str, ...] = ()  # images: the files decoded, in the order drawn


def random_inputs(
    count: int, image_size: int, seed: int = 0, count_option: str = "--batch"
) -> InputSet:
    # Standard normal in normalised space: the statistics of a normalised natural image.
    _require_memory(count, count, image_size, count_option, bytes_per_pixel=4)
    rng = np.random.default_rng(seed)
    batch = rng.standard_normal((count, 3, image_size, image_size), dtype=np.float32)
    return InputSet(batch, "random", f"{count} seeded N(0,1) tensors (seed {seed})")


def image_inputs(
    directory: Path,
    count: int,
    meta: ModelMeta,
    seed: int = 0,
    option: str = "--data-dir",
    crop_fraction: float = 1.0,
    from_end: bool = False,
    repeat: bool = True,
    count_option: str = "--batch",
) -> InputSet:
    """`count` images drawn (seeded) from an ImageFolder tree or a flat folder of images,
    decoded, resized and centre-cropped like evaluation data (`crop_fraction`: the model's
    `eval_crop_fraction`), then normalised with the model's statistics. `from_end`: taken
    from the far end of the seeded order, so that verify's images are not the calibration
    images (drawn from the near end) when both options name one folder. `repeat`: a folder with
    fewer images than `count` fills the batch by repeating them (a batch has a shape); without
    it (calibration: a repeated image adds no activation range) it gives the images it has."""
    # Imported here: it pulls in torchvision's decoders, which `export`/`bench` rarely need.
    import torchvision.transforms.v2.functional as TF

    from alexbench.training.data_files import decode_image, image_files, resize_size

    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{option} {directory}: {not_a_folder(directory)}")
    files = image_files(directory)
    if not files:
        raise DataError(f"{option} {directory}: no image files found")
    used = count if repeat else min(count, len(files))
    _require_memory(count, used, meta.image_size, count_option)
    images: list[torch.Tensor] = []
    taken: list[str] = []
    skipped = 0
    for i in draw_order(len(files), seed, from_end):
        if len(images) == count:
            break
        img = decode_image(files[i], resize_size(meta.image_size, crop_fraction))
        if img is not None and crop_fraction < 1.0:
            img = TF.center_crop(img, [meta.image_size, meta.image_size])
        if img is None:
            skipped += 1  # one unreadable file must not stop a parity run
        else:
            images.append(img)
            taken.append(files[i])
    if not images:
        raise DataError(f"{option} {directory}: none of the image files could be read")
    mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.std).view(1, 3, 1, 1)
    batch = (torch.stack(images).float() / 255 - mean) / std
    found = len(images)
    if found < count and repeat:  # fewer images than asked: repeat them to fill the batch
        batch = batch.repeat(-(-count // found), 1, 1, 1)[:count]
    note = f", {skipped} unreadable skipped" if skipped else ""
    crop = f", centre crop {crop_fraction:g}" if crop_fraction < 1.0 else ""
    short = [f"{skipped} unreadable file(s) skipped"] if skipped else []
    if found < count:
        short.append(
            f"{found} image(s) repeated to make the {count} asked for"
            if repeat
            else f"only {found} image(s) for the {count} asked for by {count_option}: all used"
        )
    # Absolute: the description goes into manifests and reports read from other folders.
    where = directory.absolute()
    return InputSet(
        batch.numpy().astype(np.float32),
        "images",
        f"{found} images from {where}{crop}{note}",
        "; ".join(short),
        str(where),
        tuple(taken),
    )


def draw_order(count: int, seed: int = 0, from_end: bool = False) -> np.ndarray:
    """The order `image_inputs` draws a folder's `count` files in (image_files' order indexed):
    seeded, and reversed from the far end (verify's, against calibration's near end)."""
    order = np.random.default_rng(seed).permutation(count)
    return order[::-1] if from_end else order


# Bytes per pixel while the images are made: the decoded uint8 copy, the float32 batch and its
# normalised float32 copy, and the numpy float32 result.
_BYTES_PER_INPUT_PIXEL = 1 + 3 * 4


def _require_memory(
    count: int,
    images: int,
    image_size: int,
    count_option: str,
    bytes_per_pixel: int = _BYTES_PER_INPUT_PIXEL,
) -> None:
    """Refuse, in one line naming the option, a number of images whose tensors cannot fit in the
    memory available (`--calib-samples 1000000000` ended in a bare out-of-memory error naming
    --batch and --image-size, after the kernel had made room)."""
    from alexbench.environment import available_memory_bytes

    need = images * 3 * image_size**2 * bytes_per_pixel
    available = available_memory_bytes()
    if available is not None and need > available:
        raise DataError(
            f"{count_option} {count:,}: {images:,} images of {image_size} px need about "
            f"{need / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB available"
        )
