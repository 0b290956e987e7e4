"""`alexbench verify`: parity of every runtime x device x precision against eager fp32."""

from __future__ import annotations

from pathlib import Path

import typer

from alexbench import report
from alexbench.artifacts import CALIBRATED, VERIFY_REPORT
from alexbench.checkpoint import LoadedModel, Normalization
from alexbench.cli import options as opt
from alexbench.cli.common import (
    JSON_OPTION,
    WIDE_OPTION,
    Command,
    check_output_file,
    console,
    emit_json,
    err_console,
    handle_errors,
    json_output,
    parse_backend_list,
    parse_enum_list,
    report_unmeasured,
    signals_as_interrupts,
    unmeasured_asked,
)
from alexbench.cli.model_args import (
    bundle_for,
    calibration_records,
    check_outputs_spare_inputs,
    int8_calibration,
    model_for,
    read_images,
    warn_calibration_overlap,
)
from alexbench.devices import require
from alexbench.environment import capture
from alexbench.errors import AlexbenchError, DataError
from alexbench.exit_codes import ExitCode, outcome_of
from alexbench.exporters import changed_since_export, folder_for
from alexbench.fileio import not_a_folder, write_json
from alexbench.inputs import InputSet, random_inputs
from alexbench.precision import Precision
from alexbench.runtimes import ModelBundle, SessionOptions
from alexbench.runtimes.base import CompileMode
from alexbench.verify import Status, run_verify

DEFAULT_BACKENDS = "eager,torchscript,pt2,onnxruntime"


@handle_errors
@json_output
def verify_cmd(
    ctx: typer.Context,
    backend: str = opt.backend_list(DEFAULT_BACKENDS),
    device: str | None = opt.device_list(),
    precision: str = opt.precision_list("fp32"),
    batch: int = opt.batch_one(
        8, "Images compared per cell; also the largest dynamic-batch size checked."
    ),
    data: Path | None = typer.Option(
        None,
        "--data-dir",
        "--data",
        help="Image folder (flat or DIR/<class>/): compare on real images instead of noise.",
    ),
    report_path: Path | None = opt.out_file(
        "JSON report file (default: verify-report.json in the artifacts' folder).", "--report"
    ),
    threads: int | None = opt.THREADS,
    compile_mode: CompileMode = opt.compile_mode(),
    artifacts: Path | None = opt.ARTIFACTS,
    calib_data: Path | None = opt.CALIB_DATA,
    calib_samples: int = opt.CALIB_SAMPLES,
    checkpoint: Path | None = opt.CHECKPOINT,
    weights: Path | None = opt.WEIGHTS,
    seed: int | None = opt.seed(),
    num_classes: int | None = opt.NUM_CLASSES,
    image_size: int | None = opt.IMAGE_SIZE,
    normalize: Normalization | None = opt.NORMALIZE,
    as_json: bool = JSON_OPTION,
    wide: bool = WIDE_OPTION,
) -> None:
    """Prove the exported artifacts compute what PyTorch computes (exit 1: a cell failed parity).

    Exit status 4 if a cell crashed, nothing could be verified, or a backend or precision
    named with --backend/--precision was verified in no cell.

    Exports first when artifacts are missing or stale. Examples:

      alexbench verify

      alexbench verify --data-dir data/cifar/train --batch 32

      alexbench verify --backend eager,onnxruntime --precision fp32,bf16 --device cpu

      alexbench verify --json  (stdout: the report document, as written to --out)
    """
    backends = parse_backend_list(backend)
    devices = opt.devices_asked(device)
    for d in devices:
        require(d)
    precisions = parse_enum_list(precision, Precision, "--precision")
    opt.check_threads(threads)
    if data is not None and not data.is_dir():  # fail before any export work
        raise DataError(f"--data-dir {data}: {not_a_folder(data)}")
    outputs = [("--out", report_path)]
    sources = {"checkpoint": checkpoint, "weights": weights, "artifacts": artifacts}
    if report_path is not None:
        check_output_file(report_path, "--out")
    check_outputs_spare_inputs(outputs, **sources)
    loaded = model_for(
        artifacts, checkpoint=checkpoint, weights=weights, seed=seed,
        num_classes=num_classes, image_size=image_size, normalize=normalize,
    )  # fmt: skip
    check_outputs_spare_inputs(outputs, **sources, loaded=loaded)
    meta = loaded.meta
    inputs = (  # read before any export: a folder without images fails first
        read_images(  # from the far end: not the --calib-data images when both name one folder
            # Seed 0 whatever --seed says: calibration drew from the front of that order.
            data,
            batch,
            loaded,
            "--data-dir",
            from_end=True,
        )
        if data is not None
        else random_inputs(batch, meta.image_size, seed or 0)
    )
    out = (
        report_path or (artifacts if artifacts is not None else folder_for(loaded)) / VERIFY_REPORT
    )
    check_output_file(out, "--out")  # before the work, not after it
    # A verify that fails from here on (a listed file gone: exit 2; an interrupt) left the
    # previous report in place, saying "passed": a script that read it after the failure was
    # told the folder passed (an outside audit). Retired now; a new one is written at the end.
    out.unlink(missing_ok=True)
    bundle = bundle_for(
        console, artifacts, backends, loaded, precisions=precisions, devices=devices,
        calib_data=calib_data, calib_samples=calib_samples, checking=True,
    )  # fmt: skip
    if data is None and Precision.INT8 in precisions:
        inputs = _int8_inputs(inputs, bundle, loaded, batch, calib_data)
    if inputs.files:
        warn_calibration_overlap(inputs, bundle)
    checked_formats = [f.value for f in bundle.artifacts]
    folder = bundle.directory
    # Only where a cell reads the folder: eager alone names none (and hashing it all is ~1 GB).
    unchecked = changed_since_export(folder, checked_formats) if folder and checked_formats else {}
    for name, what in unchecked.items():
        err_console.print(
            f"warning: {(folder or Path('.')) / name} {what}; no cell here checks it (its backend "
            "and precision do)",
            markup=False,
        )
    options = SessionOptions(threads=threads, compile_mode=compile_mode)
    # Which bytes the cells check, hashed before they load them and again after: a file
    # replaced meanwhile (a concurrent export) was recorded as checked though no cell ran it.
    checked = bundle.file_hashes()
    with signals_as_interrupts(), console.status("verifying...") as status:
        result = run_verify(
            bundle, backends, devices, precisions, inputs, options,
            on_cell=lambda b, d, p: status.update(f"verifying {b.value} on {d.value} at {p.value}"),
        )  # fmt: skip
    report.render_verify(console, result, precisions, wide=wide)
    hashed = bundle.file_hashes()
    if changed := sorted(
        f for f in checked.keys() | hashed.keys() if checked.get(f) != hashed.get(f)
    ):
        err_console.print(
            f"error: {', '.join(changed)} changed on disk while verify ran (another export "
            f"into {bundle.directory}?): no report is written for bytes no cell checked; run "
            "verify again",
            markup=False,
        )
        raise typer.Exit(ExitCode.CELLS_FAILED)
    ran = [c for c in result.cells if c.status is not Status.UNSUPPORTED]
    # Where nothing ran, that is the error (and "passed" false) whatever was named.
    gaps = unmeasured_asked(ctx, {"backend": backends, "precision": precisions}, ran) if ran else []
    payload = result.to_dict() | {
        "schema": "alexbench-verify/1",
        # Not a pass for a reader of the file either: a value asked for that no cell checked.
        "passed": result.passed and not gaps,
        "asked_not_verified": gaps,
        "model": {"source": bundle.loaded.source.to_dict(), "meta": vars(meta)},
        "artifacts": {f.value: str(p) for f, p in bundle.artifacts.items()},
        # which bytes were checked: the manifest may say otherwise (a modified or stale file)
        "artifact_sha256": hashed,
        # Files of the folder no cell checked whose bytes no longer match the manifest.
        "unchecked_changed": unchecked,
        # What the int8 files checked here were calibrated on (the manifest's record).
        "int8_calibration": int8_calibration(calibration_records(bundle)),
        "environment": capture(threads),
    }
    write_json(out, payload)
    emit_json(payload)
    code = outcome_of((c.status for c in result.cells), Status.PASS, Status.FAIL, Status.ERROR)
    if gaps and code is ExitCode.OK:
        code = ExitCode.CELLS_FAILED
    # The verdict line says what the exit code says: FAIL only when a cell failed parity.
    verdict = {
        ExitCode.OK: "[bold green]PASS[/]",
        ExitCode.PARITY_FAILED: "[bold red]FAIL[/]",
    }.get(code, "[bold yellow]INCOMPLETE[/]")
    console.print(f"{verdict}: report written to {out}")
    if any(c.status is Status.ERROR for c in ran):
        err_console.print("error: a cell failed to run", markup=False)
    if not ran:
        err_console.print("error: nothing was verified: every cell is unsupported", markup=False)
    else:
        report_unmeasured(gaps, "verified")
    raise typer.Exit(code)


def _int8_inputs(
    noise: InputSet,
    bundle: ModelBundle,
    loaded: LoadedModel,
    batch: int,
    calib_data: Path | None,
) -> InputSet:
    """Inputs for a verify that asks for int8 without --data-dir. N(0,1) noise lies far outside
    the activations a static int8 model was calibrated on, which it clips: a correct int8 file
    failed (exit 1, an outside audit) while it passed on real images. So: real images from the
    folder int8 was calibrated in (--calib-data, or the folder its manifest records), drawn
    from the far end as --data-dir's are; where none is here, the noise, with a warning."""
    if not any(f in CALIBRATED for f in bundle.artifacts):
        return noise  # no int8 file to check here (its cells say why)
    # The manifest's folder first: --calib-data makes an int8 file only where none is fresh.
    folders = [
        Path(r.calibration_dir) for r in calibration_records(bundle).values() if r.calibration_dir
    ]
    folders += [calib_data] if calib_data is not None else []
    for folder in dict.fromkeys(folders):
        if not folder.is_dir():
            continue
        try:
            images = read_images(folder, batch, loaded, "--data-dir", from_end=True)
        except AlexbenchError:  # no readable image there now: the next folder, or the noise
            continue
        err_console.print(
            f"note: int8 asked without --data-dir: every cell is checked on {images.description}, "
            "the folder int8 was calibrated in (noise lies outside a static int8 model's "
            "calibrated range); --data-dir chooses others",
            markup=False,
        )
        return images
    err_console.print(
        "warning: int8 checked on random N(0,1) inputs, outside the range a static int8 model "
        "was calibrated on: a correct int8 file may fail; give --data-dir with real images",
        markup=False,
    )
    return noise


def register(app: typer.Typer) -> None:
    app.command("verify", cls=Command)(verify_cmd)
