"""fp16 ONNX variant: the fp32 model's weights and compute converted to float16, with fp32
inputs and outputs kept (casts at the edges) so that every variant is fed the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from alexbench.errors import ExportError
from alexbench.exporters.base import ExportRequest
from alexbench.exporters.onnx import check_file

suffix = ".fp16.onnx"


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if request.onnx_path is None:
        raise ExportError("the fp16 variant needs the fp32 ONNX model first")
    model = onnx.load(str(request.onnx_path))
    converted = convert_float_to_float16(model, keep_io_types=True)
    _topological_sort(converted.graph)
    onnx.save(converted, str(path))
    return {
        "exporter": "onnxruntime.transformers.float16 (keep_io_types)",
        "opset": check_file(path),
    }


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
