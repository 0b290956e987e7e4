"""Loading weights safely and saving the project's own checkpoints.

Every file is loaded with `torch.load(weights_only=True)`: a checkpoint is untrusted input, and
the restricted unpickler refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import warnings
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from alexbench.errors import CheckpointError, InputError
from alexbench.fileio import atomic_path
from alexbench.model import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_NUM_CLASSES,
    MIN_IMAGE_SIZE,
    AlexNet,
    build_alexnet,
    expected_shapes,
    num_classes_of,
    state_dict_sha256,
)

CHECKPOINT_FORMAT = "alexbench-checkpoint"
CHECKPOINT_VERSION = 1


class Normalization(StrEnum):
    IMAGENET = "imagenet"
    CIFAR10 = "cifar10"
    NONE = "none"


NORMALIZATION_STATS: dict[Normalization, tuple[tuple[float, ...], tuple[float, ...]]] = {
    Normalization.IMAGENET: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    Normalization.CIFAR10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    Normalization.NONE: ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


@dataclass
class ModelMeta:
    """What a model needs beyond its weights to be used correctly."""

    num_classes: int = DEFAULT_NUM_CLASSES
    image_size: int = DEFAULT_IMAGE_SIZE
    class_names: list[str] | None = None
    mean: tuple[float, ...] = NORMALIZATION_STATS[Normalization.IMAGENET][0]
    std: tuple[float, ...] = NORMALIZATION_STATS[Normalization.IMAGENET][1]
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        meta = cls(**known)
        meta.mean, meta.std = tuple(meta.mean), tuple(meta.std)
        return meta


class SourceKind(StrEnum):
    SEEDED = "seeded"
    CHECKPOINT = "checkpoint"
    WEIGHTS = "weights"


@dataclass(frozen=True)
class ModelSource:
    """Where the weights came from; recorded in manifests and results."""

    kind: SourceKind
    path: str | None = None
    seed: int | None = 0
    file_sha256: str | None = None

    def describe(self) -> str:
        if self.kind is SourceKind.SEEDED:
            return f"seeded random init (seed {self.seed})"
        return f"{self.kind.value} {self.path}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


@dataclass
class LoadedModel:
    model: AlexNet
    meta: ModelMeta
    source: ModelSource

    @functools.cached_property
    def weights_sha256(self) -> str:
        """The weights' hash (about 0.35 s for the 1000-class model): computed once, since the
        folder a model's artifacts go to and the export both need it."""
        return state_dict_sha256(self.model)


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_load(path: str | os.PathLike[str]) -> Any:
    """torch.load with weights_only=True and one-line errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol chatter
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        bad_global = next(
            (ln for ln in lines if "unsupported global" in ln.lower()), None
        )  # torch words it "Unsupported global: GLOBAL x" or "...load unsupported GLOBAL x ..."
        if bad_global:
            raise CheckpointError(
                f"{p}: refused to load: {bad_global.rstrip('.')} (weights_only=True allows "
                "only tensors and plain data; a checkpoint must never run code)"
            ) from e
        detail = next(
            (ln for ln in lines if ln.startswith("Unsupported")), lines[-1] if lines else ""
        )
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({detail})") from e
    except Exception as e:
        # (a text file gives KeyError from the legacy unpickler, a truncated zip BadZipFile, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({type(e).__name__}: {msg})") from e


def validate_state_dict(path: Path, sd: Any) -> dict[str, torch.Tensor]:
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    if "classifier.6.weight" not in sd:
        raise CheckpointError(f"{path}: not an AlexNet state dict (no 'classifier.6.weight')")
    n = num_classes_of(sd)
    want = expected_shapes(n)
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}")
        raise CheckpointError(f"{path}: not an AlexNet state dict ({'; '.join(parts)})")
    for key, shape in want.items():
        if tuple(sd[key].shape) != shape:
            raise CheckpointError(
                f"{path}: tensor '{key}' has shape {tuple(sd[key].shape)}, expected {shape}"
            )
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def load_model(
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    image_size: int | None = None,
    normalization: Normalization | None = None,
) -> LoadedModel:
    """Build the model from a project checkpoint, a plain torchvision state dict, or a seed.

    Explicit `num_classes` / `image_size` must agree with a checkpoint's metadata; for a plain
    state dict they fill in what the file does not say.
    """
    if checkpoint is not None and weights is not None:
        raise InputError("give either --checkpoint or --weights, not both")
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise InputError(f"--image-size {image_size} is below the minimum of {MIN_IMAGE_SIZE}")
    if num_classes is not None and num_classes < 1:
        raise InputError(f"--num-classes must be at least 1, got {num_classes}")

    if checkpoint is None and weights is None:
        meta = ModelMeta(num_classes=num_classes or DEFAULT_NUM_CLASSES)
        meta.image_size = image_size or DEFAULT_IMAGE_SIZE
        if normalization is not None:
            meta.mean, meta.std = NORMALIZATION_STATS[normalization]
        model = build_alexnet(num_classes=meta.num_classes, seed=seed)
        return LoadedModel(model, meta, ModelSource(SourceKind.SEEDED, seed=seed))

    path = Path(checkpoint if checkpoint is not None else weights)  # type: ignore[arg-type]
    obj = safe_load(path)
    if checkpoint is not None:
        if not (isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT):
            raise CheckpointError(
                f"{path}: not an alexbench checkpoint (use --weights for a plain state dict)"
            )
        sd = validate_state_dict(path, obj.get("state_dict"))
        meta = ModelMeta.from_dict(obj.get("meta") or {})
        if num_classes_of(sd) != meta.num_classes:
            raise CheckpointError(f"{path}: metadata num_classes disagrees with the weights")
        if num_classes is not None and num_classes != meta.num_classes:
            raise CheckpointError(
                f"{path}: checkpoint has {meta.num_classes} classes, "
                f"but {num_classes} were asked for"
            )
        if image_size is not None:
            meta.image_size = image_size
        kind = SourceKind.CHECKPOINT
    else:
        if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
            # Read as plain weights it would lose its image size, normalisation and classes.
            raise CheckpointError(
                f"{path}: is an alexbench checkpoint, not plain weights: use --checkpoint {path}"
            )
        sd = validate_state_dict(path, obj)
        n = num_classes_of(sd)
        if num_classes is not None and num_classes != n:
            raise CheckpointError(
                f"{path}: weights have {n} classes, but --num-classes {num_classes} was given"
            )
        meta = ModelMeta(num_classes=n, image_size=image_size or DEFAULT_IMAGE_SIZE)
        norm = normalization or Normalization.IMAGENET
        meta.mean, meta.std = NORMALIZATION_STATS[norm]
        kind = SourceKind.WEIGHTS
    model = AlexNet(meta.num_classes)
    model.load_state_dict(sd)
    # Absolute: manifests and results files are read from other working directories.
    source = ModelSource(kind, str(Path(path).resolve()), None, file_sha256(path))
    return LoadedModel(model.eval(), meta, source)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    meta: ModelMeta,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; only tensors and plain types, so weights_only can read it."""
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": "alexnet",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": asdict(meta),
    }
    payload["meta"]["mean"] = list(meta.mean)
    payload["meta"]["std"] = list(meta.std)
    if extra:
        payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
