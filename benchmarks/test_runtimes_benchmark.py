"""Each runtime at batch 1 on CPU, fp32 (and bf16 where supported), for regression tracking:

pytest benchmarks/ --benchmark-only --benchmark-autosave
pytest benchmarks/ --benchmark-only --benchmark-compare
"""

import pytest

from alexbench.devices import Device
from alexbench.parity import compare
from alexbench.precision import Precision
from alexbench.runtimes import Backend, get_runtime, unsupported_reason

CELLS = [
    (b, p)
    for b in (Backend.EAGER, Backend.TORCHSCRIPT, Backend.PT2, Backend.ONNXRUNTIME)
    for p in (Precision.FP32, Precision.BF16)
]


@pytest.mark.parametrize(("backend", "precision"), CELLS, ids=lambda v: v.value)
def test_forward_batch1(benchmark, bundle, batch, backend, precision):
    runtime = get_runtime(backend)
    reason = unsupported_reason(runtime, Device.CPU, precision)
    if reason:
        pytest.skip(reason)
    session = runtime.load(bundle, Device.CPU, precision)
    x = session.prepare(batch)
    reference = get_runtime(Backend.EAGER).load(bundle, Device.CPU, Precision.FP32)(batch)
    assert compare(reference, session.to_numpy(session.run(x)), precision).passed
    benchmark.extra_info.update(backend=backend.value, precision=precision.value, batch=1)
    benchmark.pedantic(session.run, args=(x,), warmup_rounds=3, rounds=30, iterations=1)
