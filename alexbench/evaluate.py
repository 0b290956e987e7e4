"""Evaluation: accuracy of one model through several runtimes and precisions.

Every runtime sees the same normalised float32 batches; the fp32 eager run is the reference,
and each other cell reports its accuracy and how often its top-1 agrees with the reference's.
The reference also gives the per-class accuracy and the confusion matrix.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from alexbench.artifact_checks import file_problems
from alexbench.devices import Device
from alexbench.errors import AlexbenchError, DataError
from alexbench.precision import Precision
from alexbench.runtimes import Backend, ModelBundle, cell_unavailable, get_runtime
from alexbench.runtimes.base import Session
from alexbench.training.batches import BatchLoader, BatchTransform
from alexbench.training.data import LoadedData, Split

REFERENCE = (Backend.EAGER, Precision.FP32)


class CellStatus(StrEnum):
    OK = "ok"
    UNSUPPORTED = "unsupported"
    ERROR = "error"


@dataclass
class EvalCell:
    backend: Backend
    precision: Precision
    status: CellStatus = CellStatus.OK
    reason: str | None = None
    top1: float | None = None
    top5: float | None = None
    agreement: float | None = None  # share of samples whose top-1 equals the reference's
    seconds: float = 0.0  # forward passes only
    requested: bool = True  # False: the reference, run only to compare against
    _preds: list[np.ndarray] = field(default_factory=list, repr=False)
    _hits5: int = 0
    _nonfinite: int = 0  # images whose logits hold inf or NaN: their ranking means nothing


@dataclass
class EvalReport:
    class_names: list[str]
    split: str
    samples: int
    device: Device
    cells: list[EvalCell]
    per_class_accuracy: list[float | None]  # reference model, per true class (None: no images)
    confusion: np.ndarray  # (true, predicted) counts of the reference model
    skipped_images: int = 0  # unreadable files left out of the split (at load or while streaming)

    @property
    def balanced_top1(self) -> float | None:
        """The reference's top-1 with every class weighted once (the mean of the per-class
        accuracies of the classes with images): the headline top-1 weights classes by size."""
        scored = [a for a in self.per_class_accuracy if a is not None]
        return float(np.mean(scored)) if scored else None

    def to_dict(self) -> dict[str, Any]:
        cells = []
        for c in self.cells:
            d = {k: v for k, v in asdict(c).items() if not k.startswith("_")}
            d.update(backend=c.backend.value, precision=c.precision.value, status=c.status.value)
            cells.append(d)
        return {
            "split": self.split,
            "samples": self.samples,
            "device": self.device.value,
            "class_names": self.class_names,
            "reference": {"backend": REFERENCE[0].value, "precision": REFERENCE[1].value},
            "cells": cells,
            "per_class_accuracy": dict(zip(self.class_names, self.per_class_accuracy, strict=True)),
            "balanced_top1": self.balanced_top1,
            "confusion": self.confusion.tolist(),
            "skipped_images": self.skipped_images,
        }


def check_compatible(bundle: ModelBundle, data: LoadedData) -> None:
    """The model must predict the dataset's classes: by name where the model records its class
    names (a test set may hold some of them only), else by count."""
    label_map(bundle, data)


def label_map(bundle: ModelBundle, data: LoadedData) -> np.ndarray | None:
    """The model's class index of each of the dataset's labels, where they differ (a dataset
    with some of the model's classes, matched by name); None when the labels are the model's."""
    meta = bundle.loaded.meta
    # Compared in Unicode's composed form: a folder unpacked on macOS (or by some zip tools)
    # spells "äutö" decomposed, and was refused as a class the model does not predict, beside
    # a name that printed the same.
    names = [unicodedata.normalize("NFC", n) for n in meta.class_names or []]
    given = [unicodedata.normalize("NFC", n) for n in data.class_names]
    if names and names != given:
        unknown = [n for n in given if n not in names]
        if unknown:
            raise DataError(
                f"{data.spec.data_dir} has classes the model does not predict: "
                f"{', '.join(unknown[:4])}{', ...' if len(unknown) > 4 else ''} (its classes: "
                f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
            )
        return np.array([names.index(n) for n in given], dtype=np.int64)
    if meta.num_classes != data.num_classes:
        raise DataError(
            f"the model predicts {meta.num_classes} classes but {data.spec.data_dir} has "
            f"{data.num_classes} ({data.spec.kind.value})"
        )
    return None


def evaluate_model(
    bundle: ModelBundle,
    data: LoadedData,
    backends: list[Backend],
    precisions: list[Precision],
    device: Device,
    *,
    split: Split = Split.VAL,
    batch_size: int = 256,
) -> EvalReport:
    to_model = label_map(bundle, data)
    meta = bundle.loaded.meta
    requested = [(b, p) for b in backends for p in precisions]
    pairs = ([] if REFERENCE in requested else [REFERENCE]) + requested
    cells: list[EvalCell] = []
    sessions: dict[int, Session] = {}
    for i, (b, p) in enumerate(pairs):
        cell = EvalCell(b, p, requested=(b, p) in requested)
        cells.append(cell)
        runtime = get_runtime(b)
        reason = cell_unavailable(runtime, bundle, device, p)
        if reason:
            cell.status, cell.reason = CellStatus.UNSUPPORTED, reason
            continue
        session = None
        try:
            session = runtime.load(bundle, device, p)
            # The wrong file scores as well as the right one (fp32 in the int8 slot): verify
            # and bench fail it, and its accuracy is not the artifact's.
            wrong = file_problems(session.info(), bundle, p, runtime)
        except Exception as e:  # a corrupt file is that cell's error, not the whole run's
            first = (str(e).strip().splitlines() or [""])[0]
            wrong = first if isinstance(e, AlexbenchError) else f"{type(e).__name__}: {first}"
        if wrong:
            cell.status, cell.reason = CellStatus.ERROR, wrong
            if session is not None:
                session.close()
            continue
        sessions[i] = session
    ref = cells[pairs.index(REFERENCE)]  # not first when the user listed it after others
    if ref.status is not CellStatus.OK:
        raise AlexbenchError(f"the eager fp32 reference cannot run: {ref.reason}")
    # Preprocessing runs on the CPU in fp32 for everyone: the cells differ only in the runtime.
    transform = BatchTransform(
        meta.image_size, meta.mean, meta.std, crop_fraction=data.spec.crop_fraction
    )
    cpu = torch.device("cpu")
    loader = BatchLoader(data.splits[split], batch_size, device=cpu, shuffle=False, drop_last=False)
    labels_all: list[np.ndarray] = []
    k = min(5, meta.num_classes)
    for images, labels in loader.epoch(0):
        x = transform(images).numpy()
        y = labels.numpy() if to_model is None else to_model[labels.numpy()]
        labels_all.append(y)
        for i, sess in list(sessions.items()):
            cell = cells[i]
            try:
                t0 = time.perf_counter()
                logits = sess(x)
                cell.seconds += time.perf_counter() - t0
            except Exception as e:  # one broken runtime must not hide the others' results
                cell.status, cell.reason = CellStatus.ERROR, f"{type(e).__name__}: {e}"
                sessions.pop(i).close()
                continue
            cell._nonfinite += int((~np.isfinite(logits)).any(axis=1).sum())
            top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
            cell._preds.append(top[:, 0])
            cell._hits5 += int((top == y[:, None]).any(axis=1).sum())
    for sess in sessions.values():
        sess.close()
    for cell in cells:
        if cell.status is CellStatus.OK and cell._nonfinite:  # fp16 overflow, blown-up weights
            cell.status = CellStatus.ERROR
            cell.reason = (
                f"{cell._nonfinite} image(s) gave logits that are not finite (inf or NaN): "
                "an accuracy from them would not be the model's"
            )
    if ref.status is not CellStatus.OK:
        raise AlexbenchError(f"the eager fp32 reference failed: {ref.reason}")
    if not labels_all:
        raise DataError(f"the {split.value} split has no readable images to evaluate")
    labels = np.concatenate(labels_all)
    n = int(labels.size)
    ref_pred = np.concatenate(ref._preds)
    for cell in cells:
        if cell.status is not CellStatus.OK:
            continue
        pred = np.concatenate(cell._preds)
        cell.top1 = float((pred == labels).mean())
        # With 5 classes or fewer every label is in the top 5: no figure, not a vacuous 100%.
        cell.top5 = cell._hits5 / n if meta.num_classes > 5 else None
        cell.agreement = float((pred == ref_pred).mean())
    k_cls = meta.num_classes
    confusion = np.zeros((k_cls, k_cls), dtype=np.int64)
    np.add.at(confusion, (labels, ref_pred), 1)
    totals = confusion.sum(axis=1)
    # A class with no images has no accuracy (null in JSON, "-" in tables), not 0%.
    per_class = [float(confusion[c, c] / totals[c]) if totals[c] else None for c in range(k_cls)]
    return EvalReport(
        list(data.class_names if to_model is None else meta.class_names or []),
        split.value, n, device, cells, per_class, confusion,
        len(data.skipped) + loader.skipped,
    )  # fmt: skip
