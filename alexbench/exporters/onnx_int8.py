"""int8 ONNX variant: static QDQ quantisation (per-channel int8 weights, uint8 activations)
calibrated on real images, run by ONNX Runtime's VNNI/AMX int8 kernels on CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from alexbench.errors import ExportError
from alexbench.exporters.base import INPUT_NAME, ExportRequest

suffix = ".int8.onnx"
CALIBRATION_BATCH = 8
NEEDS_CALIBRATION = "int8 needs real images to calibrate: pass --calib-data DIR (an image folder)"


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
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

    class Reader(CalibrationDataReader):
        def __init__(self, x: np.ndarray) -> None:
            self._batches = iter(
                {INPUT_NAME: x[i : i + CALIBRATION_BATCH]}
                for i in range(0, len(x), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        # Shape inference + graph clean-up first: ORT's recommended step before quantising.
        quant_pre_process(str(request.onnx_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(path),
            Reader(images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return {
        "exporter": "onnxruntime.quantization.quantize_static (QDQ, per-channel, MinMax)",
        "opset": request.opset,
        "calibration": request.calibration_desc,
    }
