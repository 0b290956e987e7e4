"""Image files on disk: finding an ImageFolder's samples and decoding one image to a square."""

from __future__ import annotations

import io
import math
import os
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.io as tio
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError

from alexbench.errors import DataError

# What PIL raises for a file it cannot read as an image.
_PIL_UNREADABLE = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)
# torchvision's ImageFolder's list (IMG_EXTENSIONS), so a folder holds the same images here.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image_name(name: str) -> bool:
    """An image file's name as ImageFolder lists it: a known extension, not hidden."""
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def subfolders(root: Path) -> list[str]:
    """The names of `root`'s folders (links followed), sorted, hidden ones left out; OSError
    where `root` cannot be listed."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def image_files(folder: Path) -> list[str]:
    """Every image file under `folder`, sorted; hidden files and folders left out. Linked
    folders are followed, as torchvision's ImageFolder follows them, each real folder once (a
    loop is read once) and never one that holds `folder` (its other classes are not this one)."""
    return _walk_images(folder)[0]


def _walk_images(folder: Path) -> tuple[list[str], set[str]]:
    """`image_files` and the real folders they were found in."""
    found = []
    seen: set[str] = set()
    top = os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        # A link to a folder above this one would read its sibling classes as this class.
        if real in seen or top.startswith(real + os.sep):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if is_image_name(f)]
    return found, seen


def refuse_loose_images(root: Path, beside: str) -> None:
    """ImageFolder leaves images beside the class (or split) folders out without a word: they
    have no class. A training or scored set that silently lacks them is refused instead."""
    try:
        loose = sorted(f.name for f in root.iterdir() if f.is_file() and is_image_name(f.name))
    except OSError:
        return  # the listing that follows names the folder that cannot be read
    if loose:
        more = f" and {len(loose) - 1} more" if len(loose) > 1 else ""
        raise DataError(
            f"{root}: {loose[0]}{more} beside {beside} would be ignored (an image needs a "
            "class): move it into its class's folder, or out of this folder"
        )


def class_names(root: Path) -> list[str]:
    """An ImageFolder's class names: its folders' names, sorted, as ImageFolder numbers them;
    a one-line DataError where `root` cannot be listed."""
    try:
        return subfolders(root)
    except OSError as e:
        raise DataError(f"{root}: cannot list directory ({e.strerror or e})") from e


def find_samples(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted folder names, as ImageFolder assigns them) and (path, label) pairs."""
    classes = class_names(root)
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/*.jpg)")
    # Two folders whose names differ only in Unicode form (composed on one system, decomposed
    # by a macOS unzip) print the same in every table and file, and evaluate matches names
    # in composed form: two classes that are one to a reader (an outside audit).
    composed: dict[str, str] = {}
    for name in classes:
        if (other := composed.setdefault(unicodedata.normalize("NFC", name), name)) != name:
            raise DataError(
                f"{root}: class folders {other!r} and {name!r} differ only in their Unicode "
                "form (composed and decomposed accents): they read as one class; merge them"
            )
    refuse_loose_images(root, "the class folders")
    samples: list[tuple[str, int]] = []
    owner: dict[str, str] = {}  # real folder -> the class that read it
    for label, name in enumerate(classes):
        files, folders = _walk_images(root / name)
        if not files:
            exts = ", ".join(IMAGE_EXTENSIONS[:4])
            raise DataError(f"{root / name}: class folder has no images ({exts}, ...)")
        for real in sorted(folders):
            # A class folder linked to another class's folder or into it, or a link inside
            # a class to another (cat/more -> ../dog): the same images under two labels.
            if owner.setdefault(real, name) != name:
                raise DataError(
                    f"{root}: classes {owner[real]} and {name} both hold {real} (through a "
                    "link): its images would be in two classes"
                )
        samples += [(f, label) for f in files]
    return classes, samples


def _pixel_limit() -> float:
    """PIL's decompression-bomb limit (about 89 million pixels), the one limit for every size."""
    return Image.MAX_IMAGE_PIXELS or math.inf


def _too_many_pixels(data: torch.Tensor) -> bool:
    """Whether the header (read by PIL without decoding) declares more pixels than PIL's
    decompression-bomb limit: a 745 KB PNG of 16000 x 16000 decodes to 768 MB, and torchvision's
    decoders, which run first, have no such limit. Formats PIL cannot read pass on."""
    try:
        with warnings.catch_warnings():  # over the limit is refused here, not warned about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.numpy().tobytes())) as im:
                return im.width * im.height > _pixel_limit()
    except Image.DecompressionBombError:
        return True
    except _PIL_UNREADABLE:
        return False


def _decode_raw(path: str) -> torch.Tensor | None:
    """uint8 (3, H, W), or None when the file is not a readable image. 16-bit images (PNG, TIFF)
    are scaled to 8 bits, never wrapped or clipped: everything downstream reads uint8 / 255."""
    try:
        data = tio.read_file(path)
    except (RuntimeError, OSError):
        return None
    if _too_many_pixels(data):
        return None
    try:
        img = tio.decode_image(data, mode=tio.ImageReadMode.RGB)
        if img.ndim == 4:  # an animated GIF, whatever its name says: (frames, 3, H, W)
            img = img[0]  # its first frame, as PIL (and so torchvision's ImageFolder) reads it
        return img if img.dtype == torch.uint8 else TF.to_dtype(img, torch.uint8, scale=True)
    except (RuntimeError, ValueError, OSError):
        pass  # torchvision's decoders cover JPEG/PNG/WebP/GIF; PIL reads the rest
    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit grey: PIL's RGB clips it
                stored_16 = _stored_16_bit(im)  # before the pixels load: PIL drops its tiles
                values = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
                # 32-bit samples holding 8-bit ones, unless the file says 16-bit (a dark
                # 16-bit PGM opens as "I" too, and would be read 256x too bright)
                if im.mode == "I" and not stored_16 and values.max() <= 255:
                    img = torch.from_numpy(values.astype(np.uint8))
                else:
                    wide = torch.from_numpy(values.astype(np.uint16))
                    img = TF.to_dtype(wide, torch.uint8, scale=True)
                return img.unsqueeze(0).expand(3, -1, -1).contiguous()
            return TF.pil_to_tensor(im.convert("RGB"))
    except _PIL_UNREADABLE:
        return None


def _stored_16_bit(im: Image.Image) -> bool:
    """Whether the file stores 16-bit samples, by the raw mode PIL will decode it with
    ("I;16B" for a 16-bit PGM, which opens as mode "I"); read before the pixels are loaded."""
    for tile in im.tile:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        if args and isinstance(args[0], str) and args[0].startswith("I;16"):
            return True
    return False


def fit_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size`, then centre-crop to size x size."""
    h, w = img.shape[-2:]
    if h == w == size:
        return img
    img = TF.resize(img, [size], antialias=True)
    return TF.center_crop(img, [size, size])


class NotNative(Exception):
    """An image whose size differs from the native resolution its folder was probed at."""


def decode_image(path: str, resolution: int, native: bool = False) -> torch.Tensor | None:
    """uint8 (3, resolution, resolution), or None when unreadable. `native`: the image must
    already be that size (the folder is stored at its own size), else NotNative."""
    img = _decode_raw(path)
    if img is None:
        return None
    h, w = img.shape[-2:]
    # A sliver (20000 x 1 px) is small on disk and decoded, but its shorter side resized to
    # `resolution` is gigabytes: left out like an image over the limit, not an out-of-memory.
    if resolution * (resolution * max(h, w) // max(1, min(h, w))) > _pixel_limit():
        return None
    if native and tuple(img.shape[-2:]) != (resolution, resolution):
        raise NotNative(path)
    return fit_square(img, resolution)


_RESOLUTION_PROBES = 64


def resize_size(image_size: int, crop_fraction: float) -> int:
    """Side to resize to before a centre crop keeps `crop_fraction` of it: 224 / 0.875 = 256."""
    return max(image_size, round(image_size / crop_fraction))


def preprocessing(image_size: int, crop_fraction: float) -> str:
    """How evaluation, calibration and verify turn an image file into the model's input (what
    `fit_square` and the centre crop after it do), for consumers of exported files."""
    resize = resize_size(image_size, crop_fraction)
    return (
        f"decode as 8-bit RGB, resize the shorter side to {resize} px (bilinear, antialiased), "
        f"centre-crop {image_size}x{image_size}, then (pixel / 255 - mean) / std per channel"
    )


def _header_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the file header alone (PIL decodes no pixels here), or None."""
    try:
        with warnings.catch_warnings():  # a large image is decoded (or refused) later, silently
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except _PIL_UNREADABLE:
        return None


def resolution_for(paths: Sequence[str], image_size: int, every: bool = False) -> int:
    """Cache resolution. When the images are all one square size no larger than the output
    size they stay native (CIFAR's 32 px is upsampled per batch: 4x less memory than at 64 px);
    anything else is stored at the output size. By default ~64 headers are probed across the
    list; a native answer is then only a guess, which decoding with `native=True` confirms
    (`every` reads every header instead, for folders that are streamed, not decoded up front)."""
    step = 1 if every else max(1, len(paths) // _RESOLUTION_PROBES)
    probes = [*paths[::step], *paths[-1:]]
    sizes = {size for size in map(_header_size, probes) if size is not None}
    if len(sizes) == 1:
        ((width, height),) = sizes
        if width == height <= image_size:
            return width
    return image_size
