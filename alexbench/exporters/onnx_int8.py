"""int8 ONNX variant: static QDQ quantisation (per-channel int8 weights, uint8 activations)
calibrated on real images, run by ONNX Runtime's VNNI/AMX int8 kernels on CPU.

The recipe (weight granularity, how activation ranges are calibrated, reduce_range) is a
`Recipe`; the exporter uses `DEFAULT_RECIPE`, chosen by benchmarks/int8_recipe_check.py (latency
and accuracy of each recipe on the same images), and records it in the manifest's exporter
field."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from alexbench.errors import ExportError
from alexbench.exporters.base import (
    INPUT_NAME,
    NEEDS_CALIBRATION,
    ONNX_INTERFACE,
    OUTPUT_NAME,
    WORK_PREFIX,
    ExportRequest,
)
from alexbench.exporters.onnx import check_file, set_ir_version

suffix = ".int8.onnx"
interface = ONNX_INTERFACE  # the fp32 file's names, kept
CALIBRATION_BATCH = 8


class Calibration(StrEnum):
    """onnxruntime.quantization.CalibrationMethod, by name."""

    MINMAX = "MinMax"
    ENTROPY = "Entropy"
    PERCENTILE = "Percentile"


@dataclass(frozen=True)
class Recipe:
    per_channel: bool = True  # one weight scale per output channel (else one per tensor)
    calibration: Calibration = Calibration.MINMAX  # how activation ranges are measured
    reduce_range: bool = False  # 7-bit weights (for CPUs without VNNI, where u8*s8 can saturate)
    # The layer that makes the logits left in fp32: a quantised one clips them to the range
    # calibration saw (confident logits saturate, and can tie).
    float_output_layer: bool = False

    def describe(self) -> str:
        """The manifest's exporter field: 'QDQ, per-channel, MinMax' (+ ', reduce_range')."""
        parts = ["QDQ", "per-channel" if self.per_channel else "per-tensor", self.calibration.value]
        if self.reduce_range:
            parts.append("reduce_range")
        if self.float_output_layer:
            parts.append("fp32 output layer")
        return f"onnxruntime.quantization.quantize_static ({', '.join(parts)})"


# Kept after measuring the alternatives with benchmarks/int8_recipe_check.py (2-core Xeon with
# AVX-512 VNNI, ORT 1.31, a 3-epoch CIFAR-10 64 px checkpoint at 61.3% top-1, 5000 held-out
# images; the 224 px seeded model for speed): no recipe was better beyond noise at once in speed
# and accuracy. Per-tensor weights ran b1 6-7% faster at 64 px but only 2-4% at 224 px (b64:
# 1.5% / none) at equal top-1, with 0.4-0.9 points less agreement with fp32 at 224 px;
# Percentile and reduce_range changed nothing measurable; Entropy, as quantize_static sets it
# up (128 histogram bins for 128 quantised bins), gives MinMax's scales exactly. 256
# calibration images instead of 64 cut the logits' relative error 2.8x (0.066 -> 0.023; 64 clip
# confident logits) at equal speed, top-1 and agreement, so 256 is --calib-samples' default; an
# fp32 output layer cuts it 4x but runs b64 3% slower.
DEFAULT_RECIPE = Recipe()


def _output_layer(path: Path) -> list[str]:
    """The name of the node that writes the model's output."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if OUTPUT_NAME in n.output]


def _tidy(path: Path) -> None:
    """quant_pre_process declares operator sets no node uses (com.microsoft, ai.onnx.training,
    ...): a strict converter may refuse a file that needs domains it lacks. Only the default
    domain and those the nodes use stay; then the oldest IR version they allow, as for the
    fp32 file (the quantiser may have raised the opset)."""
    import onnx

    model = onnx.load(str(path))
    nodes = [*model.graph.node, *(n for f in model.functions for n in f.node)]
    used = {"", "ai.onnx"} | {n.domain for n in nodes} | {f.domain for f in model.functions}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    set_ir_version(model)
    onnx.save(model, str(path))


def export(request: ExportRequest, path: Path, recipe: Recipe | None = None) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if request.onnx_path is None:
        raise ExportError("the int8 variant needs the fp32 ONNX model first")
    if request.calibration is None:
        raise ExportError(NEEDS_CALIBRATION)
    images = request.calibration
    recipe = recipe or DEFAULT_RECIPE  # read at call time: the config key reads it the same way

    class Reader(CalibrationDataReader):
        def __init__(self, x: np.ndarray) -> None:
            self._batches = iter(
                {INPUT_NAME: x[i : i + CALIBRATION_BATCH]}
                for i in range(0, len(x), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    # Named so that a later export in this folder removes it if this process is killed.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=WORK_PREFIX) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        # Shape inference + graph clean-up first: ORT's recommended step before quantising.
        quant_pre_process(str(request.onnx_path), str(pre), skip_symbolic_shape=True)
        exclude = _output_layer(pre) if recipe.float_output_layer else []
        quantize_static(
            str(pre),
            str(path),
            Reader(images),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod[recipe.calibration.value],
            nodes_to_exclude=exclude,
        )
    _tidy(path)
    return {
        "exporter": recipe.describe(),
        "opset": check_file(path),  # the quantiser may raise the opset: record the file's
        "calibration": request.calibration_desc,
    }
