"""Which ONNX Runtime the GPU check runs, and whether its CUDA provider really loads.

`get_available_providers()` lists the providers a build was compiled with, not the ones that
can load: the CUDA provider needs the CUDA 13 / cuDNN 9 libraries, which here come from the torch
wheel (imported before the session is made, as in alexbench). A one-node model is run on the
provider asked for, and the session's providers are printed: on a fallback to the CPU they lack
CUDA.
Usage: python benchmarks/ort_probe.py  (run by gpu_check.sh; its last line is the summary's)
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"


def relu_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    # IR 8 / opset 13: old enough for any ONNX Runtime this project accepts.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main() -> None:
    cuda = torch.cuda.is_available()
    if cuda and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    wanted = [CUDA_EP, CPU_EP] if cuda and CUDA_EP in ort.get_available_providers() else [CPU_EP]
    sess = ort.InferenceSession(relu_model(), providers=wanted)
    x = np.array([[-1, 0, 1], [2, -3, 4]], dtype=np.float32)
    (y,) = sess.run(None, {"x": x})
    assert np.array_equal(y, np.maximum(x, 0)), y
    got = sess.get_providers()
    verdict = "CUDA provider loaded" if CUDA_EP in got else "no CUDA provider"
    if cuda and CUDA_EP not in got:
        verdict += " (GPU present: fell back or not built with CUDA)"
    print(f"onnxruntime {ort.__version__} from {ort.__file__}")
    built = ort.get_available_providers()
    print(f"{ort.__version__} built {built}; session ran on {got}: {verdict}")


if __name__ == "__main__":
    main()
