"""ONNX: torch.onnx.export (dynamo by default, legacy TorchScript exporter on request),
one self-contained file, dynamic batch, validated with the full ONNX checker."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from alexbench.errors import ExportError
from alexbench.exporters.base import (
    INPUT_NAME,
    ONNX_INTERFACE,
    OUTPUT_NAME,
    ExportRequest,
    OnnxExporter,
)

suffix = ".onnx"
interface = ONNX_INTERFACE  # validate() checks the file's names against it


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    model = request.model.eval()
    example = (request.example_input(),)
    # The exporters print progress and deprecation chatter; keep the CLI output clean.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if request.onnx_exporter is OnnxExporter.DYNAMO:
            torch.onnx.export(
                model,
                example,
                str(path),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=request.opset,
                dynamic_shapes={"x": {0: request.batch_dim()}},
                external_data=False,  # one file: AlexNet's 244 MB is far below protobuf's 2 GB
            )
        else:
            torch.onnx.export(
                model,
                example,
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=request.opset,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    stamp(path, request.metadata)
    validate(path, request)
    return {
        "exporter": f"torch.onnx.export ({request.onnx_exporter.value})",
        "opset": request.opset,
    }


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim
    ]


# Node metadata the dynamo exporter writes that names this machine's files: the Python stack
# of each node's source line (absolute paths to the package and the venv). It made the same
# weights export to other bytes after any edit of model.py or from another install folder, and
# shipped the exporting machine's paths inside the model.
_MACHINE_SPECIFIC_NODE_PROPS = frozenset({"pkg.torch.onnx.stack_trace"})


def stamp(path: Path, metadata: dict[str, str]) -> None:
    """Write `metadata` into the file's metadata_props (ONNX Runtime's session.get_modelmeta()
    reads them), so the file says how to feed it without the manifest beside it; drop the
    exporter's machine-specific node metadata, so that the file depends on the weights and
    library versions only."""
    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    for node in model.graph.node:
        props = [p for p in node.metadata_props if p.key not in _MACHINE_SPECIFIC_NODE_PROPS]
        if len(props) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(props)
    set_ir_version(model)
    onnx.save(model, str(path))


# IR version 10 added metadata_props to nodes, graphs, functions, values and tensors.
_IR_WITH_PART_METADATA = 10


def _lowest_ir_version(model: onnx.ModelProto) -> int | None:
    """The oldest IR version the model's operator sets allow (8 for opset 18); None for an
    operator set onnx does not list."""
    try:
        return onnx.helper.find_min_ir_version_for(list(model.opset_import))
    except (ValueError, KeyError):
        return None


def set_ir_version(model: onnx.ModelProto) -> None:
    """Declare the oldest IR version the operator sets allow, in place, where the exporter
    wrote its own onnx release's (10 with onnx 1.16+): ONNX Runtime before 1.18 and other older
    parsers refuse an IR version newer than they know. (Raised instead where a file declares
    less than its operator sets need: the int8 quantiser may raise the opset of the file it
    derives from.) Below 10, the parts' metadata_props go (IR 10 added them; here the
    exporter's per-node debug records: fx node, class hierarchy, name scopes); the model's own
    metadata_props are older and stay. An AlexNet graph uses nothing else of IR 9 or 10 (no
    8-bit float or 4-bit types, no function overloads)."""
    lowest = _lowest_ir_version(model)
    if lowest is None or lowest == model.ir_version:
        return
    if lowest < _IR_WITH_PART_METADATA:
        graph = model.graph
        values = [*graph.input, *graph.output, *graph.value_info, *graph.initializer]
        nodes = [*graph.node, *(n for f in model.functions for n in f.node)]
        for part in [graph, *model.functions, *values, *nodes]:
            del part.metadata_props[:]
    model.ir_version = lowest


def model_opset(model: onnx.ModelProto) -> int | None:
    """The default-domain opset a model is written in."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def check_file(path: Path) -> int | None:
    """Full checker (incl. shape inference) on a written file; its opset."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path.name}: ONNX checker failed: {str(e).splitlines()[0]}") from e
    model = onnx.load(str(path), load_external_data=False)
    lowest = _lowest_ir_version(model)  # the checker accepts an IR version its opset forbids
    if lowest is not None and model.ir_version < lowest:
        raise ExportError(
            f"{path.name}: IR version {model.ir_version} is below the {lowest} its operator sets "
            "need"
        )
    return model_opset(model)


def validate(path: Path, request: ExportRequest) -> None:
    """Full checker (incl. shape inference), then the interface we promise: names and shapes."""
    check_file(path)
    model = onnx.load(str(path), load_external_data=False)
    opset = model_opset(model)
    if opset != request.opset:
        # The dynamo exporter builds opset 18+ and down-converts on request; when that fails it
        # keeps the original opset with only a warning. Refuse rather than mislabel the artifact.
        raise ExportError(
            f"asked for opset {request.opset}, but the {request.onnx_exporter.value} exporter "
            f"produced opset {opset} (for opsets below 18 use --onnx-exporter legacy)"
        )
    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {x.name for x in graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise ExportError(f"{path.name}: unexpected graph inputs/outputs")
    in_dims, out_dims = _dims(inputs[0]), _dims(graph.output[0])
    s = request.image_size
    if not isinstance(in_dims[0], str) or in_dims[1:] != [3, s, s]:
        raise ExportError(f"{path.name}: input shape {in_dims}, expected [batch, 3, {s}, {s}]")
    if not isinstance(out_dims[0], str) or out_dims[1:] != [request.num_classes]:
        raise ExportError(f"{path.name}: output shape {out_dims} has no dynamic batch")
