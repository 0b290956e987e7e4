"""Exporters (one module per format), and the export pipeline that reuses fresh artifacts.

`prepare_bundle` is what verify/bench/evaluate call: it exports whatever is missing or stale
(weights, image size, opset, exporter or torch version changed, or a file's hash no longer
matches) and returns the paths. A folder holds one model's artifacts and is locked while they are
written; each file is written to a temporary name and renamed, and the manifest is rewritten after
each file, so it always describes what the folder holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from types import ModuleType

from alexbench.artifacts import (
    CALIBRATED,
    ORT_CACHE_DIR,
    VERIFY_REPORT,
    ArtifactFormat,
    ModelBundle,
)
from alexbench.checkpoint import (
    LoadedModel,
    ModelMeta,
    Normalization,
    SourceKind,
    file_sha256,
    load_model,
)
from alexbench.errors import AlexbenchError, ExportError, InputError
from alexbench.exporters import onnx as onnx_exporter_module
from alexbench.exporters import onnx_fp16, onnx_int8, pt2_int8
from alexbench.exporters import pt2 as pt2_exporter
from alexbench.exporters import torchscript as torchscript_exporter
from alexbench.exporters.base import (
    DEFAULT_OPSET,
    NEEDS_CALIBRATION,
    WORK_PREFIX,
    ExportRequest,
    OnnxExporter,
)
from alexbench.exporters.manifest import (
    MANIFEST_NAME,
    ArtifactRecord,
    Manifest,
    config_key,
    stack_versions,
)
from alexbench.fileio import (
    atomic_path,
    folder_lock,
    missing_folders,
    remove_empty_folders,
    require_free_space,
)
from alexbench.inputs import InputSet
from alexbench.model import MIN_IMAGE_SIZE, POOLED_SIDE, feature_map_side

EXPORTERS: dict[ArtifactFormat, ModuleType] = {
    ArtifactFormat.TORCHSCRIPT: torchscript_exporter,
    ArtifactFormat.ONNX: onnx_exporter_module,
    ArtifactFormat.PT2: pt2_exporter,
    ArtifactFormat.ONNX_FP16: onnx_fp16,
    ArtifactFormat.ONNX_INT8: onnx_int8,
    ArtifactFormat.PT2_INT8: pt2_int8,
}
DEFAULT_FORMATS = (ArtifactFormat.TORCHSCRIPT, ArtifactFormat.ONNX, ArtifactFormat.PT2)
# Variants derived from the fp32 ONNX file: it is exported (or reused) before them.
ONNX_VARIANTS = (ArtifactFormat.ONNX_FP16, ArtifactFormat.ONNX_INT8)

__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "ArtifactStatus",
    "ExportOutcome",
    "OnnxExporter",
    "check_opset",
    "ensure_artifacts",
    "folder_for",
    "latest_folder",
    "model_for_artifacts",
    "point_latest",
    "prepare_bundle",
    "recorded_onnx_settings",
]

ExportOutcome = tuple[ArtifactFormat, ArtifactRecord, "ArtifactStatus"]


def _stats(values: Iterable[float]) -> list[float]:
    """Normalisation statistics as recorded (rounded: float noise must not change an identity)."""
    return [round(float(v), 6) for v in values]


def onnx_metadata(loaded: LoadedModel) -> dict[str, str]:
    """What an ONNX file records about its input and output (metadata_props, strings). The
    preprocessing is evaluate's (the manifest says it too): a consumer who resizes another way
    feeds the model other pixels."""
    from alexbench.training.data_files import preprocessing  # torchvision: imported lazily

    meta = loaded.meta
    return {
        "alexbench.input": (
            f"float32 NCHW RGB, {meta.image_size}x{meta.image_size}, "
            "normalised as (pixel / 255 - mean) / std"
        ),
        "alexbench.mean": json.dumps(_stats(meta.mean)),
        "alexbench.std": json.dumps(_stats(meta.std)),
        "alexbench.class_names": json.dumps(list(meta.class_names or [])),
        "alexbench.output": f"logits, {meta.num_classes} classes",
        "alexbench.preprocess": preprocessing(meta.image_size, loaded.eval_crop_fraction),
    }


def _artifact_config(
    versions: dict[str, str | None],
    fmt: ArtifactFormat,
    weights_sha: str,
    meta: ModelMeta,
    metadata: dict[str, str],
    opset: int,
    exporter: OnnxExporter,
    calibration_sha: str | None = None,
) -> dict:
    """What makes one artifact file: a changed value makes another file. `metadata`: the ONNX
    files' metadata_props (`onnx_metadata`), computed once per export."""
    cfg = {
        "format": fmt.value,
        "weights_sha256": weights_sha,
        "image_size": meta.image_size,
        "num_classes": meta.num_classes,
        "torch": versions["torch"],
    }
    # Every file carries the metadata (ONNX: metadata_props; torch: an extra archive entry),
    # and class names are not in the model's identity: changed ones make the files again.
    cfg["metadata"] = metadata
    if fmt is ArtifactFormat.ONNX or fmt in ONNX_VARIANTS:
        cfg |= {"opset": opset, "onnx_exporter": exporter.value, "onnx": versions["onnx"]}
        # Made with the oldest IR version its opset allows, without what IR 10 added below it.
        cfg["ir_version"] = "lowest, parts' metadata below 10"
        if exporter is OnnxExporter.DYNAMO:  # onnxscript writes the dynamo exporter's graph
            cfg["onnxscript"] = versions["onnxscript"]
    if fmt is ArtifactFormat.ONNX_FP16:
        cfg["onnxruntime"] = versions["onnxruntime"]
    if fmt is ArtifactFormat.ONNX_INT8:
        cfg |= {
            "onnxruntime": versions["onnxruntime"],
            "calibration": calibration_sha,
            # The recipe shapes the bytes too: a changed default must not reuse old files.
            "recipe": asdict(onnx_int8.DEFAULT_RECIPE),
        }
    if fmt is ArtifactFormat.PT2_INT8:
        cfg |= {"torchao": versions["torchao"], "calibration": calibration_sha}
    if fmt is ArtifactFormat.TORCHSCRIPT:
        # Traced with cuDNN's TF32 and benchmark switches off (exporters/torchscript.py): a file
        # traced before that, with them as torch left them, is made again.
        cfg["cudnn_switches"] = "off"
        cfg["debug_records"] = "none"  # made without them: an older file is made again
    return cfg


# Without --artifacts, each model gets its own folder under exports/ (named by its identity), and
# `export` points exports/latest at the one it wrote last.
DEFAULT_ROOT = Path("exports")
LATEST = "latest"


def model_identity(meta: ModelMeta, weights_sha: str) -> dict:
    """What makes two models the same model for their artifacts: the weights and everything
    that changes what an input image means (size, normalisation) or what the output means."""
    return {
        "weights_sha256": weights_sha,
        "num_classes": meta.num_classes,
        "image_size": meta.image_size,
        "mean": _stats(meta.mean),
        "std": _stats(meta.std),
    }


def _manifest_identity(manifest: Manifest) -> dict:
    model = manifest.model
    meta = ModelMeta.from_dict(model) if model else ModelMeta()
    return model_identity(meta, str(manifest.source.get("weights_sha256")))


def describe_model(source: dict, identity: dict) -> str:
    """'seeded (seed 0), 1000 classes, 224 px, weights 3f9a2b1c' for one-line messages."""
    kind = source.get("kind")
    what = (
        f"seeded (seed {source.get('seed')})"
        if kind == "seeded"
        else f"{kind} {source.get('path')}"
    )
    return (
        f"{what}, {identity['num_classes']} classes, {identity['image_size']} px, "
        f"weights {str(identity['weights_sha256'])[:8]}"
    )


def _normalisation(identity: dict, other: dict) -> str:
    """', mean [..], std [..]' where the two identities normalise differently (describe_model
    leaves it out, and two models that differ only there read the same without it)."""
    keys = [k for k in ("mean", "std") if identity.get(k) != other.get(k)]
    return "".join(f", {k} {identity.get(k)}" for k in keys)


def folder_for(loaded: LoadedModel, root: Path = DEFAULT_ROOT) -> Path:
    """The model's own folder under `root`: 'seeded0-1000c-224px-3f9a2b1c'-style name, whose
    hash covers the whole identity (weights, classes, size, normalisation)."""
    identity = model_identity(loaded.meta, loaded.weights_sha256)
    digest = config_key(identity)[:8]
    src = loaded.source
    if src.kind is SourceKind.SEEDED:
        stem = f"seeded{src.seed}"
    else:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(src.path or "model").stem)[:40]
    meta = loaded.meta
    return root / f"{stem}-{meta.num_classes}c-{meta.image_size}px-{digest}"


def point_latest(folder: Path) -> None:
    """Make <root>/latest a symlink to `folder` (replaced atomically)."""
    link = folder.parent / LATEST
    tmp = folder.parent / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(folder.name, tmp)
    os.replace(tmp, link)


def latest_folder(root: Path = DEFAULT_ROOT) -> Path | None:
    link = root / LATEST
    return link.resolve() if (link / "manifest.json").is_file() else None


# What an export killed outright (SIGKILL, out of memory) leaves: fileio.atomic_path's temporary
# files and the int8 exporter's work folder. Anything else in the folder is left alone.
# (Not verify-report.json's: verify writes it without the folder lock, so it may be live.)
_TEMPORARIES = (".alexnet.*.tmp*", ".manifest.*.tmp.json")


# Bytes per parameter an export writes at its peak: the file (4 fp32, 2 fp16, 1 int8) plus, for
# the ONNX int8 model, the preprocessed fp32 copy in its work folder.
_BYTES_PER_PARAM = {
    ArtifactFormat.ONNX_FP16: 2,
    ArtifactFormat.ONNX_INT8: 5,
    ArtifactFormat.PT2_INT8: 1,
}
_SPACE_MARGIN = 1.1, 32 * 2**20  # x1.1 + 32 MiB: headers, graphs, the filesystem's own needs


# The TorchScript file exists twice while it is made: as torch saves it, then copied without its
# debug records (exporters/torchscript.py).
_COPIES_WHILE_MADE = {ArtifactFormat.TORCHSCRIPT: 2}


def _bytes_needed(fmt: ArtifactFormat, params: int) -> int:
    factor, extra = _SPACE_MARGIN
    copies = _COPIES_WHILE_MADE.get(fmt, 1)
    return int(params * _BYTES_PER_PARAM.get(fmt, 4) * factor * copies + extra)


def _remove_stale_temporaries(directory: Path) -> None:
    """Called with the folder locked, so no other export is writing these now."""
    for pattern in _TEMPORARIES:
        for path in directory.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
    for path in directory.glob(f"{WORK_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


# The file names an export writes (alexnet.onnx, ...): only these are ever replaced or removed;
# the user's own alexnet.pth or alexnet.notes.txt beside them are not alexbench's.
ARTIFACT_NAMES = frozenset(f"alexnet{module.suffix}" for module in EXPORTERS.values())


def _remove_artifacts(directory: Path, manifest: Manifest) -> None:
    """--force: the folder is handed over whole; the other model's files go first: those in
    its manifest, any other file by an artifact's name (an orphan of an older export) and its
    verify report. Other files (alexnet.pth: perhaps the very weights being exported) stay."""
    names = {record.path for record in manifest.artifacts.values()}
    names |= ARTIFACT_NAMES | {VERIFY_REPORT, "manifest.json"}
    for name in names:
        (directory / name).unlink(missing_ok=True)
    # ONNX Runtime's optimised copies of the old model (runtimes/ort_cache.py): never served for
    # another file (keyed by its sha256), but hundreds of MiB left behind.
    shutil.rmtree(directory / ORT_CACHE_DIR, ignore_errors=True)


def _retire_verify_report(directory: Path, fmt: ArtifactFormat, sha256: str) -> None:
    """A file replaced by a new export: the folder's verify report, if it checked the old
    file (other bytes), no longer speaks for the folder (a CI job reading its "passed": true
    would trust a file nobody verified), so it goes, as with --force."""
    path = directory / VERIFY_REPORT
    try:
        checked = json.loads(path.read_text(encoding="utf-8")).get("artifact_sha256") or {}
    except (OSError, ValueError, AttributeError):
        return  # none, or not a report this version reads: left alone
    if isinstance(checked, dict) and checked.get(fmt.value, sha256) != sha256:
        path.unlink(missing_ok=True)


class ArtifactStatus(StrEnum):
    EXPORTED = "exported"
    REUSED = "reused"  # config and sha256 match the manifest
    MODIFIED = "modified"  # config matches but the file's bytes changed since export
    STALE = "stale"  # made with other settings or versions; kept as it is (verify)


def _file_state(record: ArtifactRecord | None, directory: Path, key: str) -> ArtifactStatus | None:
    """REUSED or MODIFIED for an artifact made from the same inputs; None when it must be made."""
    if record is None or record.config_key != key:
        return None
    path = directory / record.path
    if not path.is_file():
        return None
    same = path.stat().st_size == record.size_bytes and file_sha256(path) == record.sha256
    return ArtifactStatus.REUSED if same else ArtifactStatus.MODIFIED


def ensure_artifacts(
    loaded: LoadedModel,
    out_dir: Path,
    formats: Iterable[ArtifactFormat] = DEFAULT_FORMATS,
    *,
    opset: int = DEFAULT_OPSET,
    onnx_exporter: OnnxExporter = OnnxExporter.DYNAMO,
    force: bool = False,
    keep_modified: bool = False,
    keep_stale: bool = False,
    calibration: InputSet | None = None,
    on_export: Callable[[ArtifactFormat], None] | None = None,
    on_wait: Callable[[], None] | None = None,
    force_hint: str = "--force",
) -> tuple[Manifest, list[ExportOutcome]]:
    """Export each requested format unless a fresh copy is already in `out_dir`.

    A folder holds one model's artifacts: a different model is refused unless `force`, which
    replaces them whole. The folder is locked for the whole export (a second process waits).

    A file made from the same inputs whose bytes changed since export is re-exported by
    `export`, but kept as it is when `keep_modified` (verify/bench): those must test the file a
    user actually has, or a corrupted artifact would be silently repaired instead of caught.
    With `keep_stale` (verify), a file of this model made with other settings or library
    versions is kept too (STALE) rather than replaced by a new one, which would be checked
    instead of the file the user ships.
    """
    formats = list(formats)
    check_opset(opset, onnx_exporter, formats)  # before any work: nothing half-made to undo
    check_legacy_size(loaded.meta.image_size, onnx_exporter, formats)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory")
    weights_sha = loaded.weights_sha256
    created = missing_folders(out_dir)
    with folder_lock(out_dir, on_wait):
        try:
            return _export_locked(
                loaded, out_dir, formats, weights_sha, opset=opset, onnx_exporter=onnx_exporter,
                force=force, keep_modified=keep_modified, keep_stale=keep_stale,
                calibration=calibration,
                on_export=on_export, force_hint=force_hint,
            )  # fmt: skip
        except BaseException:
            # A refused or failed first export leaves no empty folder behind (removed with the
            # lock held: a waiting export then makes and locks a new one).
            remove_empty_folders(created)
            raise


ONNX_FAMILY = (ArtifactFormat.ONNX, ArtifactFormat.ONNX_FP16, ArtifactFormat.ONNX_INT8)
# Per-channel QuantizeLinear/DequantizeLinear (their `axis`) arrived in opset 13; ORT's
# quantiser writes them into an older model anyway, which then fails the checker and ORT.
INT8_MIN_OPSET = 13
DYNAMO_MIN_OPSET = 18  # torch.onnx's dynamo exporter builds 18 and cannot always convert down


def check_legacy_size(
    image_size: int, exporter: OnnxExporter, formats: list[ArtifactFormat]
) -> None:
    """The legacy exporter writes the adaptive pool as a fixed AveragePool, so the feature map's
    side must be a multiple of the pooled 6; refused here in one line (the exporter itself dumps
    its whole TorchScript graph on stdout before failing)."""
    if exporter is not OnnxExporter.LEGACY or not any(f in ONNX_FAMILY for f in formats):
        return
    side = feature_map_side(image_size)
    if side % POOLED_SIDE:
        low, high = _legacy_sizes_near(image_size)
        raise InputError(
            f"--onnx-exporter legacy cannot export a {image_size} px model: its feature map is "
            f"{side}x{side}, and the legacy exporter needs a multiple of {POOLED_SIDE} (the "
            f"nearest sizes that work: {low}-{high} px); the dynamo exporter (the default) "
            "takes any size"
        )


def _legacy_sizes_near(image_size: int) -> tuple[int, int]:
    """The run of image sizes whose feature map is a multiple of the pooled side (223-254 for
    6x6, 415-446 for 12x12, ...) nearest to `image_size`."""
    runs: list[list[int]] = []
    for size in range(MIN_IMAGE_SIZE, 2 * image_size + 256):
        if feature_map_side(size) % POOLED_SIDE == 0:
            if runs and runs[-1][1] == size - 1:
                runs[-1][1] = size
            else:
                runs.append([size, size])
    low, high = min(runs, key=lambda r: min(abs(image_size - r[0]), abs(image_size - r[1])))
    return low, high


def legacy_max_opset() -> int:
    """The highest opset torch's TorchScript-based exporter supports (20 in torch 2.14; it
    warns "not supported" for 21-23, and asked for 24 it printed its whole graph and failed
    after the TorchScript file was written)."""
    try:
        from torch.onnx import _constants  # private, hence the fallbacks
    except ImportError:
        return 20
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def check_opset(opset: int, exporter: OnnxExporter, formats: list[ArtifactFormat]) -> None:
    """Refuse an opset that a requested ONNX format cannot be written in (an InputError)."""
    if opset < 7 or opset > 25:
        raise InputError(f"--opset {opset} is outside the supported range 7..25")
    if not any(f in ONNX_FAMILY for f in formats):
        return
    if exporter is OnnxExporter.LEGACY and opset > legacy_max_opset():
        raise InputError(
            f"--opset {opset}: the legacy ONNX exporter writes opset {legacy_max_opset()} at "
            "most (the dynamo exporter, the default, goes higher)"
        )
    if exporter is OnnxExporter.DYNAMO and opset < DYNAMO_MIN_OPSET:
        raise InputError(
            f"--opset {opset}: the dynamo ONNX exporter makes opset {DYNAMO_MIN_OPSET} or above "
            "(for older opsets add --onnx-exporter legacy)"
        )
    if ArtifactFormat.ONNX_INT8 in formats and opset < INT8_MIN_OPSET:
        raise InputError(
            f"--opset {opset}: the int8 ONNX model needs opset {INT8_MIN_OPSET} or above "
            "(per-channel QuantizeLinear/DequantizeLinear)"
        )


def _export_locked(
    loaded: LoadedModel,
    out_dir: Path,
    formats: Iterable[ArtifactFormat],
    weights_sha: str,
    *,
    opset: int,
    onnx_exporter: OnnxExporter,
    force: bool,
    keep_modified: bool,
    keep_stale: bool,
    calibration: InputSet | None,
    on_export: Callable[[ArtifactFormat], None] | None,
    force_hint: str,
) -> tuple[Manifest, list[ExportOutcome]]:
    meta = loaded.meta
    identity = model_identity(meta, weights_sha)
    _remove_stale_temporaries(out_dir)
    old = Manifest.load(out_dir)
    before = _as_json(old.to_dict()) if old is not None else None
    if old is None and not force:  # files named like ours that no manifest says we made
        theirs = sorted(name for name in ARTIFACT_NAMES if (out_dir / name).is_file())
        if theirs:
            raise InputError(
                f"{out_dir} holds {', '.join(theirs)} but no manifest.json: alexbench did not "
                f"make them (or was stopped before recording them); give another folder, or "
                f"{force_hint} to replace them"
            )
    source = loaded.source.to_dict() | {"weights_sha256": weights_sha}  # its path is absolute
    held = _manifest_identity(old) if old is not None else None
    if old is not None and held != identity:
        if not force:
            raise InputError(
                f"{out_dir} holds the artifacts of another model "
                f"({describe_model(old.source, held)}{_normalisation(held, identity)}), not of "
                f"{describe_model(source, identity)}{_normalisation(identity, held)}: give "
                f"another folder (or none: each model gets its own under exports/), or "
                f"{force_hint} to replace them"
            )
        _remove_artifacts(out_dir, old)
        old = None
    versions = stack_versions()  # read once: every file's config key and record use them
    metadata = onnx_metadata(loaded)  # the ONNX files' props; the manifest says the same
    model = dict(vars(meta)) | {"preprocess": metadata["alexbench.preprocess"]}
    manifest = Manifest(source=source, model=model, versions=versions)
    if old is not None:  # same model: keep the records of formats not requested this time
        manifest.artifacts.update({k: _with_interface(k, r) for k, r in old.artifacts.items()})
    formats = list(dict.fromkeys(formats))
    asked = set(formats)  # the parent ONNX file below is made only for its variants
    if any(f in ONNX_VARIANTS for f in formats) and ArtifactFormat.ONNX not in formats:
        formats.insert(0, ArtifactFormat.ONNX)
    formats.sort(key=lambda f: f in ONNX_VARIANTS)  # the fp32 ONNX file before its variants
    calib_sha = None
    if calibration is not None:
        calib_sha = hashlib.sha256(calibration.batch.tobytes()).hexdigest()
    request = ExportRequest(
        loaded.model,
        meta.image_size,
        meta.num_classes,
        opset,
        onnx_exporter,
        calibration=calibration.batch if calibration is not None else None,
        calibration_desc=calibration.description if calibration is not None else "",
        calibration_dir=calibration.directory if calibration is not None else "",
        onnx_path=out_dir / f"alexnet{onnx_exporter_module.suffix}",
        metadata=metadata,
    )
    outcomes: list[ExportOutcome] = []
    params = sum(p.numel() for p in loaded.model.parameters())
    genuine_parent = True  # alexnet.onnx is what this export makes (not changed, not stale)
    for fmt in formats:
        cfg = _artifact_config(
            versions, fmt, weights_sha, meta, metadata, opset, onnx_exporter, calib_sha
        )
        key = config_key(cfg)
        record = manifest.artifacts.get(fmt.value)
        state = None if force else _file_state(record, out_dir, key)
        if (
            keep_stale
            and fmt in asked
            and record is not None
            and not (out_dir / record.path).exists()
        ):
            # verify checks the files a user has: one its manifest lists that is gone is not
            # quietly made again and passed (int8 says the same, `_calibrated_on_disk`)
            raise InputError(
                f"{out_dir / MANIFEST_NAME} lists {fmt.value}, but its file {record.path} is "
                f"gone: export it again (`alexbench export --format {fmt.value}` with this "
                "model and folder), or leave it out of --backend/--precision"
            )
        if state is None and keep_stale and record is not None:
            state = ArtifactStatus.STALE if (out_dir / record.path).is_file() else None
        if state in (ArtifactStatus.REUSED, ArtifactStatus.STALE) or (
            state is ArtifactStatus.MODIFIED and keep_modified
        ):
            outcomes.append((fmt, record, state))  # type: ignore[arg-type]
            if fmt is ArtifactFormat.ONNX:
                genuine_parent = state is ArtifactStatus.REUSED
            continue
        if on_export:
            on_export(fmt)
        module = EXPORTERS[fmt]
        target = out_dir / f"alexnet{module.suffix}"
        if record is None and target.exists() and not force:  # a file the manifest never listed
            raise InputError(
                f"{out_dir} holds {target.name}, which its manifest.json does not list: "
                f"alexbench did not make it (or was stopped before recording it); give another "
                f"folder, or {force_hint} to replace it"
            )
        fresh_parent = fmt in ONNX_VARIANTS and not genuine_parent
        need = _bytes_needed(fmt, params)
        if fresh_parent:  # made beside it for the time of this export
            need += _bytes_needed(ArtifactFormat.ONNX, params)
        require_free_space(out_dir, need, target.name)
        start = time.perf_counter()
        try:
            with atomic_path(target) as tmp, _parent_onnx(request, out_dir, fresh_parent) as req:
                fields = module.export(req, tmp)
        except AlexbenchError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ExportError(f"{fmt.value} export failed: {first}") from e
        seconds = time.perf_counter() - start
        n, s = meta.num_classes, meta.image_size
        record = ArtifactRecord(
            format=fmt.value,
            path=target.name,
            sha256=file_sha256(target),
            size_bytes=target.stat().st_size,
            input_shape=["batch", 3, s, s],
            output_shape=["batch", n],
            **module.interface.record_fields(),
            exporter=fields["exporter"],
            opset=fields.get("opset"),
            export_seconds=round(seconds, 3),
            config_key=key,
            calibration=fields.get("calibration", ""),
            calibration_dir=request.calibration_dir if fields.get("calibration") else "",
            calibration_images=(
                len(request.calibration)
                if fields.get("calibration") and request.calibration is not None
                else 0
            ),
            versions=versions,
        )
        manifest.artifacts[fmt.value] = record
        _retire_verify_report(out_dir, fmt, record.sha256)
        # Saved after each file: a later format's failure leaves a folder that says what it holds.
        manifest.save(out_dir)
        outcomes.append((fmt, record, ArtifactStatus.EXPORTED))
    if _as_json(manifest.to_dict()) != before:  # a run that only read it leaves it as it was
        manifest.save(out_dir)
    return manifest, outcomes


def _as_json(d: dict) -> str:
    """As the file would hold it (tuples as lists), to tell whether anything changed."""
    return json.dumps(d, sort_keys=True, default=str)


def _with_interface(key: str, record: ArtifactRecord) -> ArtifactRecord:
    """A kept record with how to call its file as this version says: manifests written before
    it recorded "input"/"logits" for every format, which the torch formats are not called by.
    The names depend on the format, not on the file's bytes."""
    try:
        fmt = ArtifactFormat(key)
    except ValueError:  # a format this version does not know: left as it is
        return record
    return dataclasses.replace(record, **EXPORTERS[fmt].interface.record_fields())


@contextlib.contextmanager
def _parent_onnx(request: ExportRequest, out_dir: Path, fresh: bool) -> Iterator[ExportRequest]:
    """The request a variant (fp16, int8) is made with. Its fp32 parent is alexnet.onnx, unless
    that file was kept although it is not what this export makes (changed since export, or
    made with other settings: verify and evaluate test such a file as it is): then a fresh
    fp32 export beside it, removed after. A variant made from a changed file was recorded as
    this model's, and evaluate scored it without a word."""
    if not fresh:
        yield request
        return
    # Named like atomic_path's temporaries, so a killed export's copy is cleaned up next time.
    parent = out_dir / f".alexnet.parent-{os.getpid()}.tmp.onnx"
    try:
        EXPORTERS[ArtifactFormat.ONNX].export(request, parent)
        yield dataclasses.replace(request, onnx_path=parent)
    finally:
        parent.unlink(missing_ok=True)


def prepare_bundle(
    loaded: LoadedModel,
    out_dir: Path,
    formats: Iterable[ArtifactFormat],
    on_modified: Callable[[ArtifactFormat, Path], None] | None = None,
    on_stale: Callable[[ArtifactFormat, Path, str], None] | None = None,
    **kwargs: object,
) -> ModelBundle:
    """Export what is missing or stale and return the model plus its artifact paths.

    Artifacts whose bytes differ from the manifest are used as they are (and reported through
    `on_modified`): verifying the file on disk is the point. With `keep_stale=True` (verify) a
    stale one is too, reported through `on_stale` with what differs.
    """
    formats = list(dict.fromkeys(formats))
    missing: dict[ArtifactFormat, str] = {}
    kept: dict[ArtifactFormat, Path] = {}
    if kwargs.get("calibration") is None:
        for fmt in CALIBRATED:
            if fmt in formats:
                formats.remove(fmt)
                found = _calibrated_on_disk(loaded, Path(out_dir), fmt, on_modified)
                if isinstance(found, str) and kwargs.get("keep_stale"):
                    raise InputError(found)  # verify: the file it was to check is gone
                if isinstance(found, str):  # bench, evaluate, tune: the other cells still run
                    missing[fmt] = found
                elif found is None:
                    missing[fmt] = NEEDS_CALIBRATION
                else:
                    kept[fmt] = found
    if not formats:
        return ModelBundle(loaded, kept, missing, Path(out_dir))
    _, outcomes = ensure_artifacts(
        loaded,
        Path(out_dir),
        formats,
        keep_modified=True,
        **kwargs,  # type: ignore[arg-type]
    )
    paths = {fmt: Path(out_dir) / rec.path for fmt, rec, _ in outcomes}
    for fmt, rec, state in outcomes:
        if state is ArtifactStatus.MODIFIED and on_modified:
            on_modified(fmt, paths[fmt])
        if state is ArtifactStatus.STALE and on_stale:
            on_stale(fmt, paths[fmt], _staleness(rec))
    return ModelBundle(loaded, paths | kept, missing, Path(out_dir))


def changed_since_export(out_dir: Path, skip: Iterable[str]) -> dict[str, str]:
    """Files the folder's manifest lists, other than the formats in `skip`, that are gone or
    whose bytes differ from its sha256, with what is wrong (by path name). verify checks the
    files its cells run; an int8 or fp16 file not asked for was replaced by another model's,
    and the folder's report said PASS with no word of it (an outside audit)."""
    manifest = Manifest.load(out_dir)
    skipped = set(skip)
    found: dict[str, str] = {}
    for fmt, record in (manifest.artifacts if manifest else {}).items():
        if fmt in skipped:
            continue
        path = out_dir / record.path
        if not path.is_file():
            found[record.path] = "is gone"
        elif path.stat().st_size != record.size_bytes or file_sha256(path) != record.sha256:
            found[record.path] = "differs from the sha256 in its manifest"
    return found


def _staleness(record: ArtifactRecord) -> str:
    """What differs between how a kept file was made and what an export would do now."""
    now = stack_versions()
    diffs = [
        f"{name} {record.versions.get(name)}, here {now.get(name)}"
        for name in sorted(set(record.versions) | set(now))
        if record.versions and record.versions.get(name) != now.get(name)
    ]
    return "made with " + ", ".join(diffs) if diffs else "made with other export settings"


def _calibrated_on_disk(
    loaded: LoadedModel,
    directory: Path,
    fmt: ArtifactFormat,
    on_modified: Callable[[ArtifactFormat, Path], None] | None,
) -> Path | str | None:
    """An int8 file this model's export already made in `directory`, when no calibration images
    are given: calibration is needed to make one, not to verify or time the one a user has
    (it was skipped, and `verify` said PASS beside it). Used as it is, like any artifact. A
    string: the manifest lists one whose file is gone (said so, not "needs --calib-data")."""
    manifest = Manifest.load(directory) if directory.is_dir() else None
    record = manifest.artifacts.get(fmt.value) if manifest is not None else None
    if manifest is None or record is None:
        return None
    if _manifest_identity(manifest) != model_identity(loaded.meta, loaded.weights_sha256):
        return None  # another model's: the export path refuses it, with the reason
    state = _file_state(record, directory, record.config_key)  # its own key: only the bytes
    if state is None:  # recorded, but the file is gone: "unsupported" beside a PASS hid that
        return (
            f"{directory / MANIFEST_NAME} lists {fmt.value}, but its file {record.path} is "
            f"gone: give --calib-data DIR to export it again, or leave int8 out"
        )
    path = directory / record.path
    if state is ArtifactStatus.MODIFIED and on_modified:
        on_modified(fmt, path)
    return path


def _require_a_model_named(folder: Path) -> None:
    """A folder named with --artifacts and no model: without a manifest it names no model.
    Files in it (a model.onnx of the user's) would sit beside a seeded model's export that
    verify then passed, never having looked at them; and a mistyped path (`--artifacts
    exprots`) made a new folder, exported the seeded random model into it and passed: a green
    CI gate on a model nobody trained. So a model must be named to export one there."""
    if not folder.exists():
        what = "no such folder"
    elif any(not p.name.startswith(".") for p in folder.iterdir()):
        what = "has no manifest.json, so it names no model (alexbench did not export into it)"
    else:
        what = "is empty (no manifest.json), so it names no model"
    # (--num-classes/--image-size name the seeded model too: they say its shape)
    raise InputError(
        f"--artifacts {folder}: {what}: name the model to export there (--checkpoint, "
        "--weights, or --seed for the seeded random one), or check the path"
    )


def model_for_artifacts(
    artifacts_dir: Path | None,
    *,
    checkpoint: Path | None = None,
    weights: Path | None = None,
    seed: int | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
    normalization: Normalization | None = None,
) -> LoadedModel:
    """The model verify/bench should use: the one named on the command line, else the one the
    artifact folder was exported from (without a folder: the last `export`, exports/latest),
    else the default seeded model."""
    explicit = any(v is not None for v in (checkpoint, weights, seed, num_classes, image_size))
    folder = artifacts_dir if artifacts_dir is not None else latest_folder()
    manifest = None if explicit or folder is None else Manifest.load(Path(folder))
    if manifest is None and not explicit and artifacts_dir is not None:
        _require_a_model_named(Path(artifacts_dir))
    if manifest is None:
        return load_model(
            checkpoint=checkpoint,
            weights=weights,
            seed=0 if seed is None else seed,
            num_classes=num_classes,
            image_size=image_size,
            normalization=normalization,
        )
    assert folder is not None
    src, model = manifest.source, manifest.model
    kind = SourceKind(src["kind"])
    if kind is SourceKind.SEEDED:
        loaded = load_model(
            seed=src.get("seed") or 0,
            num_classes=model["num_classes"],
            image_size=model["image_size"],
        )
        loaded.meta.mean, loaded.meta.std = tuple(model["mean"]), tuple(model["std"])
        return loaded
    path = find_source(Path(src["path"]), src.get("file_sha256"), Path(folder))
    loaded = load_model(
        checkpoint=path if kind is SourceKind.CHECKPOINT else None,
        weights=path if kind is SourceKind.WEIGHTS else None,
        image_size=model["image_size"],
    )
    if kind is SourceKind.WEIGHTS:
        loaded.meta.mean, loaded.meta.std = tuple(model["mean"]), tuple(model["std"])
    return loaded


def find_source(recorded: Path, sha256: str | None, folder: Path) -> Path:
    """The weights file a manifest was exported from: where it was, else (moved, or a relative
    path from an older manifest) a file of the same name and sha256 near the working directory
    or the artifact folder."""
    if recorded.is_file() and (sha256 is None or file_sha256(recorded) == sha256):
        return recorded
    if recorded.is_file():
        raise InputError(
            f"{recorded} has changed since the artifacts in {folder} were exported from it "
            "(sha256 differs): re-export, or pass --checkpoint/--weights"
        )
    if sha256 is not None:
        bases = dict.fromkeys(
            p.resolve() for p in (Path.cwd(), folder.parent, folder.parent.parent)
        )
        for base in bases:
            for depth in range(4):  # bounded: never walk a whole dataset tree
                for candidate in base.glob("/".join(["*"] * depth + [recorded.name])):
                    if candidate.is_file() and file_sha256(candidate) == sha256:
                        return candidate
    raise InputError(
        f"the artifacts in {folder} were exported from {recorded}, which no longer exists "
        "(nor a file of that name with the same sha256 nearby): pass --checkpoint/--weights, "
        "or re-export"
    )


def recorded_onnx_settings(artifacts_dir: Path) -> tuple[int, OnnxExporter]:
    """The opset and exporter the existing ONNX artifact was made with, so that a later verify
    or bench does not treat a deliberate `--opset 17` export as stale."""
    manifest = Manifest.load(Path(artifacts_dir)) if Path(artifacts_dir).is_dir() else None
    record = manifest.artifacts.get(ArtifactFormat.ONNX.value) if manifest else None
    if record is None or record.opset is None:
        return DEFAULT_OPSET, OnnxExporter.DYNAMO
    legacy = OnnxExporter.LEGACY.value in record.exporter
    return record.opset, OnnxExporter.LEGACY if legacy else OnnxExporter.DYNAMO
