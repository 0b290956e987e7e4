"""Turn the shared model/artifact options into a ModelBundle (the CLI's glue to exporters)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from alexbench.artifacts import CALIBRATED, ORT_CACHE_DIR, ArtifactFormat, ModelBundle
from alexbench.checkpoint import NORMALIZATION_STATS, LoadedModel, Normalization, SourceKind
from alexbench.cli.common import check_not_an_input, err_console, same_file
from alexbench.cli.options import DEFAULT_CALIB_SAMPLES
from alexbench.devices import Device
from alexbench.errors import InputError
from alexbench.exporters import (
    ARTIFACT_NAMES,
    folder_for,
    model_for_artifacts,
    prepare_bundle,
    recorded_onnx_settings,
)
from alexbench.exporters.manifest import ArtifactRecord, Manifest
from alexbench.inputs import InputSet, image_inputs
from alexbench.precision import Precision
from alexbench.runtimes import Backend, get_runtime, unsupported_reason


def check_model_options(checkpoint: Path | None, normalize: Normalization | None) -> None:
    """A checkpoint records its own normalisation: --normalize beside it would be ignored."""
    if checkpoint is not None and normalize is not None:
        raise InputError(
            "--normalize applies to --weights or the seeded model; "
            f"{checkpoint} records its own normalisation"
        )


def model_for(
    artifacts: Path | None,
    *,
    checkpoint: Path | None,
    weights: Path | None,
    seed: int | None,
    num_classes: int | None,
    image_size: int | None,
    normalize: Normalization | None,
) -> LoadedModel:
    """The model the options name (else the artifact folder's, else exports/latest's, else the
    seeded default): read, not exported."""
    if artifacts is not None and artifacts.exists() and not artifacts.is_dir():
        raise InputError(f"--artifacts {artifacts}: is a file, expected a folder")
    check_model_options(checkpoint, normalize)
    if normalize is not None and checkpoint is None and weights is None and seed is None:
        seed = 0  # --normalize names a model too (the seeded one), not the last export's
    loaded = model_for_artifacts(
        artifacts,
        checkpoint=checkpoint,
        weights=weights,
        seed=seed,
        num_classes=num_classes,
        image_size=image_size,
        normalization=normalize,
    )
    note_resized(loaded)
    return loaded


def model_options(loaded: LoadedModel) -> str:
    """The options that name `loaded` on a command line, for a hint to run as printed (without
    them `export --out DIR` names the default seeded model, which DIR does not hold)."""
    src, meta = loaded.source, loaded.meta
    if src.kind is SourceKind.CHECKPOINT:  # it records its classes, size and normalisation
        parts = [f"--checkpoint {shlex.quote(str(src.path))}"]
        if loaded.trained_image_size is not None:
            parts.append(f"--image-size {meta.image_size}")
        return " ".join(parts)
    if src.kind is SourceKind.WEIGHTS:  # the file says its classes
        parts = [f"--weights {shlex.quote(str(src.path))}"]
    else:
        parts = [f"--seed {src.seed}", f"--num-classes {meta.num_classes}"]
    parts.append(f"--image-size {meta.image_size}")
    stats = (tuple(meta.mean), tuple(meta.std))
    norm = next((n for n, s in NORMALIZATION_STATS.items() if s == stats), None)
    if norm is not None and norm is not Normalization.IMAGENET:
        parts.append(f"--normalize {norm.value}")
    return " ".join(parts)


def check_spares_artifacts(out: Path, option: str, folder: Path) -> None:
    """Refuse an output written over a file of the artifacts folder that export manages (a model,
    manifest.json, ONNX Runtime's cache): `verify --out art/alexnet.onnx` replaced the model
    with its report. The verify report itself (verify-report.json) belongs there."""
    # The entry a write replaces: files are written beside their path and renamed onto it
    # (fileio.atomic_path), so a link named alexnet.onnx is replaced, not followed.
    entry, root = out.absolute().parent.resolve() / out.name, folder.resolve()
    names = ARTIFACT_NAMES | {"manifest.json"}
    hit = next((n for n in names if entry == root / n), None)
    hit = hit or next(  # the file a managed link of the folder points to, reached another way
        (n for n in names if (root / n).exists() and same_file(out, root / n)), None
    )
    if hit is None and entry.is_relative_to(root / ORT_CACHE_DIR):
        hit = str(entry.relative_to(root))
    if hit is not None:
        raise InputError(
            f"{option} {out}: would overwrite {hit} in the artifacts folder {folder}, which "
            "export manages (give another path)"
        )


def check_results_folder_spares_artifacts(
    out: Path, artifacts: Path | None, loaded: LoadedModel
) -> None:
    """bench's --out folder is not inside the ONNX Runtime cache of the model's artifact folder:
    `bench --out art/ort-cache` was accepted, and the next `export --force` into art removed
    the cache and the results with it (an outside audit)."""
    folder = artifacts if artifacts is not None else folder_for(loaded)
    cache = folder.resolve() / ORT_CACHE_DIR
    if out.absolute().resolve().is_relative_to(cache):
        raise InputError(
            f"--out {out}: is inside {cache}, the ONNX Runtime cache of the artifacts folder, "
            "which export manages and removes (give another folder)"
        )


def check_outputs_spare_inputs(
    outputs: Iterable[tuple[str, Path | None]],
    *,
    checkpoint: Path | None,
    weights: Path | None,
    artifacts: Path | None,
    loaded: LoadedModel | None = None,
) -> None:
    """Each output file (option, path) is neither the model file read nor a managed file of the
    artifacts folder. Called before the model loads, and again after it (`loaded`) when no
    folder was given: the model's own folder under exports/ is known then."""
    folder = artifacts if artifacts is not None or loaded is None else folder_for(loaded)
    for option, path in outputs:
        if path is None:
            continue
        check_not_an_input(path, option, [("--checkpoint", checkpoint), ("--weights", weights)])
        if folder is not None:
            check_spares_artifacts(path, option, folder)


def calibration_records(bundle: ModelBundle) -> dict[str, ArtifactRecord]:
    """Per calibrated (int8) artifact in the bundle, its manifest record, where it records a
    calibration."""
    manifest = Manifest.load(bundle.directory) if bundle.directory else None
    if manifest is None:
        return {}
    records = {fmt.value: manifest.artifacts.get(fmt.value) for fmt in bundle.artifacts}
    return {fmt: r for fmt, r in records.items() if r is not None and r.calibration}


def int8_calibration(records: dict[str, ArtifactRecord]) -> dict[str, str]:
    """What each int8 file was calibrated on, as results and reports record it (format ->
    "256 images from DIR"), from `calibration_records`."""
    return {fmt: record.calibration for fmt, record in records.items()}


def warn_calibration_overlap(inputs: InputSet, bundle: ModelBundle) -> None:
    """`verify --data-dir` draws from the far end of the order calibration drew from the front
    of: one folder given to both shares no image while the two counts fit in it. Where they do
    not (the default 256 calibration images: any folder under 256 + --batch), or the folders
    nest, int8 is checked partly on its own calibration images, which flatters it: said, with
    how many (by file, from the manifest's folder and count; unreadable files aside)."""
    from alexbench.inputs import draw_order
    from alexbench.training.data_files import image_files

    checked = {os.path.realpath(f) for f in inputs.files}
    for fmt, record in calibration_records(bundle).items():
        folder = Path(record.calibration_dir)
        if not record.calibration_images or not folder.is_dir():
            continue
        files = image_files(folder)
        drawn = draw_order(len(files))[: record.calibration_images]
        both = len(checked & {os.path.realpath(files[i]) for i in drawn})
        if both:
            err_console.print(
                # Not "--data-dir:": without it, int8 is checked on its calibration folder.
                f"warning: {both} of the {len(checked)} images checked are among the "
                f"{record.calibration_images} {fmt} was calibrated on (from {folder}), which "
                "flatter it: a smaller --batch or another folder (--data-dir) checks it on "
                "unseen images",
                markup=False,
            )


def _calib_hint(fmt: ArtifactFormat, calib_data: Path | None) -> str:
    """An int8 file is made from calibration images: the folder given, else a placeholder."""
    if fmt not in CALIBRATED:
        return ""
    return f" --calib-data {shlex.quote(str(calib_data)) if calib_data else 'IMAGES_DIR'}"


def read_images(
    directory: Path, count: int, loaded: LoadedModel, option: str, **kw: Any
) -> InputSet:
    """`image_inputs` for `option`, with a warning where the folder fell short of `count`."""
    inputs = image_inputs(directory, count, loaded.meta, option=option,
                          crop_fraction=loaded.eval_crop_fraction, **kw)  # fmt: skip
    if inputs.shortfall:
        err_console.print(f"warning: {option} {directory}: {inputs.shortfall}", markup=False)
    return inputs


def read_calibration(directory: Path, count: int, loaded: LoadedModel) -> InputSet:
    """The --calib-data images for int8 calibration: up to `count`, never repeated."""
    return read_images(
        directory, count, loaded, "--calib-data", repeat=False, count_option="--calib-samples"
    )


def note_resized(loaded: LoadedModel) -> None:
    """Allowed (AlexNet's adaptive pool takes any size), but not silently: accuracy and speed
    are then those of another input size than the checkpoint was trained for."""
    if loaded.trained_image_size is not None:
        size = loaded.meta.image_size
        err_console.print(
            f"note: running the checkpoint at {size}x{size}; it was trained at "
            f"{loaded.trained_image_size}x{loaded.trained_image_size}",
            markup=False,
        )


def bundle_for(
    console: Console,
    artifacts: Path | None,
    backends: Iterable[Backend],
    loaded: LoadedModel,
    *,
    precisions: Sequence[Precision] = (Precision.FP32,),
    devices: Sequence[Device] = (Device.CPU,),
    calib_data: Path | None = None,
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    checking: bool = False,
) -> ModelBundle:
    """`loaded` (from `model_for`) with every artifact its cells need (exported when missing or
    stale; int8 calibrated on `calib_data`), in `artifacts` or, without it, in the model's own
    folder under exports/. `checking`: for verify, which also checks the files of pairs that
    are not timed (`Runtime.checks_only`) and keeps stale files as they are."""
    needed: list[ArtifactFormat] = []
    for b in backends:
        runtime = get_runtime(b)
        for p in precisions:
            fmt = runtime.artifact_for(p)
            usable = any(unsupported_reason(runtime, d, p, checking) is None for d in devices)
            if fmt is not None and usable and fmt not in needed:
                needed.append(fmt)
    calibration = None
    if calib_data is not None and any(f in CALIBRATED for f in needed):
        calibration = read_calibration(calib_data, calib_samples, loaded)
    folder = artifacts if artifacts is not None else folder_for(loaded)
    opset, exporter = recorded_onnx_settings(folder)
    out_options = f"--out {shlex.quote(str(folder))}"  # and the model's, for hints to run
    options = model_options(loaded)

    def exporting(fmt: ArtifactFormat) -> None:
        # A lasting line, not only the status spinner: piped output must say it exported too.
        status.update(f"exporting {fmt.value} (missing or stale)...")
        err_console.print(f"exporting {fmt.value} into {folder} (missing or stale)", markup=False)

    with console.status("checking artifacts...") as status:
        bundle = prepare_bundle(
            loaded,
            folder,
            needed,
            opset=opset,
            onnx_exporter=exporter,
            calibration=calibration,
            # These commands have no --force: the export command that replaces the folder.
            force_hint=f"`alexbench export {out_options} {options} --force`",
            on_export=exporting,
            on_wait=lambda: err_console.print(
                f"waiting for another alexbench process writing {folder}...", markup=False
            ),
            on_modified=lambda f, p: err_console.print(
                f"warning: {p} differs from the sha256 in its manifest; using it as it is",
                markup=False,
            ),
            # verify checks the files a user has; a stale one is not replaced first
            keep_stale=checking,
            on_stale=lambda f, p, why: err_console.print(
                f"warning: {p} is stale ({why}); checking it as it is "
                f"(`alexbench export {out_options} --format {f.value} {options}"
                f"{_calib_hint(f, calib_data)}` makes a fresh one)",
                markup=False,
            ),
        )
    meta = loaded.meta
    # eager alone reads no file: naming a folder it neither read nor made misled (an audit)
    where = f"; artifacts: {folder}" if needed else ""
    console.print(
        f"Model: AlexNet, {meta.num_classes} classes, {meta.image_size}x{meta.image_size}, "
        f"{loaded.source.describe()}{where}",
        markup=False,
    )
    return bundle
