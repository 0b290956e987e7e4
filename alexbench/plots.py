"""PNG plots for training and evaluation: loss/accuracy curves and a confusion-matrix heat map.

Rendered with matplotlib's Agg backend (no display needed); every figure is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: CI, ssh sessions and DDP workers have no display

import matplotlib.pyplot as plt
import numpy as np

from alexbench.fileio import atomic_path


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_training_curves(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Loss (train, val) and accuracy (train top-1, val top-1/top-5) per epoch."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in records], "s-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss (with label smoothing)", title="Loss")
    for key, label in (
        ("train_top1", "train top-1"),
        ("val_top1", "val top-1"),
        ("val_top5", "val top-5"),
    ):
        ax_acc.plot(epochs, [100 * r[key] for r in records], "o-", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "Confusion matrix"
) -> Path:
    """Heat map of row-normalised counts (each true class sums to 1); counts in the cells."""
    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    side = min(4 + 0.5 * k, 30)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    if k <= 30:  # beyond that, labels and numbers are unreadable
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def plot_bench(cells: Sequence[dict[str, Any]], path: Path) -> Path:
    """Throughput (images/s) and median latency vs batch, one line per device/backend/precision.

    Only cells that passed parity are drawn: the speed of a wrong answer is not plotted.
    """
    series: dict[str, list[tuple[int, float, float]]] = {}
    for c in cells:
        if c.get("status") != "ok" or not c.get("stats"):
            continue
        label = f"{c['device']}/{c['backend']}/{c['precision']}"
        series.setdefault(label, []).append(
            (c["batch"], c["stats"]["throughput"], c["stats"]["p50_ms"])
        )
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in sorted(series.items()):
        points.sort()
        batches = [p[0] for p in points]
        ax_t.plot(batches, [p[1] for p in points], marker="o", label=label)
        ax_l.plot(batches, [p[2] for p in points], marker="o", label=label)
    for ax, ylabel in ((ax_t, "images/s (batch / median latency)"), (ax_l, "p50 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    ax_l.set_yscale("log")
    ax_t.legend(fontsize=7)
    fig.suptitle("alexbench: throughput and latency (cells that passed parity)")
    fig.tight_layout()
    return _save(fig, path)
