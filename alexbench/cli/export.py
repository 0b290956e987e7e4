"""`alexbench export`: TorchScript, ONNX and torch.export artifacts plus a manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from alexbench import pt2e, report
from alexbench.artifacts import CALIBRATED, ArtifactFormat
from alexbench.checkpoint import Normalization, load_model
from alexbench.cli import options as opt
from alexbench.cli.common import (
    Command,
    check_output_dir,
    console,
    err_console,
    handle_errors,
    parse_enum_list,
)
from alexbench.cli.model_args import check_model_options, note_resized, read_calibration
from alexbench.errors import InputError
from alexbench.exporters import (
    DEFAULT_OPSET,
    OnnxExporter,
    check_opset,
    ensure_artifacts,
    folder_for,
    point_latest,
    recorded_onnx_settings,
)
from alexbench.exporters.base import NEEDS_CALIBRATION


@handle_errors
def export_cmd(
    out: Path | None = opt.out_folder(
        None,
        "Folder for this model's artifacts (default: its own folder under exports/, and "
        "exports/latest points at it). A folder of another model is refused unless --force.",
    ),
    formats: str = typer.Option(
        "torchscript,onnx,pt2",
        "--format",
        "-f",
        help="Comma list of torchscript, onnx, pt2, onnx-fp16, onnx-int8, pt2-int8 (the int8 "
        "formats need --calib-data and are added automatically when it is given).",
        metavar=opt.LIST,
    ),
    calib_data: Path | None = opt.CALIB_DATA,
    calib_samples: int = opt.CALIB_SAMPLES,
    opset: int | None = typer.Option(
        None,
        "--opset",
        help=f"ONNX opset version, 7 to 25 (default: the one the folder's ONNX file was made "
        f"with, else {DEFAULT_OPSET}).",
    ),
    onnx_exporter: OnnxExporter | None = typer.Option(
        None,
        "--onnx-exporter",
        help="dynamo or the legacy TorchScript one (default: the one the folder's ONNX file "
        "was made with, else dynamo).",
    ),
    force: bool = opt.force(
        "Export even when fresh artifacts exist; replace another model's artifacts in --out."
    ),
    checkpoint: Path | None = opt.CHECKPOINT,
    weights: Path | None = opt.WEIGHTS,
    seed: int | None = opt.seed(),
    num_classes: int | None = opt.NUM_CLASSES,
    image_size: int | None = opt.IMAGE_SIZE,
    normalize: Normalization | None = opt.NORMALIZE,
) -> None:
    """Export AlexNet to TorchScript (.pt), ONNX (.onnx) and a torch.export program (.pt2).

    Unchanged inputs reuse the existing files (sha256 check). Examples:

      alexbench export

      alexbench export --weights alexnet-owt-7be5be79.pth --out exports/imagenet

      alexbench export --checkpoint runs/cifar/best.pt --format onnx --opset 20

      alexbench export --calib-data data/cifar/train   (adds both int8 models)
    """
    fmts = parse_enum_list(formats, ArtifactFormat, "--format")
    check_model_options(checkpoint, normalize)
    if out is not None:  # a file, a file on the way, a folder that takes no files: before loading
        check_output_dir(out, "--out")
    if calib_data is not None:
        # Both int8 models, the PT2E one where torchao is installed (asked for by name, its
        # absence is the export's one-line error).
        pt2e_missing = pt2e.unavailable() is not None
        fmts += [
            f
            for f in CALIBRATED
            if f not in fmts and not (f is ArtifactFormat.PT2_INT8 and pt2e_missing)
        ]
    if calib_data is None and any(f in CALIBRATED for f in fmts):  # before anything is written
        raise InputError(NEEDS_CALIBRATION)
    # Before the model loads where the settings are known: given, or the --out folder's (the
    # model's own folder is known only once it is loaded).
    if out is not None:
        check_opset(*_onnx_settings(opset, onnx_exporter, out), fmts)
    elif opset is not None and onnx_exporter is not None:
        check_opset(opset, onnx_exporter, fmts)
    loaded = load_model(
        checkpoint=checkpoint,
        weights=weights,
        seed=0 if seed is None else seed,
        num_classes=num_classes,
        image_size=image_size,
        normalization=normalize,
    )
    note_resized(loaded)
    calibration = None
    if calib_data is not None:
        calibration = read_calibration(calib_data, calib_samples, loaded)
    folder = out if out is not None else folder_for(loaded)
    opset, onnx_exporter = _onnx_settings(opset, onnx_exporter, folder)
    check_opset(opset, onnx_exporter, fmts)
    console.print(
        f"Model: AlexNet, {loaded.meta.num_classes} classes, "
        f"{loaded.meta.image_size}x{loaded.meta.image_size} input, {loaded.source.describe()}",
        markup=False,
    )
    with console.status("exporting...") as status:
        _, outcomes = ensure_artifacts(
            loaded,
            folder,
            fmts,
            opset=opset,
            onnx_exporter=onnx_exporter,
            force=force,
            calibration=calibration,
            on_export=lambda f: status.update(f"exporting {f.value}..."),
            on_wait=lambda: err_console.print(
                f"waiting for another alexbench process writing {folder}...", markup=False
            ),
        )
    if out is None:
        point_latest(folder)
    report.render_export(console, str(folder), outcomes)
    console.print(f"Manifest: {folder / 'manifest.json'}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("export", cls=Command)(export_cmd)


def _onnx_settings(
    opset: int | None, exporter: OnnxExporter | None, folder: Path
) -> tuple[int, OnnxExporter]:
    """--opset and --onnx-exporter, each the folder's where not given: adding a variant to a
    deliberate `--opset 20` export must not quietly make its ONNX file again at the default (an
    outside audit). A given exporter other than the folder's takes the default opset, not an
    opset the user never typed that belongs to the other exporter."""
    recorded_opset, recorded_exporter = recorded_onnx_settings(folder)
    exporter = exporter if exporter is not None else recorded_exporter
    if opset is None:
        opset = recorded_opset if exporter is recorded_exporter else DEFAULT_OPSET
    return opset, exporter
