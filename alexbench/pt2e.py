"""torchao's PT2E x86 Inductor quantizer: the one place that imports it. The exporter quantises
with it; the compile runtime imports it before compiling an int8 program, because importing it
registers the Inductor passes that lower quantized patterns to oneDNN int8 kernels (without
them the program compiles, but runs its quantize/dequantize ops as fp32 math)."""

from __future__ import annotations

import logging
import warnings
from types import ModuleType

from alexbench.errors import UnsupportedError


def quantizer_module() -> ModuleType:
    # torchao 0.18 registers an enum with torch's pytree at import, which torch 2.14 answers
    # with a deprecation warning on stderr: noise in every command's output, not the user's.
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    except ImportError as e:
        raise UnsupportedError(f"PT2E int8 needs torchao ({e}): pip install torchao") from e
    finally:
        pytree_log.setLevel(level)
    # Inductor's int8 lowering builds a tensor from a tensor (a UserWarning per convolution);
    # torch's code, not the user's, and nothing they can act on.
    warnings.filterwarnings(
        "ignore", message="To copy construct", module="torch._inductor.mkldnn_lowerings"
    )
    return xiq


def unavailable() -> str | None:
    """Why PT2E int8 cannot be made or run here (torchao missing), or None."""
    try:
        quantizer_module()
    except UnsupportedError as e:
        return str(e)
    return None


def int8_kernel_counts() -> dict[str, int]:
    """How many convolutions and linears Inductor has turned into oneDNN int8 kernels in this
    process so far (its pattern-matcher counters): the proof that an int8 program compiled to
    int8 code, read before and after a compile."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return {
        "conv": inductor["qconv_weight_prepack_matcher_count"],
        "linear": inductor["qlinear_weight_prepack_matcher_count"],
    }
