"""Image files on disk: finding an ImageFolder's samples and decoding one image to a square."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision.io as tio
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError

from alexbench.errors import DataError

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
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
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


def resolution_for(first_image: str, image_size: int) -> int:
    """Cache resolution: a square image no larger than the output size stays native (CIFAR's
    32 px is upsampled per batch, 16x less memory than 128 px); anything else is stored at the
    output size."""
    img = _decode_raw(first_image)
    if img is not None and img.shape[-1] == img.shape[-2] and img.shape[-1] <= image_size:
        return int(img.shape[-1])
    return image_size
