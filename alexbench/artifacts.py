"""The artifact types that exporters make and runtimes load: below both, so that neither
imports the other (exporters -> artifacts <- runtimes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from alexbench.checkpoint import LoadedModel


class ArtifactFormat(StrEnum):
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    PT2 = "pt2"
    ONNX_FP16 = "onnx-fp16"  # derived from the fp32 ONNX model (fp16 weights and compute)
    ONNX_INT8 = "onnx-int8"  # derived: static QDQ quantisation calibrated on real images
    PT2_INT8 = "pt2-int8"  # PT2E static quantisation (torchao x86 Inductor), on real images


# Where ONNX Runtime keeps its optimised copies of a folder's models (runtimes/ort_cache.py);
# here because exporters remove it with the model it was made from.
ORT_CACHE_DIR = "ort-cache"
# verify's default report, in the artifacts' folder; exporters retire it with the files it checked.
VERIFY_REPORT = "verify-report.json"

# Formats quantised with real images: made only when calibration images are given.
CALIBRATED = (ArtifactFormat.ONNX_INT8, ArtifactFormat.PT2_INT8)


@dataclass
class ModelBundle:
    """Everything a runtime may load from: the eager model and the exported artifacts."""

    loaded: LoadedModel
    artifacts: dict[ArtifactFormat, Path] = field(default_factory=dict)
    # Artifacts that could not be made here, with the reason (e.g. int8 without calibration data)
    missing: dict[ArtifactFormat, str] = field(default_factory=dict)
    directory: Path | None = None  # the model's artifact folder (None: nothing exported)

    def file_hashes(self) -> dict[str, str | None]:
        """The sha256 of each exported file this run loads, hashed from disk: not the manifest's
        record (a file edited since export runs as it is, with a warning, and must not be
        recorded as the file the manifest describes), and not the folder's other files (an
        eager-only run loads none, whatever model the folder holds). None: the file is gone or
        unreadable now (removed by a concurrent export: the finished cells are still saved)."""
        from alexbench.checkpoint import file_sha256

        out: dict[str, str | None] = {}
        for fmt, path in sorted(self.artifacts.items()):
            try:
                out[fmt.value] = file_sha256(path)
            except OSError:
                out[fmt.value] = None
        return out
