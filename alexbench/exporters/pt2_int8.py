"""int8 torch.export program: PT2E static quantisation with torchao's x86 Inductor quantizer
(per-channel int8 weights, uint8 activations), calibrated on real images.

The saved program holds quantize/dequantize ops around fp32 convolutions and linears; it runs
as int8 only when Inductor compiles it with freezing, which fuses each pattern into one oneDNN
int8 kernel (the `compile` runtime does that). Run as it is, it would compute in fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from alexbench.errors import ExportError
from alexbench.exporters.base import NEEDS_CALIBRATION, ExportRequest, Interface, save_program
from alexbench.pt2e import quantizer_module

suffix = ".int8.pt2"
CALIBRATION_BATCH = 8
QUANTIZER = "torchao X86InductorQuantizer (PT2E static, per-channel int8 weights, u8 activations)"

# Run as loaded, the quantize/dequantize pairs compute in fp32; the int8 kernels come from
# Inductor with freezing, after torchao's quantizer module has registered its lowerings.
interface = Interface(
    None,
    None,
    "import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer; "
    "torch._inductor.config.freezing = True; "
    "torch.compile(torch.export.load(path).module())(x) under torch.no_grad(), on a CPU",
)


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if request.calibration is None:
        raise ExportError(NEEDS_CALIBRATION)
    xiq = quantizer_module()
    example = (request.example_input(),)
    dynamic = {"x": {0: request.batch_dim()}}
    model = request.model.eval()
    graph = torch.export.export(model, example, dynamic_shapes=dynamic).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    images = torch.from_numpy(request.calibration)
    with torch.no_grad():  # observers record each activation's range on the real images
        for i in range(0, len(images), CALIBRATION_BATCH):
            prepared(images[i : i + CALIBRATION_BATCH])
    converted = convert_pt2e(prepared)
    _drop_unused_weights(converted)
    program = torch.export.export(converted, example, dynamic_shapes=dynamic)
    save_program(program, path, request.metadata)
    return {
        "exporter": f"torch.export + {QUANTIZER}, MinMax observers",
        "calibration": request.calibration_desc,
    }


def _drop_unused_weights(graph: torch.fx.GraphModule) -> None:
    """convert_pt2e folds each weight into an int8 constant but keeps the fp32 parameter it came
    from, unused; torch.export would save it too (the int8 file was 273 MiB instead of 55)."""
    used = {str(n.target) for n in graph.graph.nodes if n.op == "get_attr"}
    for name, _ in list(graph.named_parameters()):
        if name not in used:
            owner_name, _, attr = name.rpartition(".")
            delattr(graph.get_submodule(owner_name) if owner_name else graph, attr)
