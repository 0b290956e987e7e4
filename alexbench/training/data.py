"""Datasets for training and evaluation: CIFAR-10, an ImageFolder tree, or a synthetic set.

Small datasets are decoded once into a uint8 tensor (N, 3, h, w) (`MemorySplit`); every batch is
then augmented, resized and normalised with batched tensor ops on the training device (see
batches.py). Per-image PIL transforms in worker processes would cost more than AlexNet's own
step at 64 px on a 2-core machine. Folders too big to hold decoded are streamed (`StreamSplit`)
through a DataLoader whose workers only decode and resize.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from alexbench.checkpoint import NORMALIZATION_STATS, LoadedModel, Normalization
from alexbench.errors import CheckpointError, DataError, InputError
from alexbench.fileio import is_int, is_number, not_a_folder
from alexbench.model import DEFAULT_IMAGE_SIZE, MAX_IMAGE_SIZE, MAX_SEED, MIN_IMAGE_SIZE
from alexbench.training.data_files import (
    NotNative,
    class_names,
    decode_image,
    find_samples,
    is_image_name,
    refuse_loose_images,
    resize_size,
    resolution_for,
    subfolders,
)
from alexbench.training.seen import training_sample

DEFAULT_CACHE_LIMIT_BYTES = 2 * 1024**3  # decoded CIFAR-10 is 150 MB; ImageNet-size folders stream
SYNTHETIC_RESOLUTION = 32


class DatasetKind(StrEnum):
    CIFAR10 = "cifar10"
    IMAGEFOLDER = "imagefolder"
    SYNTHETIC = "synthetic"


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"  # DIR/val, else DIR/test (CIFAR-10: the test batch), else a held-out part of train


class Augment(StrEnum):
    """Training augmentation; validation data is never augmented."""

    FULL = "full"  # random crop with padding, flip, small rotation, colour jitter (the guide's)
    CROP_FLIP = "crop-flip"  # random crop with padding and flip: the classic CIFAR recipe
    NONE = "none"


class SplitMethod(StrEnum):
    """How an ImageFolder without val/ is split into train and held-out images."""

    # Each image by itself: held out when a seeded hash of its path within the folder falls
    # below the fraction (the split TensorFlow's retraining example made). Adding or removing
    # images moves no other image across, so a model's held-out images stay held out.
    HASH = "hash"
    # A seeded shuffle of the whole list (runs recorded before "hash"): one image more or less
    # reshuffles everything, and images a model trained on become "held out".
    SHUFFLE = "shuffle"


class NormalizeChoice(StrEnum):
    DATASET = "dataset"  # CIFAR-10's table, or measured from the decoded training images
    IMAGENET = "imagenet"
    CIFAR10 = "cifar10"
    NONE = "none"


@dataclass(frozen=True)
class DataSpec:
    kind: DatasetKind = DatasetKind.CIFAR10
    data_dir: Path = Path("data")
    image_size: int = DEFAULT_IMAGE_SIZE
    augment: Augment = Augment.CROP_FLIP
    val_fraction: float = 0.1
    split_seed: int = 0
    download: bool = False
    normalize: NormalizeChoice = NormalizeChoice.DATASET
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES
    synthetic_size: int = 2000
    synthetic_classes: int = 10
    # Evaluation's centre crop: the share of the resized image kept. 1.0 sees the whole image
    # (how this project trains); torchvision scores its ImageNet weights at 224/256 = 0.875.
    crop_fraction: float = 1.0
    split_method: SplitMethod = SplitMethod.HASH

    def __post_init__(self) -> None:
        if self.image_size < MIN_IMAGE_SIZE:
            raise InputError(
                f"--image-size {self.image_size} is below the minimum of {MIN_IMAGE_SIZE}"
            )
        if self.image_size > MAX_IMAGE_SIZE:
            raise InputError(
                f"--image-size {self.image_size} is above the maximum of {MAX_IMAGE_SIZE}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        check_crop_fraction(self.crop_fraction)

    @property
    def resize_size(self) -> int:
        """The square side an image is resized to before the centre crop to image_size."""
        return resize_size(self.image_size, self.crop_fraction)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            kind=self.kind.value,
            data_dir=str(self.data_dir),
            normalize=self.normalize.value,
            augment=self.augment.value,
            split_method=self.split_method.value,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known.update(
            kind=DatasetKind(known.get("kind", "cifar10")),
            data_dir=Path(known.get("data_dir", "data")),
            normalize=NormalizeChoice(known.get("normalize", "dataset")),
            augment=_augment_from(known.get("augment", Augment.CROP_FLIP.value)),
            # Recorded before the method was: those runs split by shuffling.
            split_method=SplitMethod(known.get("split_method", SplitMethod.SHUFFLE.value)),
        )
        return cls(**known)


# Below this the image is resized to over 5x the input size and most of it thrown away (0.001
# resized a 64 px input's images to 64,000 px); torchvision's recipes use 0.875 to 1.
MIN_CROP_FRACTION = 0.2


def _training(splits: Iterable[Split]) -> bool:
    """Data loaded for training (both splits), not the one split evaluate --split train reads:
    the class-count checks and the streamed-statistics note apply to training only."""
    return set(splits) == {Split.TRAIN, Split.VAL}


def _values(enum: type[StrEnum]) -> list[str]:
    return [m.value for m in enum]  # a list: `in` on it takes unhashable values too


# What evaluate and tune read of a checkpoint's record of its training data (provenance.data,
# a DataSpec's dict), each with what it must be: a checkpoint edited or written elsewhere fails
# in one line naming the field, not with "unexpected ValueError" deep in the split.
_RECORDED: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "kind": ("one of " + ", ".join(DatasetKind), lambda v: v in _values(DatasetKind)),
    "data_dir": ("a path (a string)", lambda v: isinstance(v, str)),
    "split_method": (
        "one of " + ", ".join(SplitMethod),
        lambda v: v in _values(SplitMethod),
    ),
    "val_fraction": ("a number in [0, 1)", lambda v: is_number(v) and 0 <= v < 1),
    "split_seed": ("an integer from 0", lambda v: is_int(v) and 0 <= v <= MAX_SEED),
    "synthetic_size": ("an integer from 1", lambda v: is_int(v) and v >= 1),
    "crop_fraction": (
        f"a number in [{MIN_CROP_FRACTION}, 1]",
        lambda v: is_number(v) and MIN_CROP_FRACTION <= v <= 1,
    ),
}


def recorded_data(loaded: LoadedModel) -> dict[str, Any]:
    """The checkpoint's record of the data it was trained on (empty when it has none), with
    every field evaluate and tune read checked."""
    data: dict[str, Any] = loaded.meta.provenance.get("data") or {}
    for name, (expected, ok) in _RECORDED.items():
        if name in data and data[name] is not None and not ok(data[name]):
            raise CheckpointError(
                f"{loaded.source.path}: metadata 'provenance.data.{name}' is "
                f"{data[name]!r:.40}, expected {expected}"
            )
    return data


def check_crop_fraction(value: float) -> None:
    if not MIN_CROP_FRACTION <= value <= 1.0:
        raise InputError(f"--crop-fraction must be in [{MIN_CROP_FRACTION}, 1], got {value}")


def _augment_from(value: object) -> Augment:
    # Checkpoints written before the levels existed stored a bool (True meant the full set).
    if isinstance(value, bool):
        return Augment.FULL if value else Augment.NONE
    return Augment(str(value))


@dataclass
class MemorySplit:
    images: torch.Tensor  # uint8 (N, 3, h, w), decoded once
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return int(self.labels.numel())


@dataclass
class StreamSplit:
    samples: list[tuple[str, int]]
    resolution: int  # workers decode and resize each image to this square size

    def __len__(self) -> int:
        return len(self.samples)


SplitData = MemorySplit | StreamSplit


@dataclass
class LoadedData:
    spec: DataSpec
    class_names: list[str]
    splits: dict[Split, SplitData]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    skipped: list[str] = field(default_factory=list)  # unreadable images left out at load time
    # Which files each split holds (an ImageFolder's; None for fixed datasets): a resumed run
    # must see the images it started on (`file_fingerprint`).
    fingerprint: dict[str, Any] | None = None
    # An ImageFolder's files per loaded split, and (training) the content hashes of a sample of
    # its training files, which checkpoints record (`seen.training_sample`).
    files: dict[Split, list[str]] = field(default_factory=dict)
    train_sample: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_data(
    spec: DataSpec, splits: tuple[Split, ...] = (Split.TRAIN, Split.VAL), by_name: bool = False
) -> LoadedData:
    """Load the requested splits; only those are decoded (evaluation never decodes train).
    `by_name`: the consumer matches classes by name (a model that records its class names), so
    a scored val/ or test/ folder keeps its own classes rather than train/'s numbering."""
    if spec.kind is DatasetKind.SYNTHETIC:
        data = _synthetic(spec, splits)
    elif spec.kind is DatasetKind.CIFAR10:
        data = _cifar10(spec, splits)
    else:
        data = _imagefolder(spec, splits, by_name)
    data.mean, data.std = _normalization(spec, data)
    if spec.crop_fraction < 1.0:
        data.description += f"; resize {spec.resize_size}, centre crop {spec.image_size}"
    return data


STREAMED_STATS_NOTE = "; ImageNet mean/std (a streamed folder is not measured)"
MIN_STD = 0.0039  # one grey level (1/255), the floor of a measured channel std


def _normalization(spec: DataSpec, data: LoadedData) -> tuple[tuple[float, ...], ...]:
    if spec.normalize is not NormalizeChoice.DATASET:
        return NORMALIZATION_STATS[Normalization(spec.normalize.value)]
    if spec.kind is DatasetKind.CIFAR10:
        return NORMALIZATION_STATS[Normalization.CIFAR10]
    train = data.splits.get(Split.TRAIN)
    if isinstance(train, MemorySplit):
        return channel_stats(train.images)
    # Measuring a streamed folder would cost a full pass; ImageNet's statistics are the norm there.
    if _training(data.splits):  # its description says so
        data.description += STREAMED_STATS_NOTE
    return NORMALIZATION_STATS[Normalization.IMAGENET]


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and std of uint8 images in [0, 1], in chunks to bound float memory."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    # At least one grey level, after rounding: a channel that never varies (blue always 0)
    # would otherwise be divided by 0, and the run train on NaN.
    return tuple(round(float(v), 4) for v in mean), tuple(
        max(round(float(v), 4), MIN_STD) for v in std
    )


# -- synthetic ---------------------------------------------------------------------------------


def make_synthetic(n: int, num_classes: int, seed: int, resolution: int = 32) -> MemorySplit:
    """A learnable set: each class is a coloured sine grating with its own frequency and angle;
    samples vary phase, brightness and noise. Class prototypes do not depend on `seed`, so
    splits drawn with different seeds share them."""
    proto = torch.Generator().manual_seed(1_000 + num_classes)
    colour = 0.2 + 0.6 * torch.rand(num_classes, 3, generator=proto)
    freq = 1.0 + 3.0 * torch.rand(num_classes, generator=proto)
    angle = math.pi * torch.rand(num_classes, generator=proto)
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    coords = torch.arange(resolution, dtype=torch.float32) / resolution
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    a, f = angle[labels].view(-1, 1, 1), freq[labels].view(-1, 1, 1)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    wave = torch.sin(2 * math.pi * f * (xx * a.cos() + yy * a.sin()) + phase)  # (n, h, w)
    gain = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    x = colour[labels].view(n, 3, 1, 1) * gain * (0.65 + 0.35 * wave.unsqueeze(1))
    x = x + 0.08 * torch.randn(n, 3, resolution, resolution, generator=g)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return MemorySplit(images, labels.to(torch.int64))


def _synthetic(spec: DataSpec, splits: tuple[Split, ...]) -> LoadedData:
    k = spec.synthetic_classes
    sizes = {Split.TRAIN: spec.synthetic_size, Split.VAL: max(k, spec.synthetic_size // 5)}
    seeds = {Split.TRAIN: spec.split_seed * 2 + 1, Split.VAL: spec.split_seed * 2 + 2}
    made = {s: make_synthetic(sizes[s], k, seeds[s], SYNTHETIC_RESOLUTION) for s in splits}
    names = [f"class{i}" for i in range(k)]
    desc = f"synthetic ({k} classes, {sizes[Split.TRAIN]} train / {sizes[Split.VAL]} val)"
    return LoadedData(spec, names, dict(made), (), (), desc)


# -- CIFAR-10 ----------------------------------------------------------------------------------


def _cifar10(spec: DataSpec, splits: tuple[Split, ...]) -> LoadedData:
    from torchvision.datasets import CIFAR10

    root = spec.data_dir
    out: dict[Split, SplitData] = {}
    names: list[str] = []
    made = [p for p in (root, *root.parents) if not p.exists()]  # what a download creates
    for split in splits:
        try:
            ds = CIFAR10(str(root), train=split is Split.TRAIN, download=spec.download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            if spec.download:
                _remove_empty(made)
                raise DataError(f"could not download CIFAR-10 into {root}: {e}") from e
            raise DataError(
                f"CIFAR-10 not found under {root} (looked for {root}/cifar-10-batches-py): "
                "pass --download where the network allows, or --dataset imagefolder "
                "--data-dir DIR for a folder of images"
            ) from e
        except OSError as e:  # offline --download
            _remove_empty(made)  # an empty folder left by a failed download (an audit)
            raise DataError(f"could not download CIFAR-10 into {root}: {e}") from e
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out[split] = MemorySplit(images, torch.tensor(ds.targets, dtype=torch.int64))
        names = list(ds.classes)
    return LoadedData(spec, names, out, (), (), f"CIFAR-10 from {root} (val = test batch)")


def _remove_empty(folders: list[Path]) -> None:
    """The folders a failed download created, deepest first, where it left them empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only an empty folder goes


# -- ImageFolder -------------------------------------------------------------------------------


SPLIT_FOLDERS = ("train", "val", "test")


def _holds_images(folder: Path) -> bool:
    try:
        return any(f.is_file() and is_image_name(f.name) for f in folder.iterdir())
    except OSError:
        return False


def split_folders(root: Path) -> tuple[list[str], list[str]]:
    """(split folders, other folders) of an ImageFolder DIR split as DIR/train (+ val/ or test/),
    or ([], classes) when DIR's folders are its classes. A class may be named train or test:
    beside other folders, a split folder holds class folders and a class folder its images."""
    try:
        names = subfolders(root)
    except OSError:
        return [], []  # a missing or unreadable folder: the loader says so, by name
    splits = [n for n in names if n in SPLIT_FOLDERS]
    others = [n for n in names if n not in SPLIT_FOLDERS]
    if not splits or (others and any(_holds_images(root / n) for n in splits)):
        return [], names
    return splits, others


def training_root(root: Path) -> Path:
    """Where an ImageFolder's training classes are: DIR/train, else DIR itself."""
    return root / "train" if "train" in split_folders(root)[0] else root


def val_folder(root: Path) -> Path | None:
    """An ImageFolder's own validation set: DIR/val, else DIR/test, else None."""
    splits = split_folders(root)[0]
    return next((root / n for n in ("val", "test") if n in splits), None)


def same_training_folder(recorded: str | os.PathLike[str] | None, given: Path) -> bool:
    """Whether `given` is the folder a run recorded and held a share of out, spelled either
    way (DIR or DIR/train, relative or absolute): its held-out split then applies. A run whose
    folder had val/ or test/ held nothing out of DIR/train: that is its training set."""
    if not recorded:
        return False
    run_root = Path(recorded)
    if val_folder(run_root) is not None:
        return run_root.resolve() == Path(given).resolve()
    return training_root(run_root).resolve() == training_root(Path(given)).resolve()


def trained_on_whole(recorded: str | os.PathLike[str] | None, given: Path) -> bool:
    """Whether `given` is the training folder of a run that validated on DIR/val or DIR/test:
    every image in it is one the model trained on."""
    if not recorded or val_folder(Path(recorded)) is None:
        return False
    return (Path(recorded) / "train").resolve() == Path(given).resolve()


def _imagefolder(spec: DataSpec, splits: tuple[Split, ...], by_name: bool = False) -> LoadedData:
    root = spec.data_dir
    if not root.is_dir():
        raise DataError(
            f"{root}: {not_a_folder(root)} (expected an ImageFolder tree "
            f"{root}/train/<class>/*.jpg)"
        )
    train_root = training_root(root)
    val_root = val_folder(root)
    split_names, others = split_folders(root)
    if "train" in split_names and others:  # they would be left out without a word
        raise DataError(
            f"{root}: {', '.join(o + '/' for o in others[:3])}{' ...' if len(others) > 3 else ''}"
            f" beside the split folders {', '.join(n + '/' for n in split_names)} would be "
            "ignored: keep every class inside train/ (and val/ or test/)"
        )
    if split_names:
        refuse_loose_images(root, "the split folders")
    if splits == (Split.VAL,):  # evaluation: a held-out set is scored whole
        names, _, scored, how = _held_out(spec, root, train_root, val_root, by_name)
        data = _finish_imagefolder(spec, splits, names, [], scored, how)
        data.files = {Split.VAL: [p for p, _ in scored]}
        return data
    if val_root is not None and train_root == root:
        # Without this, val/ would be read as one more training class: leaked validation data.
        raise DataError(f"{root} has {val_root.name}/ but no train/: move the classes into train/")
    names, train_samples = find_samples(train_root)
    training = _training(splits)
    if training and len(names) < 2:  # one class: loss 0 and top-1 100% from the first step
        raise DataError(
            f"{train_root}: one class folder ({names[0]}); training needs at least 2 classes"
        )
    if val_root is not None:
        val_names, val_samples = find_samples(val_root)
        val_samples = _remap(val_root, val_names, val_samples, train_root, names)
        how = f"val = {val_root.name}/"
    else:
        if spec.val_fraction <= 0:
            raise DataError(f"{root}: no val/ or test/ split; pass --val-fraction > 0")
        train_samples, val_samples = holdout(
            train_samples, spec.val_fraction, spec.split_seed, spec.split_method, train_root
        )
        how = f"val = {spec.val_fraction:g} of train held out ({_split_words(spec)})"
    data = _finish_imagefolder(spec, splits, names, train_samples, val_samples, how)
    data.fingerprint = file_fingerprint(
        (train_root, train_samples), (val_root or train_root, val_samples)
    )
    data.files = {
        Split.TRAIN: [p for p, _ in train_samples],
        Split.VAL: [p for p, _ in val_samples],
    }
    if Split.TRAIN in splits:
        data.train_sample = training_sample(data.files[Split.TRAIN])
    return data


def _require_every_class(names: list[str], listed: list, decoded: torch.Tensor, held: list) -> None:
    """A class with no readable training image (all unreadable, or all held out for
    validation) would be an output the model never sees a sample of: refused, as an empty class
    folder is. `decoded`: the labels of the readable images, or of every listed one when the
    split is streamed (which meets its unreadable files only as it reads them)."""
    lost = sorted(set(range(len(names))) - set(decoded.unique().tolist()))
    if lost:
        count = sum(y == lost[0] for _, y in listed)
        if count:
            why = f"none of its {count} could be read"
        elif len(held) == 1:  # the least any --val-fraction holds out: a smaller one won't do
            why = "its only image is the one image held out (a val/ folder or more images help)"
        else:
            why = "all went to validation (a smaller --val-fraction or a val/ folder keeps some)"
        more = f" (and {len(lost) - 1} other class(es))" if len(lost) > 1 else ""
        raise DataError(f"class {names[lost[0]]}: no training image, {why}{more}")


def file_fingerprint(
    train: tuple[Path, list[tuple[str, int]]], val: tuple[Path, list[tuple[str, int]]]
) -> dict[str, Any]:
    """Image counts per split and a hash of every (split, path within the split's folder,
    label): a file added, removed, renamed or moved to another class or split changes it; the
    folders' own names and places (DIR or DIR/train given, a moved tree) do not."""
    h = hashlib.sha256()
    for name, (folder, samples) in (("train", train), ("val", val)):
        for path, label in sorted(samples):
            rel = Path(os.path.relpath(path, folder)).as_posix()
            h.update(f"{name}\0{rel}\0{label}\n".encode())
    return {"train": len(train[1]), "val": len(val[1]), "sha256": h.hexdigest()}


def _remap(
    val_root: Path, val_names: list[str], val_samples: list, train_root: Path, names: list[str]
) -> list[tuple[str, int]]:
    """Labels of a val/test folder in the training folder's class order."""
    unknown = sorted(set(val_names) - set(names))
    if unknown:
        raise DataError(f"{val_root}: classes not in {train_root}: {', '.join(unknown[:3])}")
    remap = [names.index(n) for n in val_names]
    return [(p, remap[y]) for p, y in val_samples]


def _held_out(
    spec: DataSpec, root: Path, train_root: Path, val_root: Path | None, by_name: bool = False
) -> tuple[list[str], list, list, str]:
    """What evaluation scores: DIR/val or DIR/test whole (with or without DIR/train beside it);
    else, with --val-fraction 0, every image of DIR (a test set shipped as DIR/<class>/);
    else the part of DIR(/train) that training held out."""
    if val_root is not None:
        val_names, val_samples = find_samples(val_root)
        # A model without class names has output i for train/'s i-th folder: numbered as
        # training numbered them. One with names is matched by name: train/ has no say.
        if train_root != root and not by_name:
            # Its folder names only: its images are not scored (nor listed: ImageNet's 1.3M).
            names = class_names(train_root)
            val_samples = _remap(val_root, val_names, val_samples, train_root, names)
        else:
            names = val_names
        return names, [], val_samples, f"every image of {val_root.name}/"
    names, samples = find_samples(train_root)
    if spec.val_fraction <= 0:
        return names, [], samples, f"every image of {train_root}"
    _, val_samples = holdout(
        samples, spec.val_fraction, spec.split_seed, spec.split_method, train_root
    )
    return (
        names,
        [],
        val_samples,
        f"the {spec.val_fraction:g} of {train_root} held out from training ({_split_words(spec)})",
    )


def _split_words(spec: DataSpec) -> str:
    how = "by path hash" if spec.split_method is SplitMethod.HASH else "shuffled"
    return f"{how}, seed {spec.split_seed}"


def _finish_imagefolder(
    spec: DataSpec,
    splits: tuple[Split, ...],
    names: list[str],
    train_samples: list,
    val_samples: list,
    how: str,
) -> LoadedData:
    root = spec.data_dir
    chosen = {Split.TRAIN: train_samples, Split.VAL: val_samples}
    paths = [p for s in splits for p, _ in chosen[s]]
    n_images = sum(len(chosen[s]) for s in splits)
    resolution = resolution_for(paths, spec.resize_size)  # from sampled headers
    drawn = val_folder(root) is None and spec.val_fraction > 0  # val: a seeded draw of DIR
    while True:
        native = resolution < spec.resize_size
        in_memory = n_images * 3 * resolution**2 <= spec.cache_limit_bytes
        if native and not in_memory:  # streamed: no decode pass to confirm the guess first
            resolution = resolution_for(paths, spec.resize_size, every=True)
            native = resolution < spec.resize_size
        out: dict[Split, SplitData] = {}
        skipped: list[str] = []
        try:
            for split in splits:
                if in_memory:
                    out[split] = _decode_all(
                        chosen[split], resolution, skipped, native, f"the {split.value} split",
                        REDRAW_HINT if split is Split.VAL and drawn else "",
                    )  # fmt: skip
                else:
                    out[split] = StreamSplit(chosen[split], resolution)
            break
        except NotNative:  # an image of another size among the probed ones: all at output size
            resolution = spec.resize_size
    if _training(splits):
        # Decoded: the readable images' labels. Streamed: the listed files' (an unreadable one
        # is met as it is read), so a class held out whole is refused either way.
        train = out[Split.TRAIN]
        labels = (
            train.labels
            if isinstance(train, MemorySplit)
            else torch.tensor([y for _, y in train_samples], dtype=torch.long)
        )
        _require_every_class(names, train_samples, labels, val_samples)
    mode = "decoded in memory" if in_memory else "streamed"
    if skipped:  # history.json and checkpoints carry the description: the count goes with them
        mode += f", {len(skipped)} unreadable left out"
    # Native: kept at the size they are stored at, resized to the model's per batch; "32 px"
    # alone read as the size the model sees.
    size = f"{resolution} px as stored" if native else f"{resolution} px"
    desc = f"ImageFolder {root} ({len(names)} classes, {how}, {n_images} images, {size}, {mode})"
    return LoadedData(spec, names, out, (), (), desc, skipped)


def holdout(
    samples: list[tuple[str, int]],
    fraction: float,
    seed: int,
    method: SplitMethod = SplitMethod.HASH,
    root: str | os.PathLike[str] | None = None,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Seeded split of a sample list into (train, held-out), in the list's order; the same
    seed gives the same split. HASH (see `SplitMethod`) keys each image by its path relative
    to `root` (so the folder may move) and holds out about `fraction` of them, at least one."""
    if method is SplitMethod.SHUFFLE:
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, round(len(samples) * fraction))
        held = set(order[:n_val].tolist())
    else:
        draws = [_path_draw(path, seed, root) for path, _ in samples]
        held = {i for i, u in enumerate(draws) if u < fraction}
        # A tiny folder may draw none or all: then the lowest draw is held out, or the
        # highest trained on (deterministic, and only where a folder has a handful of images).
        if not held and samples:
            held = {min(range(len(samples)), key=draws.__getitem__)}
        elif len(held) == len(samples) > 1:
            held.discard(max(range(len(samples)), key=draws.__getitem__))
    if len(held) >= len(samples):
        raise DataError(f"--val-fraction {fraction} leaves no training images")
    train = [s for i, s in enumerate(samples) if i not in held]
    return train, [s for i, s in enumerate(samples) if i in held]


def _path_draw(path: str, seed: int, root: str | os.PathLike[str] | None) -> float:
    """A uniform number in [0, 1) fixed by the seed and the image's path within `root`."""
    rel = Path(os.path.relpath(path, root) if root is not None else path).as_posix()
    digest = hashlib.sha256(f"{seed}\0{rel}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# A drawn validation split can hold only unreadable files while the training split is fine.
REDRAW_HINT = "; another --split-seed or --val-fraction draws other files"


def none_readable(samples: list[tuple[str, int]], what: str, hint: str = "") -> DataError:
    """The error for a split of which no image could be read, named by the folder that holds
    its images (decoded up front, or found while streaming them)."""
    if len(samples) == 1:  # commonpath would name the file as if it were a folder
        return DataError(f"{samples[0][0]}: {what}'s only image could not be read{hint}")
    where = os.path.commonpath([p for p, _ in samples]) if samples else "?"
    return DataError(f"{where}: none of {what}'s {len(samples)} images could be read{hint}")


def _decode_all(
    samples: list[tuple[str, int]],
    resolution: int,
    skipped: list[str],
    native: bool = False,
    what: str = "the split",
    hint: str = "",
) -> MemorySplit:
    images = torch.empty(len(samples), 3, resolution, resolution, dtype=torch.uint8)
    labels = torch.empty(len(samples), dtype=torch.int64)
    n = 0
    for path, label in samples:
        img = decode_image(path, resolution, native)
        if img is None:
            skipped.append(path)
            continue
        images[n], labels[n] = img, label
        n += 1
    if n == 0:
        raise none_readable(samples, what, hint)
    return MemorySplit(images[:n].clone() if n < len(samples) else images, labels[:n])
