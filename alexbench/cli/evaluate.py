"""`alexbench evaluate`: accuracy, per-class accuracy and confusion matrix of a model, through
any runtime x precision, against the fp32 eager predictions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from alexbench.artifacts import ModelBundle
from alexbench.checkpoint import LoadedModel, Normalization
from alexbench.cli import options as opt
from alexbench.cli.common import (
    JSON_OPTION,
    WIDE_OPTION,
    Command,
    check_not_inside,
    check_output_file,
    console,
    emit_json,
    err_console,
    handle_errors,
    json_output,
    parse_backend_list,
    parse_enum_list,
    report_unmeasured,
    same_file,
    signals_as_interrupts,
    unmeasured_asked,
)
from alexbench.devices import Device, require
from alexbench.errors import InputError
from alexbench.evaluate import CellStatus, check_compatible, evaluate_model
from alexbench.exit_codes import ExitCode, outcome
from alexbench.fileio import write_json
from alexbench.model import MAX_SEED
from alexbench.precision import Precision
from alexbench.report import render_evaluation, warnings_as_lines
from alexbench.results_shape import EVALUATE_SCHEMA
from alexbench.training.data import (
    Augment,
    DatasetKind,
    DataSpec,
    NormalizeChoice,
    Split,
    SplitMethod,
    check_crop_fraction,
    load_data,
    recorded_data,
    same_training_folder,
    trained_on_whole,
    val_folder,
)

# torchvision's ImageNet evaluation: resize to 256, centre crop 224.


@handle_errors
@json_output
@warnings_as_lines(err_console)  # the plot's class names: a missing glyph in one line
def evaluate_cmd(
    ctx: typer.Context,
    checkpoint: Path | None = opt.CHECKPOINT,
    weights: Path | None = opt.WEIGHTS,
    num_classes: int | None = opt.NUM_CLASSES,
    image_size: int | None = opt.IMAGE_SIZE,
    normalize: Normalization | None = opt.EVALUATE_NORMALIZE,
    dataset: DatasetKind | None = typer.Option(
        None,
        "--dataset",
        help="cifar10, imagefolder or synthetic (default: the dataset the checkpoint was "
        "trained on, else cifar10).",
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="CIFAR-10 root or ImageFolder tree (default: the checkpoint's when --dataset is "
        "taken from it, else data).",
    ),
    download: bool = typer.Option(False, "--download", help="Download CIFAR-10 if missing."),
    split: Split = typer.Option(
        Split.VAL,
        "--split",
        help="val: DIR/val, DIR/test, or train's held-out part; train: the training images.",
    ),
    val_fraction: float | None = typer.Option(
        None,
        "--val-fraction",
        help="Share of an ImageFolder without val/ or test/ scored as held out, in [0, 1) "
        "(default: the checkpoint's on the folder it trained on; 0 = every image, elsewhere).",
    ),
    split_seed: int | None = typer.Option(
        None,
        "--split-seed",
        help="Seed of the held-out split (default: the checkpoint's, else 0).",
        min=0,
        max=MAX_SEED,
    ),
    synthetic_size: int | None = typer.Option(
        None,
        "--synthetic-size",
        help="Training images of --dataset synthetic (default: the checkpoint's, else 2000).",
        min=10,
    ),
    backend: str = opt.backend_list("eager"),
    precision: str = opt.precision_list("fp32"),
    device: Device | None = opt.device_one(),
    batch_size: int = opt.batch_one(256, "Images per forward pass."),
    artifacts: Path | None = opt.EVALUATE_ARTIFACTS,
    plot: Path | None = opt.plot_file(
        "Write a confusion-matrix heat map to this file (.png, .pdf or .svg, by the suffix)."
    ),
    out: Path | None = opt.out_file("Write the full report to this JSON file."),
    cache_limit_gb: float = opt.CACHE_LIMIT_GB,
    crop_fraction: float | None = typer.Option(
        None,
        "--crop-fraction",
        help="Centre crop kept after resizing (default: 0.875 for --weights, torchvision's "
        "256 -> 224 ImageNet evaluation; 1.0 for --checkpoint, which trained on whole images).",
    ),
    calib_data: Path | None = opt.CALIB_DATA,
    calib_samples: int = opt.CALIB_SAMPLES,
    as_json: bool = JSON_OPTION,
    wide: bool = WIDE_OPTION,
) -> None:
    """Top-1/top-5, per-class accuracy and confusion matrix, per backend x precision.

    Examples:

      alexbench evaluate --checkpoint runs/cifar10-64px/best.pt --dataset cifar10

      alexbench evaluate --checkpoint best.pt --dataset imagefolder --data-dir data/cifar \\
          --backend eager,onnxruntime,torchscript,pt2 --precision fp32,bf16 --plot cm.png

      alexbench evaluate --weights alexnet.pth --dataset imagefolder --data-dir imagenet \\
          --image-size 224 --normalize imagenet

      alexbench evaluate --checkpoint best.pt --out eval.json  (--json: the same on stdout)

      alexbench evaluate --checkpoint best.pt --backend onnxruntime,compile --device cpu \\
          --precision fp32,bf16,int8 --calib-data data/cifar/train   (int8 is a CPU precision)
    """
    from alexbench.cli.model_args import (  # imports the exporters
        bundle_for,
        calibration_records,
        check_outputs_spare_inputs,
        int8_calibration,
        model_for,
    )

    if checkpoint is None and weights is None:
        raise InputError("evaluate needs a model: --checkpoint PATH or --weights PATH")
    if crop_fraction is not None:
        check_crop_fraction(crop_fraction)  # before the model loads (and may export)
    for path, option in ((out, "--out"), (plot, "--plot")):
        if path is not None:
            check_output_file(path, option)
    if out is not None and plot is not None and same_file(out, plot):
        raise InputError(f"--out and --plot name one file ({out}): give each its own")
    outputs = [("--out", out), ("--plot", plot)]
    sources = {"checkpoint": checkpoint, "weights": weights, "artifacts": artifacts}
    check_outputs_spare_inputs(outputs, **sources)
    if plot is not None:
        from alexbench.plots import check_plot_path

        check_plot_path(plot)
    opt.cache_limit_bytes(cache_limit_gb)  # checked before any work
    backends = parse_backend_list(backend)
    precisions = parse_enum_list(precision, Precision, "--precision")
    device = opt.device_default(device)
    require(device)
    # The model is read first and the data checked against it before anything is exported.
    loaded = model_for(
        artifacts, checkpoint=checkpoint, weights=weights, seed=None,
        num_classes=num_classes, image_size=image_size, normalize=normalize,
    )  # fmt: skip
    check_outputs_spare_inputs(outputs, **sources, loaded=loaded)
    meta = loaded.meta
    trained = recorded_data(loaded)
    dataset, data_dir = _dataset_for(dataset, data_dir, trained)
    if dataset is DatasetKind.IMAGEFOLDER and plot is not None:  # a PNG there is an image next time
        check_not_inside(plot, "--plot", data_dir, "--data-dir")
    spec = scoring_spec(
        dataset, data_dir, loaded, split,
        val_fraction=val_fraction, split_seed=split_seed, synthetic_size=synthetic_size,
        crop_fraction=crop_fraction, download=download,
        cache_limit_bytes=opt.cache_limit_bytes(cache_limit_gb),
    )  # fmt: skip
    data = load_data(spec, (split,), by_name=bool(meta.class_names))
    scored_folder = spec.kind is DatasetKind.IMAGEFOLDER
    given = [
        n
        for n, v in (("--val-fraction", val_fraction), ("--split-seed", split_seed))
        if v is not None
    ]
    own_val = val_folder(spec.data_dir) if scored_folder else None
    if given and own_val is not None:  # the folder's own split decides, not a hold-out
        err_console.print(
            f"warning: {' and '.join(given)} ignored: {spec.data_dir} has {own_val.name}/, "
            "which is scored whole (its train/ is the training split)",
            markup=False,
        )
    check_compatible(ModelBundle(loaded), data)  # before any warning about the images
    if split is Split.VAL:
        note_held_out(data, spec, meta.provenance)
    console.print(f"Data: {data.description}", markup=False, highlight=False)
    if data.skipped:
        err_console.print(
            f"warning: skipped {len(data.skipped)} unreadable image(s) (first: {data.skipped[0]})",
            markup=False,
        )
    if not meta.class_names and scored_folder:
        err_console.print(
            f"note: the model records no class names: output i is scored as the i-th class "
            f"folder in sorted order ({', '.join(data.class_names[:3])}, ...)",
            markup=False,
        )
    scored = data.files.get(split, []) if scored_folder else []
    inside = (
        _scored_inside(calib_data, scored) if calib_data and Precision.INT8 in precisions else 0
    )
    if inside:
        err_console.print(
            f"warning: {inside} of the {len(scored)} scored images are inside --calib-data "
            f"{calib_data}: int8 may be calibrated on images it is scored on, so its top-1 may "
            "read high",
            markup=False,
        )
    bundle = bundle_for(
        console, artifacts, backends, loaded, precisions=precisions, devices=(device,),
        calib_data=calib_data, calib_samples=calib_samples,
    )  # fmt: skip
    calibrated = calibration_records(bundle)  # the int8 files' manifest records, read once
    if not calib_data:  # an int8 file already made: its manifest says what it was calibrated on
        for fmt, record in calibrated.items():
            folder = record.calibration_dir  # "" in manifests before the record
            if folder and (inside := _scored_inside(Path(folder), scored)):
                err_console.print(
                    f"warning: {inside} of the {len(scored)} scored images are inside {folder}, "
                    f"which {fmt} was calibrated on (its manifest's record): its top-1 may read "
                    "high",
                    markup=False,
                )
    with signals_as_interrupts(), console.status("evaluating..."):
        report = evaluate_model(
            bundle, data, backends, precisions, device, split=split, batch_size=batch_size
        )
    render_evaluation(console, report, wide=wide)
    streamed_skips = report.skipped_images - len(data.skipped)  # the load-time ones are said above
    if streamed_skips:
        err_console.print(
            f"warning: skipped {streamed_skips} unreadable image(s) while streaming", markup=False
        )
    if plot is not None:
        from alexbench.plots import plot_confusion_matrix

        plot_confusion_matrix(report.confusion, report.class_names, plot)
        console.print(f"Confusion matrix plot: {plot}")
    tried = [c for c in report.cells if c.requested and c.status is not CellStatus.UNSUPPORTED]
    asked = {"backend": backends, "precision": precisions}
    gaps = unmeasured_asked(ctx, asked, tried) if tried else []
    payload = report.to_dict() | {
        "schema": EVALUATE_SCHEMA,
        # named with --backend/--precision and scored in no cell (exit 4)
        "asked_not_evaluated": gaps,
        "model": {"source": bundle.loaded.source.to_dict(), "meta": vars(meta)},
        "data": data.description,
        # Which files were scored, by path and by the bytes read (the manifest may say otherwise:
        # a file edited since export is scored as it is, with a warning).
        "artifacts": {f.value: str(p) for f, p in sorted(bundle.artifacts.items())},
        "artifact_sha256": bundle.file_hashes(),
        # What the int8 artifacts scored here were calibrated on (the manifest's record).
        "int8_calibration": int8_calibration(calibrated),
    }
    emit_json(payload)
    if out is not None:
        write_json(out, payload)
        console.print(f"Report: {out}")
    # The reference (eager fp32) counts when it crashes, but not as a measured requested cell.
    errors = sum(c.status is CellStatus.ERROR for c in report.cells)
    measured = sum(c.requested and c.status is CellStatus.OK for c in report.cells)
    code = outcome(measured, 0, errors)
    if code is not ExitCode.OK:
        why = (
            "a cell could not be scored (see the table)"
            if errors
            else "nothing was evaluated: no requested cell ran"
        )
        err_console.print(f"error: {why}", markup=False)
    if measured and gaps:
        report_unmeasured(gaps, "evaluated")
        code = ExitCode.CELLS_FAILED
    raise typer.Exit(code)


def _dataset_for(
    dataset: DatasetKind | None, data_dir: Path | None, trained: dict[str, Any]
) -> tuple[DatasetKind, Path]:
    """--dataset and --data-dir as given; else the dataset the checkpoint records it was trained
    on (and, unless --data-dir is given, its folder); else cifar10 in data/. Says which."""
    recorded = trained.get("kind")
    if dataset is None and recorded is not None:  # a valid kind: recorded_data checked it
        dataset = DatasetKind(recorded)
        data_dir = data_dir or Path(trained.get("data_dir") or "data")
        console.print(
            f"Dataset: {dataset.value} (the checkpoint's training data; --dataset to change)",
            markup=False,
            highlight=False,
        )
    elif dataset is None:
        dataset = DatasetKind.CIFAR10
        console.print(
            "Dataset: cifar10 (the default; --dataset to change)", markup=False, highlight=False
        )
    return dataset, data_dir or Path("data")


def scoring_spec(
    kind: DatasetKind,
    data_dir: Path,
    loaded: LoadedModel,
    split: Split,
    *,
    val_fraction: float | None = None,
    split_seed: int | None = None,
    synthetic_size: int | None = None,
    crop_fraction: float | None = None,
    **data_options: Any,
) -> DataSpec:
    """The images `evaluate` scores (and `tune --max-accuracy-drop` with it): the model's size,
    no augmentation, the held-out share and seed the checkpoint's training used where it applies
    (see `_val_fraction`), and the model's own normalisation. `data_options`: how they are read
    (download, cache limit)."""
    trained = recorded_data(loaded)
    default_crop = loaded.eval_crop_fraction
    return DataSpec(
        kind=kind,
        data_dir=data_dir,
        image_size=loaded.meta.image_size,
        augment=Augment.NONE,
        val_fraction=_val_fraction(val_fraction, data_dir, trained, split),
        split_seed=split_seed if split_seed is not None else trained.get("split_seed", 0),
        # As the run split its folder; a run recorded before the hash split shuffled.
        split_method=SplitMethod(trained.get("split_method", "shuffle"))
        if trained
        else SplitMethod.HASH,
        normalize=NormalizeChoice.NONE,  # the model's own mean/std normalise, not the data's
        synthetic_size=synthetic_size or trained.get("synthetic_size", 2000),
        crop_fraction=crop_fraction if crop_fraction is not None else default_crop,
        **data_options,
    )


def _scored_inside(calib_data: Path, scored: list[str]) -> int:
    """How many scored images the int8 export may calibrate on: those among the files it draws
    from (image_files, linked folders followed), compared by real path. By file, not by folder:
    DIR/train calibrating while DIR/val is scored is no overlap, though one holds the other."""
    from alexbench.training.data_files import image_files

    if not scored or not calib_data.is_dir():
        return 0  # the calibration itself says what is wrong with the folder
    drawn = {os.path.realpath(f) for f in image_files(calib_data)}
    return sum(os.path.realpath(f) in drawn for f in scored)


def _val_fraction(
    given: float | None, data_dir: Path, trained: dict[str, Any], split: Split
) -> float:
    """The share of an ImageFolder scored as held out. Given: that. The folder the checkpoint
    trained on (or --split train): its held-out part, as training split it. Any other folder is
    a test set: every image is scored (0 = none held back). Checkpoints record their folder
    absolute; an older relative record is read from the working directory."""
    if given is not None:
        return given
    if same_training_folder(trained.get("data_dir"), data_dir) or split is Split.TRAIN:
        return float(trained.get("val_fraction", 0.1))
    return 0.0


def note_held_out(data: Any, spec: DataSpec, provenance: dict[str, Any]) -> None:
    """Warn, and say in the data's description (which reports print as "held out from
    training" otherwise), when the images scored as held out are not the run's held-out ones:
    by their folder and split settings, else by their bytes (a copied, moved or renamed
    training folder; `seen.trained_overlap`)."""
    from alexbench.training.seen import trained_overlap

    mismatch = held_out_mismatch(spec, provenance.get("data") or {})
    if mismatch is None:
        unreadable = set(data.skipped)  # not scored: they must not count in the share
        scored = [p for p in data.files.get(Split.VAL, []) if p not in unreadable]
        overlap = trained_overlap(scored, provenance.get("trained_images"))
        if overlap is not None and not overlap.trained_on:  # a duplicate or two: said, no more
            err_console.print(f"note: {overlap.describe()}", markup=False)
        elif overlap is not None:
            mismatch = overlap.describe()
    if mismatch:
        data.description += f"; NOT the run's held-out split: {mismatch}"
        err_console.print(f"warning: {mismatch}", markup=False)


def held_out_mismatch(spec: DataSpec, trained: dict[str, Any]) -> str | None:
    """Why the images scored from the run's own folder are not the ones it held out (its
    training folder, or another --val-fraction or --split-seed than it trained with), or None."""
    if spec.kind is not DatasetKind.IMAGEFOLDER:
        return None
    if trained_on_whole(trained.get("data_dir"), spec.data_dir):
        return f"{spec.data_dir} is the folder the model trained on, every image of it"
    if val_folder(spec.data_dir) is not None:
        return None  # the run folder's own val/ (or a test set's), whole
    if not same_training_folder(trained.get("data_dir"), spec.data_dir):
        return None
    if spec.val_fraction <= 0:
        return (
            f"--val-fraction 0 scores every image of {spec.data_dir}, the folder the model "
            "trained on"
        )
    run = (float(trained.get("val_fraction", 0.1)), int(trained.get("split_seed", 0)))
    # The same seed with a smaller share holds out a subset of the run's held-out images: by
    # path hash, the images drawing below the smaller share; shuffled, a prefix of one order.
    if spec.split_seed == run[1] and spec.val_fraction <= run[0]:
        return None
    return (
        f"--val-fraction {spec.val_fraction:g} / --split-seed {spec.split_seed} are not the run's "
        f"({run[0]:g} / {run[1]}): the scored images include ones the model trained on"
    )


def register(app: typer.Typer) -> None:
    app.command("evaluate", cls=Command)(evaluate_cmd)
