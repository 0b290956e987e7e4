"""What a training run leaves on disk: last.pt / best.pt, history.json / .csv and curves.png.

Checkpoints hold only tensors and plain Python values (optimiser, scheduler and scaler state
dicts, RNG states as tensors) so that `torch.load(weights_only=True)` reads them back.
"""

from __future__ import annotations

import csv
import io
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision

from alexbench import __version__
from alexbench.checkpoint import (
    CHECKPOINT_FORMAT,
    ModelMeta,
    check_format_version,
    safe_load,
    save_checkpoint,
    validate_state_dict,
)
from alexbench.errors import CheckpointError
from alexbench.fileio import write_json, write_text
from alexbench.model import num_classes_of

HISTORY_JSON, HISTORY_CSV, CURVES_PNG = "history.json", "history.csv", "curves.png"
LAST, BEST = "last.pt", "best.pt"
RUN_FILES = (LAST, BEST, HISTORY_JSON, HISTORY_CSV, CURVES_PNG)  # all a run writes


def versions() -> dict[str, str]:
    return {
        "alexbench": __version__,
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only refuses
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def load_resume(path: Path) -> dict[str, Any]:
    """A last.pt written by `fit`, read with weights_only=True."""
    ckpt = safe_load(path)
    if not (isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT):
        raise CheckpointError(f"{path}: not an alexbench checkpoint")
    if "train_state" not in ckpt or "train_config" not in ckpt:
        raise CheckpointError(f"{path}: holds no training state (resume from a last.pt)")
    # A file that was edited or written by something else fails here, in one line, rather
    # than as a KeyError halfway through building the run.
    shapes = {"meta": dict, "train_config": dict, "train_state": dict, "epoch": int}
    for key, kind in shapes.items():  # the state dict has its own validator, below
        if not isinstance(ckpt.get(key), kind):
            raise CheckpointError(f"{path}: '{key}' is missing or malformed")
    history, best = ckpt.get("history", []), ckpt.get("best_top1", 0.0)
    # One record per finished epoch, and a best accuracy that is a number: each ended in
    # "unexpected TypeError/ValueError" (exit 3), one of them after training an epoch.
    if (
        isinstance(ckpt["epoch"], bool)
        or ckpt["epoch"] < 0
        or not isinstance(history, list)
        or not all(isinstance(r, dict) for r in history)
        or len(history) != ckpt["epoch"]
        or isinstance(best, bool)
        or not isinstance(best, int | float)
    ):
        raise CheckpointError(
            f"{path}: 'epoch', 'history' or 'best_top1' is malformed (one history record per "
            "finished epoch, a best top-1 that is a number)"
        )
    missing = {"optimizer", "scheduler", "scaler", "rng"} - ckpt["train_state"].keys()
    if missing or not isinstance(ckpt["train_config"].get("data"), dict):
        what = f"train_state lacks {', '.join(sorted(missing))}" if missing else "no data spec"
        raise CheckpointError(f"{path}: incomplete training state ({what})")
    check_format_version(path, ckpt)
    sd = validate_state_dict(path, ckpt["state_dict"])  # names the bad tensor, in one line
    meta = ModelMeta.from_checkpoint(path, ckpt["meta"], num_classes_of(sd))  # each field
    if meta.num_classes != num_classes_of(sd):
        raise CheckpointError(
            f"{path}: metadata 'num_classes' is {meta.num_classes}, "
            f"but the weights have {num_classes_of(sd)} classes"
        )
    return ckpt


@dataclass
class EpochState:
    """Everything one epoch's checkpoint records besides the weights."""

    recipe: dict[str, Any]  # TrainConfig.recipe()
    data: dict[str, Any]  # DataSpec.to_dict()
    description: str  # the dataset in words
    history: list[dict[str, Any]]  # EpochRecord dicts, this epoch last
    best_top1: float
    world_size: int
    train_state: dict[str, Any]  # optimizer, scheduler, scaler, rng
    data_fingerprint: dict[str, Any] | None = None  # LoadedData.fingerprint
    trained_images: dict[str, Any] | None = None  # LoadedData.train_sample


def save_epoch(out: Path, model: torch.nn.Module, meta: ModelMeta, state: EpochState) -> None:
    """last.pt every epoch (atomic: an interrupt leaves the previous one intact), best.pt when
    val top-1 improved, and the history files."""
    record = state.history[-1]
    meta.provenance = {
        "epoch": record["epoch"],
        "metrics": record,
        "seed": state.recipe["seed"],
        "dataset": state.description,
        "data": state.data,
        "train": state.recipe,
        "world_size": state.world_size,
        "versions": versions(),
        "host": platform.node() or os.environ.get("HOSTNAME", ""),
    }
    if state.trained_images is not None:  # evaluate recognises these images by their bytes
        meta.provenance["trained_images"] = state.trained_images
    common = {
        "epoch": record["epoch"],
        "metrics": record,
        "history": state.history,
        "best_top1": state.best_top1,
    }
    extra = dict(common, train_config=state.recipe, train_state=state.train_state)
    if state.data_fingerprint is not None:
        extra["data_fingerprint"] = state.data_fingerprint
    # best.pt before last.pt: an interrupt between the two then leaves last.pt one epoch behind
    # (its best_top1 still matching best.pt), never a last.pt that records a newer best.
    if record["best"]:  # weights and meta only: best.pt is for evaluation and export
        save_checkpoint(out / BEST, model, meta, common)
    save_checkpoint(out / LAST, model, meta, extra)
    write_history(out, state.recipe, state.description, state.history, None)


def write_history(
    out: Path,
    recipe: dict[str, Any],
    description: str,
    records: list[dict[str, Any]],
    replica_sha256: list[str] | None,
) -> None:
    """history.json (with the recipe) and history.csv, rewritten every epoch (the CLI draws
    curves.png from the same records: rendering stays out of training)."""

    doc: dict[str, Any] = {"config": recipe, "data": description, "epochs": records}
    if replica_sha256 is not None:
        doc["replica_sha256"] = replica_sha256
    write_json(out / HISTORY_JSON, doc)
    if records:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        write_text(out / HISTORY_CSV, buf.getvalue())
