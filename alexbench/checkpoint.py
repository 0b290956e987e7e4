"""Loading weights safely and saving the project's own checkpoints.

Every file is loaded with `torch.load(weights_only=True)`: a checkpoint is untrusted input, and
the restricted unpickler refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from alexbench.errors import CheckpointError, InputError
from alexbench.fileio import atomic_path, is_int, is_number
from alexbench.model import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_NUM_CLASSES,
    IN_CHANNELS,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    AlexNet,
    build_alexnet,
    expected_shapes,
    num_classes_of,
    state_dict_sha256,
)

CHECKPOINT_FORMAT = "alexbench-checkpoint"
CHECKPOINT_VERSION = 1
# More classes than any real dataset: a bigger count in a file is corrupt, not a model (a
# (10**9, 4096) last layer would be 16 TB), and is refused before anything is allocated.
MAX_NUM_CLASSES = 1_000_000
CLASSIFIER_WEIGHT = "classifier.6.weight"  # (num_classes, 4096): where the class count is read
DDP_PREFIX = "module."  # what DistributedDataParallel / DataParallel put before every key


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

    @classmethod
    def from_checkpoint(
        cls, path: Path, raw: Any, num_classes: int = DEFAULT_NUM_CLASSES
    ) -> ModelMeta:
        """A checkpoint's `meta`, every field checked, in one-line errors naming the file and
        the field (not a CLI option: the user gave none). Fields a file leaves out take their
        defaults (`num_classes`: the weights' count) and unknown ones are ignored, as they
        always were; a num_classes it states is checked against the weights by the caller."""
        if raw is None:  # no metadata: the defaults (its num_classes must match the weights)
            raw = {}
        if not isinstance(raw, dict):
            raise CheckpointError(
                f"{path}: metadata 'meta' is a {type(raw).__name__}, expected a mapping"
            )

        def bad(name: str, problem: str) -> CheckpointError:
            return CheckpointError(f"{path}: metadata '{name}' {problem}")

        def integer(name: str, low: int, high: int | None = None) -> int:
            v = raw[name]
            if not is_int(v):
                raise bad(name, f"is {_show(v)}, expected an integer")
            if v < low:
                raise bad(name, f"is {v}, below the minimum of {low}")
            if high is not None and v > high:
                raise bad(name, f"is {v}, above the maximum of {high}")
            return int(v)

        def triple(name: str, positive: bool) -> tuple[float, float, float]:
            v = raw[name]
            if not (isinstance(v, (list, tuple)) and len(v) == IN_CHANNELS):
                raise bad(name, f"is {_show(v)}, expected {IN_CHANNELS} numbers (one per channel)")
            if not all(is_number(x) and math.isfinite(x) for x in v):
                raise bad(name, f"is {_show(v)}, expected {IN_CHANNELS} finite numbers")
            if positive and not all(x > 0 for x in v):
                raise bad(name, f"is {_show(v)}, every value must be above 0")
            return tuple(float(x) for x in v)  # type: ignore[return-value]

        meta = cls(num_classes=num_classes)
        if "num_classes" in raw:
            meta.num_classes = integer("num_classes", 1, MAX_NUM_CLASSES)
        if "image_size" in raw:
            meta.image_size = integer("image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        if ("mean" in raw) != ("std" in raw):  # one alone mixed with the other's default
            given, missing = ("mean", "std") if "mean" in raw else ("std", "mean")
            raise bad(missing, f"is missing while '{given}' is given: the normalisation needs both")
        if "mean" in raw:
            meta.mean = triple("mean", positive=False)
        if "std" in raw:
            meta.std = triple("std", positive=True)
        names = raw.get("class_names")
        if not (names is None or (isinstance(names, (list, tuple)) and len(names) == 0)):
            if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
                raise bad("class_names", f"is {_show(names)}, expected a list of strings")
            if len(names) != meta.num_classes:
                raise bad(
                    "class_names",
                    f"has {len(names)} names for {meta.num_classes} classes",
                )
            if len(set(names)) != len(names):  # evaluate's rows and folders are matched by name
                twice = next(n for n in names if names.count(n) > 1)
                raise bad("class_names", f"names {_show(twice)} more than once")
            meta.class_names = list(names)
        provenance = raw.get("provenance")
        if provenance is not None:
            if not isinstance(provenance, dict):
                raise bad("provenance", f"is {_show(provenance)}, expected a mapping")
            data = provenance.get("data")
            if data is not None and not isinstance(data, dict):
                raise bad("provenance.data", f"is {_show(data)}, expected a mapping")
            meta.provenance = provenance
        return meta


def _show(v: Any, limit: int = 40) -> str:
    """A value for a one-line message: its repr, shortened, on one line."""
    text = " ".join(repr(v).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_format_version(path: Path, obj: dict[str, Any]) -> None:
    """Refuse a checkpoint written by a newer alexbench (or with a nonsensical version). A file
    without a version is read as version 1, which is what the first checkpoints were."""
    version = obj.get("version", CHECKPOINT_VERSION)
    if not is_int(version) or version < 1:
        raise CheckpointError(
            f"{path}: checkpoint 'version' is {_show(version)}, not a format version "
            f"(this build reads version {CHECKPOINT_VERSION})"
        )
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this build reads "
            f"(version {CHECKPOINT_VERSION}): upgrade alexbench to load it"
        )


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


# torchvision scores its ImageNet weights on a 224 centre crop of images resized to 256.
TORCHVISION_CROP = 224 / 256


@dataclass
class LoadedModel:
    model: AlexNet
    meta: ModelMeta
    source: ModelSource
    # A checkpoint's own image size when --image-size asked for another (AlexNet's adaptive pool
    # runs at any size, but its accuracy is the one it was trained at): for the CLI's note.
    trained_image_size: int | None = None

    @property
    def eval_crop_fraction(self) -> float:
        """The centre crop its real-image inputs get (evaluation, calibration, verify): a plain
        state dict is taken for torchvision-style ImageNet weights (224 of 256); alexbench's
        own checkpoints trained, and the seeded model is checked, on whole images."""
        return TORCHVISION_CROP if self.source.kind is SourceKind.WEIGHTS else 1.0

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
        raise _not_a_checkpoint(p, detail) from e
    except Exception as e:
        # (a text file gives KeyError from the legacy unpickler, a truncated zip BadZipFile, ...)
        if p.stat().st_size == 0:
            raise CheckpointError(f"{p}: empty file (0 bytes), not a PyTorch checkpoint") from e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        what = f"{type(e).__name__}: {msg}" if msg and msg != type(e).__name__ else type(e).__name__
        raise _not_a_checkpoint(p, what) from e


def _not_a_checkpoint(p: Path, detail: str) -> CheckpointError:
    """The error for a file torch.load refused: an exported model named as such (torch's own
    words suggest weights_only=False, never the way here), else torch's reason."""
    kind = _exported_kind(p)
    if kind:
        return CheckpointError(
            f"{p}: {kind}, not a checkpoint or state dict: give the weights it was made from"
        )
    return CheckpointError(f"{p}: not a PyTorch checkpoint ({detail})")


def _exported_kind(p: Path) -> str | None:
    """What an exported model file passed as weights is, from its contents (None: not one)."""
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
            if any("/code/" in n for n in names):
                return "a TorchScript program (torch.jit.save)"
            if any(n.endswith("/archive_format") for n in names):
                return "a torch.export program (.pt2)"
            return None
        with p.open("rb") as f:
            if f.read(1) != b"\x08":  # an ONNX ModelProto opens with its ir_version field
                return None
        import onnx

        model = onnx.load(str(p), load_external_data=False)
    except Exception:  # a corrupt zip (BadZipFile), unreadable, or no protobuf: not one
        return None
    return "an ONNX model" if len(model.graph.node) else None


def strip_ddp_prefix(sd: Any) -> Any:
    """A state dict saved from a DistributedDataParallel / DataParallel wrapper, with `module.`
    before every key, as the plain model's; anything else as it is."""
    if (
        isinstance(sd, dict)
        and sd
        and all(isinstance(k, str) and k.startswith(DDP_PREFIX) for k in sd)
    ):
        return {k[len(DDP_PREFIX) :]: v for k, v in sd.items()}
    return sd


def _holds_tensors(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(isinstance(t, torch.Tensor) for t in v.values())


def validate_state_dict(path: Path, sd: Any) -> dict[str, torch.Tensor]:
    """Check names, dimensions, shapes and dtypes against AlexNet's before anything is built
    (a corrupt class count would otherwise allocate the model it describes)."""
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        inner = [k for k, v in sd.items() if _holds_tensors(v)] if isinstance(sd, dict) else []
        hint = (
            f"; it holds one under '{inner[0]}': save that mapping itself "
            f"(torch.save(obj[{inner[0]!r}], path))"
            if len(inner) == 1
            else ""
        )
        raise CheckpointError(
            f"{path}: not a state dict (expected a mapping of names to tensors{hint})"
        )
    if CLASSIFIER_WEIGHT not in sd:
        hint = ""
        if f"{DDP_PREFIX}{CLASSIFIER_WEIGHT}" in sd:
            hint = (
                f"; its keys start with '{DDP_PREFIX}' as a DistributedDataParallel model's do: "
                f"save model.module.state_dict(), or strip '{DDP_PREFIX}' from every key"
            )
        raise CheckpointError(f"{path}: not an AlexNet state dict (no '{CLASSIFIER_WEIGHT}'{hint})")
    fc = sd[CLASSIFIER_WEIGHT]
    features = expected_shapes(1)[CLASSIFIER_WEIGHT][1]
    if fc.ndim != 2:
        raise CheckpointError(
            f"{path}: tensor '{CLASSIFIER_WEIGHT}' has {fc.ndim} dimension(s) "
            f"(shape {tuple(fc.shape)}), expected 2: (num_classes, {features})"
        )
    n = int(fc.shape[0])
    if not 1 <= n <= MAX_NUM_CLASSES:
        raise CheckpointError(
            f"{path}: tensor '{CLASSIFIER_WEIGHT}' has shape {tuple(fc.shape)}: {n} classes "
            f"(expected 1 to {MAX_NUM_CLASSES:,})"
        )
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
        t = sd[key]
        if tuple(t.shape) != shape:
            raise CheckpointError(
                f"{path}: tensor '{key}' has shape {tuple(t.shape)}, expected {shape}"
            )
        if t.layout is not torch.strided or t.device.type == "meta" or not t.is_floating_point():
            what = (
                f"{t.layout} layout"
                if t.layout is not torch.strided
                else "a meta tensor (shape only, no data)"
                if t.device.type == "meta"
                else str(t.dtype)
            )
            raise CheckpointError(
                f"{path}: tensor '{key}' is {what}, expected dense floating-point weights"
            )
        if not torch.isfinite(t).all():  # NaN/inf weights compute NaN everywhere, silently
            raise CheckpointError(f"{path}: tensor '{key}' holds NaN or infinite values")
    return {k: v.float() for k, v in sd.items()}


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

    An explicit `num_classes` must agree with a checkpoint's metadata; an explicit `image_size`
    runs the model at that size (recorded in `trained_image_size` when it differs). For a plain
    state dict they fill in what the file does not say.
    """
    if checkpoint is not None and weights is not None:
        raise InputError("give either --checkpoint or --weights, not both")
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise InputError(f"--image-size {image_size} is below the minimum of {MIN_IMAGE_SIZE}")
    if image_size is not None and image_size > MAX_IMAGE_SIZE:
        raise InputError(f"--image-size {image_size} is above the maximum of {MAX_IMAGE_SIZE}")
    if num_classes is not None and num_classes < 1:
        raise InputError(f"--num-classes must be at least 1, got {num_classes}")
    if num_classes is not None and num_classes > MAX_NUM_CLASSES:
        raise InputError(f"--num-classes must be at most {MAX_NUM_CLASSES:,}, got {num_classes}")

    if checkpoint is None and weights is None:
        meta = ModelMeta(num_classes=num_classes or DEFAULT_NUM_CLASSES)
        meta.image_size = image_size or DEFAULT_IMAGE_SIZE
        if normalization is not None:
            meta.mean, meta.std = NORMALIZATION_STATS[normalization]
        model = build_alexnet(num_classes=meta.num_classes, seed=seed)
        return LoadedModel(model, meta, ModelSource(SourceKind.SEEDED, seed=seed))

    path = Path(checkpoint if checkpoint is not None else weights)  # type: ignore[arg-type]
    obj = safe_load(path)
    trained_at: int | None = None
    if checkpoint is not None:
        if not (isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT):
            raise CheckpointError(
                f"{path}: not an alexbench checkpoint (use --weights for a plain state dict)"
            )
        check_format_version(path, obj)
        sd = validate_state_dict(path, strip_ddp_prefix(obj.get("state_dict")))
        meta = ModelMeta.from_checkpoint(path, obj.get("meta"), num_classes_of(sd))
        if num_classes_of(sd) != meta.num_classes:
            raise CheckpointError(
                f"{path}: metadata 'num_classes' is {meta.num_classes}, "
                f"but the weights have {num_classes_of(sd)} classes"
            )
        if num_classes is not None and num_classes != meta.num_classes:
            raise CheckpointError(
                f"{path}: checkpoint has {meta.num_classes} classes, "
                f"but {num_classes} were asked for"
            )
        if image_size is not None and image_size != meta.image_size:
            trained_at, meta.image_size = meta.image_size, image_size
        kind = SourceKind.CHECKPOINT
    else:
        if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
            # Read as plain weights it would lose its image size, normalisation and classes.
            raise CheckpointError(
                f"{path}: is an alexbench checkpoint, not plain weights: use --checkpoint {path}"
            )
        sd = validate_state_dict(path, strip_ddp_prefix(obj))
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
    return LoadedModel(model.eval(), meta, source, trained_at)


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
