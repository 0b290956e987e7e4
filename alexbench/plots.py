"""Plots: training curves, the confusion matrix, and the benchmark plots of `report` (throughput
against batch size, latency distributions, roofline), each titled with what it shows.

Rendered with matplotlib's Agg backend (no display needed); every figure is written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: CI, ssh sessions and DDP workers have no display

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np

from alexbench.bench.stats import MIN_ITERS_FOR_PERCENTILE
from alexbench.errors import InputError
from alexbench.fileio import atomic_path
from alexbench.results import Run, created_text, machine_label, model_label

# The format follows the file's suffix, so `--plot x.pdf` is a PDF, not PNG bytes in a .pdf.
PLOT_FORMATS = ("png", "pdf", "svg")

# A horizontal box plot: `orientation` replaced `vert` in matplotlib 3.10, and `vert` warns
# from 3.11 on (pyproject allows 3.8 and later, so both spellings are needed).
_MPL = tuple(int(p) for p in re.findall(r"\d+", matplotlib.__version__)[:2])
_HORIZONTAL: dict[str, Any] = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}


def check_plot_path(path: Path) -> None:
    """Refuse a plot path before any work: a known suffix, not a folder."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        known = ", ".join(f".{f}" for f in PLOT_FORMATS)
        raise InputError(f"{path}: a plot file must end in {known}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a plot file name")


def _save(fig: Any, path: Path) -> Path:
    check_plot_path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _rate(cell: dict[str, Any], ms_key: str, default: float) -> float:
    ms = cell["stats"].get(ms_key)
    return default if ms is None else cell["batch"] * 1e3 / ms


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
        if any(r.get(key) is None for r in records):
            continue  # top-5 with 5 classes or fewer: always 100%, not recorded
        ax_acc.plot(epochs, [100 * r[key] for r in records], "o-", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 12:  # ticks at the epochs run, not 0.96..1.04 around a single one
            ax.set_xticks(epochs)
        else:
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


def _passed(cells: Sequence[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    # The speed of a wrong answer is not plotted: only cells that passed parity.
    return [c for c in cells if c["device"] == device and c["status"] == "ok" and c.get("stats")]


def _devices(runs: Sequence[Run]) -> list[str]:
    # A run interrupted before its first cell has none: one empty panel, not zero panels.
    return list(dict.fromkeys(c["device"] for r in runs for c in r.data["cells"])) or ["cpu"]


# What a cell's roofline needs to be drawn (results files before schema /2 lack some of it).
_ROOFLINE_KEYS = ("gflops", "weight_gbs", "peak_gflops", "ceiling_dtype", "read_bandwidth_gbs")


def _has_roofline(c: dict[str, Any]) -> bool:
    roof = c.get("roofline") or {}
    return all(roof.get(k) is not None for k in _ROOFLINE_KEYS) and roof["weight_gbs"] > 0


def _title(runs: Sequence[Run], device: str) -> str:
    """Model, device, machine and date: a PNG on its own must say what it shows."""
    models = dict.fromkeys(model_label(r.data) for r in runs)
    machines = dict.fromkeys(machine_label(r.data, device) for r in runs)
    dates = sorted({created_text(r.data, date_only=True) for r in runs})  # UTC, as tables
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return f"{' | '.join(models)}\n{device}: {' | '.join(machines)}, {when}"


# A line style per precision, beside the colour per backend x precision (tab20's paired shades
# are hard to tell apart in small panels).
_PRECISION_STYLE = {"fp32": "-", "tf32": "-.", "bf16": "--", "fp16": (0, (5, 1)), "int8": ":"}


# An error bar counts towards the y scale up to this share of its median: a two-repeat t interval
# 40,000 images/s wide (050231 pt2 bf16 batch 1, a 75 images/s cell) flattened every panel.
_BAR_SCALE_SHARE = 0.5


def scale_top(values: Sequence[float], errors_up: Sequence[float]) -> float:
    """The top of the y scale that shows `values` and their upper error bars, a bar longer than
    half its value running off the panel (its cap not drawn: wider than shown)."""
    return max(
        (v + min(e, _BAR_SCALE_SHARE * v) for v, e in zip(values, errors_up, strict=True)),
        default=0.0,
    )


def plot_throughput(runs: Sequence[Run], path: Path) -> Path:
    """Images/s against batch size per backend x precision: one panel per device and run (small
    multiples: one plot of many runs' lines cannot be read), one colour per backend x precision
    in every panel, and a common y scale per device.

    The measured batch sizes are the ticks (evenly spaced: nothing is drawn between them as
    if it had been measured); markers sit only where a cell was measured; the error bars are
    the 95% CI of the median latency turned into images/s (one wider than half its median runs
    off the top rather than setting the scale)."""
    devices = _devices(runs)
    several = len(runs) > 1
    # A run that never ran on a device gets no panel there (a CPU run in a CUDA row).
    panels = [
        (d, r) for d in devices for r in runs if any(c["device"] == d for c in r.data["cells"])
    ]
    panels = panels or [(devices[0], runs[0])]  # no cells at all: one empty panel says so
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols + 2.6, 3.4 * nrows + 1.2), squeeze=False
    )
    kinds = sorted({(c["backend"], c["precision"]) for r in runs for c in r.data["cells"]})
    palette = plt.get_cmap("tab20" if len(kinds) > 10 else "tab10")
    colours = {k: palette(i % palette.N) for i, k in enumerate(kinds)}
    top: dict[str, float] = {}
    drawn: dict[tuple[str, str], Any] = {}
    for ax, (device, r) in zip(axes.flat, panels, strict=False):
        cells = sorted(_passed(r.data["cells"], device), key=lambda c: c["batch"])
        batches = sorted({c["batch"] for c in cells})
        pos = {b: i for i, b in enumerate(batches)}
        series: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for c in cells:
            series.setdefault((c["backend"], c["precision"]), []).append(c)
        for kind, kind_cells in sorted(series.items()):
            x = [pos[c["batch"]] for c in kind_cells]
            y = [c["stats"]["throughput"] for c in kind_cells]
            # The CI of the rate; no bar where the cell has none (5 samples or fewer)
            low = [_rate(c, "p50_ci_high_ms", v) for c, v in zip(kind_cells, y, strict=True)]
            high = [_rate(c, "p50_ci_low_ms", v) for c, v in zip(kind_cells, y, strict=True)]
            err = [[max(v - lo, 0) for v, lo in zip(y, low, strict=True)],
                   [max(hi - v, 0) for v, hi in zip(y, high, strict=True)]]  # fmt: skip
            drawn[kind] = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, linewidth=1,
                                      color=colours[kind],
                                      linestyle=_PRECISION_STYLE.get(kind[1], "-"))  # fmt: skip
            top[device] = max(top.get(device, 0.0), scale_top(y, err[1]))
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlim(-0.5, max(len(batches) - 0.5, 0.5))
        ax.set(xlabel="batch size (measured sizes only)", ylabel=f"{device} images/s")
        where = f"{device}, {machine_label(r.data, device)}"  # the runs may span machines
        ax.set_title(f"{r.name} ({where})" if several else _title(runs, device), fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        if not series:
            ax.text(0.5, 0.5, "no cell passed parity", ha="center", transform=ax.transAxes)
    for ax, (device, _) in zip(axes.flat, panels, strict=False):
        ax.set_ylim(0, top.get(device, 1.0) * 1.08)  # one scale per device: panels compare
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if drawn:
        kinds_drawn = sorted(drawn)
        fig.legend([drawn[k] for k in kinds_drawn], [f"{b} {p}" for b, p in kinds_drawn],
                   fontsize=7, title="backend precision", title_fontsize=7,
                   loc="upper left", bbox_to_anchor=(1.0, 0.95))  # fmt: skip
    heading = "alexbench: throughput, cells that passed parity (95% CI bars)"
    if several:  # each panel names its run; what they share is said once
        heading += "\n" + "\n".join(_title(runs, device) for device in devices)
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_latency(run: Run, path: Path) -> Path:
    """The distribution of per-call latency of every passing cell, from the raw samples: the box
    spans p25-p75, whiskers p5-p95, and p90/p99 marked; the line inside is the cell's p50 as
    the tables give it (with repeats, the geometric mean of their medians), not the median of
    the pooled samples, so the plot and the tables show one p50 per cell."""
    devices = _devices([run])
    groups = [(d, sorted(_passed(run.data["cells"], d), key=_cell_order)) for d in devices]
    rows = max((len(cells) for _, cells in groups), default=1)
    fig, axes = plt.subplots(
        1, len(groups), figsize=(7 * len(groups), 1.2 + 0.32 * max(rows, 3)), squeeze=False
    )
    for ax, (device, cells) in zip(axes[0], groups, strict=True):
        samples = [np.asarray(c["latencies_ns"], dtype=float) / 1e6 for c in cells]
        labels = [f"{c['backend']} {c['precision']} b{c['batch']}" for c in cells]
        if cells:
            p50s = [c["stats"]["p50_ms"] for c in cells]
            ax.boxplot(samples, whis=(5, 95), showfliers=False, usermedians=p50s,
                       medianprops={"color": "black"}, **_HORIZONTAL)  # fmt: skip
            marked: set[str] = set()
            for i, ms in enumerate(samples, start=1):
                for q, marker, colour in ((90, "v", "tab:orange"), (99, "D", "tab:red")):
                    if len(ms) < MIN_ITERS_FOR_PERCENTILE[q]:
                        continue  # too few samples: it would be the maximum, not a p90/p99
                    label = f"p{q}" if f"p{q}" not in marked else None
                    marked.add(f"p{q}")
                    ax.plot([np.percentile(ms, q)], [i], marker, color=colour, ms=4, label=label)
            ax.set_yticks(range(1, len(cells) + 1), labels, fontsize=8)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.FuncFormatter(_minor_label))
            if marked:  # no cell has the samples for a p90: nothing to label
                # outside, right of the axes: inside, it covered the slowest cell's box
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.text(0.5, 0.5, "no cell passed parity", ha="center", transform=ax.transAxes)
        ax.set(xlabel="latency per call (ms, log scale)", ylabel="backend precision batch")
        ax.set_title(_title([run], device), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3, which="both")
    fig.suptitle(
        f"alexbench: latency distribution, {run.name} (box p25-p75, line p50, whiskers p5-p95)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def _minor_label(v: float, _pos: int) -> str:
    # Label 2x and 5x between decades so a narrow log axis still has readable figures.
    lead = v / 10 ** np.floor(np.log10(v))
    return f"{v:g}" if round(lead) in (2, 5) else ""


def _cell_order(c: dict[str, Any]) -> tuple:
    return (-c["batch"], c["backend"], c["precision"])  # top to bottom: batch 1 first


def plot_roofline(run: Run, path: Path) -> Path:
    """Achieved GFLOP/s against arithmetic intensity (FLOP per byte of weights read), with the
    measured ceilings: the best GEMM per precision (flat) and the read bandwidth (diagonal)."""
    devices = [d for d in _devices([run]) if any(
        _has_roofline(c) for c in _passed(run.data["cells"], d))]  # fmt: skip
    devices = devices or _devices([run])
    fig, axes = plt.subplots(1, len(devices), figsize=(7 * len(devices), 5), squeeze=False)
    for ax, device in zip(axes[0], devices, strict=True):
        cells = [c for c in _passed(run.data["cells"], device) if _has_roofline(c)]
        xs = [c["roofline"]["gflops"] / c["roofline"]["weight_gbs"] for c in cells]
        if not cells:
            ax.text(0.5, 0.5, "no roofline figures", ha="center", transform=ax.transAxes)
            ax.set_title(_title([run], device), fontsize=9)
            continue
        span = np.array([min(xs) / 3, max(xs) * 3])
        by_peak: dict[float, list[str]] = {}  # bf16 is credited fp32's GEMM where that is faster
        for c in cells:
            names = by_peak.setdefault(c["roofline"]["peak_gflops"], [])
            if c["roofline"]["ceiling_dtype"] not in names:
                names.append(c["roofline"]["ceiling_dtype"])
        for peak, dtypes in sorted(by_peak.items()):
            ax.axhline(peak, linestyle="--", linewidth=1, color="gray")
            label = f"{'/'.join(dtypes)} GEMM ceiling {peak:,.0f} GFLOP/s"
            ax.text(span[1], peak * 1.05, label, fontsize=7, ha="right")
        bandwidths = sorted({c["roofline"]["read_bandwidth_gbs"] for c in cells})
        for bw in bandwidths:
            ax.plot(span, span * bw, linestyle=":", linewidth=1, color="gray")
        bw_text = "-".join(
            f"{bw:,.1f}" for bw in (bandwidths[0], bandwidths[-1])[: len(bandwidths)]
        )
        ax.text(span[0], span[0] * bandwidths[-1] * 1.3, f"read {bw_text} GB/s", fontsize=7)
        markers = dict(zip(("eager", "torchscript", "pt2", "onnxruntime", "compile", "openvino"),
                           "osD^vP", strict=True))  # fmt: skip
        for c, x in zip(cells, xs, strict=True):
            r = c["roofline"]
            ax.plot([x], [r["gflops"]], markers.get(c["backend"], "o"), ms=7,
                    color="tab:red" if r.get("exceeds_ceiling") else None,
                    label=f"{c['backend']} {c['precision']} b{c['batch']} "
                    f"({r['pct_of_ceiling']:.0f}%)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel="arithmetic intensity (FLOP per byte of weights read)",
               ylabel="achieved GFLOP/s (int8: GOP/s)")  # fmt: skip
        ax.set_title(_title([run], device), fontsize=9)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=6, ncol=2, title="backend precision batch (% of ceiling)",
                  title_fontsize=6)  # fmt: skip
    fig.suptitle(f"alexbench: roofline, {run.name} (cells that passed parity)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
