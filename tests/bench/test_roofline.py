import pytest

from alexbench.bench.roofline import Ceilings, model_layers, model_work, roofline_point
from alexbench.precision import Precision

CEIL = Ceilings("cpu", "test", 2, {"fp32": 200.0, "bf16": 400.0}, 40.0, "now", "fixed")


def test_model_work_counts_alexnet():
    flops, params = model_work(1000, 224)
    assert params == 61_100_840  # torchvision's AlexNet
    assert 1.40e9 < flops < 1.45e9  # ~0.71 GMACs per 224x224 image
    layers = model_layers(1000, 224)
    assert [lw.name for lw in layers][:2] == ["features.0", "features.3"]
    assert layers[-1].flops == 2 * 4096 * 1000 and layers[-1].params == 4096 * 1000 + 1000


def test_per_layer_roofline():
    layers = model_layers(1000, 224)
    fc = [lw for lw in layers if lw.name.startswith("classifier")]
    conv = [lw for lw in layers if lw.name.startswith("features")]
    # Batch 256: every layer is compute-bound, so the roofline time is FLOPs / peak.
    big = roofline_point(layers, 256, Precision.BF16, 2.0, CEIL)
    t = sum(lw.flops for lw in layers) * 256 / 400e9
    assert big.bound == "compute" and big.roofline_ms == pytest.approx(t * 1e3, rel=1e-4)
    assert big.pct_of_ceiling == round(100 * t / 2.0, 1)
    # Batch 1 at fp32: the FC weights are read once for one image: memory-bound layers.
    small = roofline_point(layers, 1, Precision.FP32, 0.1, CEIL)
    t_fc = sum(lw.params * 4 for lw in fc) / 40e9
    t_conv = sum(max(lw.flops / 200e9, lw.params * 4 / 40e9) for lw in conv)
    assert small.roofline_ms == pytest.approx((t_fc + t_conv) * 1e3, rel=1e-4)
    assert small.weight_gbs == round(61_100_840 * 4 / 0.1 / 1e9, 2)
    tiny = roofline_point(model_layers(10, 64), 1, Precision.FP32, 0.1, CEIL)
    assert tiny.bound == "memory"  # at 64 px the convolutions are cheap
    assert roofline_point(layers, 1, Precision.FP32, 0.01, None) is None
