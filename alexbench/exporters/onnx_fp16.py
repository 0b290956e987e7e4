"""fp16 ONNX variant: the fp32 model's weights and compute converted to float16, with fp32
inputs and outputs kept (casts at the edges) so that every variant is fed the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from alexbench.artifact_checks import weight_values
from alexbench.errors import ExportError
from alexbench.exporters.base import ONNX_INTERFACE, ExportRequest
from alexbench.exporters.onnx import check_file, set_ir_version

suffix = ".fp16.onnx"
interface = ONNX_INTERFACE  # the fp32 file's names, kept


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if request.onnx_path is None:
        raise ExportError("the fp16 variant needs the fp32 ONNX model first")
    model = onnx.load(str(request.onnx_path))
    # The model's own inputs and outputs stay fp32, by name: below IR version 4 (the legacy
    # exporter at opset 7/8) every weight is a graph input too, and keep_io_types=True kept
    # them all fp32 (a "fp16" file as big as the fp32 one, casting its weights at run time).
    weights = {t.name for t in model.graph.initializer}
    io = [i.name for i in model.graph.input if i.name not in weights]
    io += [o.name for o in model.graph.output]
    converted = convert_float_to_float16(model, keep_io_types=io)
    _require_fp16_weights(converted)
    _topological_sort(converted.graph)
    set_ir_version(converted)
    onnx.save(converted, str(path))
    return {
        "exporter": "onnxruntime.transformers.float16 (model inputs/outputs kept fp32)",
        "opset": check_file(path),
    }


def _require_fp16_weights(model: onnx.ModelProto) -> None:
    """The weights must be float16 now (a few fp32 scalars may stay): else the file is fp32 in
    all but name."""
    values = weight_values(model)
    fp32 = values.get("FLOAT", 0)
    if fp32 > 0.01 * sum(values.values()):
        raise ExportError(
            f"the fp16 conversion left {fp32:,} weight values in fp32: the file would "
            "be fp16 in name only"
        )


def _topological_sort(graph: onnx.GraphProto) -> None:
    """The converter appends its input/output Cast nodes at the end of the node list; ONNX
    requires producers before consumers (the full checker rejects the file otherwise)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("fp16 conversion produced a graph with a cycle")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)
