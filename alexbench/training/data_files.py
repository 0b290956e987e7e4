"""Image files on disk: finding an ImageFolder's samples and decoding one image to a square."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision.io as tio
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError

from alexbench.errors import DataError

# What PIL raises for a file it cannot read as an image.
_PIL_UNREADABLE = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def image_files(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        ]
    return found


def find_samples(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted folder names, as ImageFolder assigns them) and (path, label) pairs."""
    try:
        classes = sorted(
            d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
    except OSError as e:
        raise DataError(f"{root}: cannot list directory ({e.strerror or e})") from e
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/*.jpg)")
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        files = image_files(root / name)
        if not files:
            exts = ", ".join(IMAGE_EXTENSIONS[:4])
            raise DataError(f"{root / name}: class folder has no images ({exts}, ...)")
        samples += [(f, label) for f in files]
    return classes, samples


def _decode_raw(path: str) -> torch.Tensor | None:
    """uint8 (3, H, W), or None when the file is not a readable image."""
    try:
        return tio.decode_image(tio.read_file(path), mode=tio.ImageReadMode.RGB)
    except (RuntimeError, ValueError, OSError):
        pass  # torchvision's decoders cover JPEG/PNG/WebP/GIF; PIL reads the rest
    try:
        with Image.open(path) as im:
            return TF.pil_to_tensor(im.convert("RGB"))
    except _PIL_UNREADABLE:
        return None


def fit_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size`, then centre-crop to size x size."""
    h, w = img.shape[-2:]
    if h == w == size:
        return img
    img = TF.resize(img, [size], antialias=True)
    return TF.center_crop(img, [size, size])


def decode_image(path: str, resolution: int) -> torch.Tensor | None:
    img = _decode_raw(path)
    return None if img is None else fit_square(img, resolution)


_RESOLUTION_PROBES = 64


def resize_size(image_size: int, crop_fraction: float) -> int:
    """Side to resize to before a centre crop keeps `crop_fraction` of it: 224 / 0.875 = 256."""
    return max(image_size, round(image_size / crop_fraction))


def _header_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the file header alone (PIL decodes no pixels here), or None."""
    try:
        with Image.open(path) as im:
            return im.size
    except _PIL_UNREADABLE:
        return None


def resolution_for(paths: Sequence[str], image_size: int) -> int:
    """Cache resolution. When the images are all one square size no larger than the output
    size they stay native (CIFAR's 32 px is upsampled per batch: 4x less memory than at 64 px);
    anything else is stored at the output size. Headers are probed across the whole list, not
    just the first file, so a folder of mixed sizes is not shrunk to its first image's size."""
    step = max(1, len(paths) // _RESOLUTION_PROBES)
    probes = [*paths[::step], *paths[-1:]]
    sizes = {size for size in map(_header_size, probes) if size is not None}
    if len(sizes) == 1:
        ((width, height),) = sizes
        if width == height <= image_size:
            return width
    return image_size
