import importlib.util
import json
from dataclasses import asdict, replace

import pytest
import torch

from alexbench.bench import roofline
from alexbench.bench.roofline import (
    CACHE_FORMAT,
    MIB,
    Ceilings,
    load_or_measure,
    measure_ceilings,
    model_layers,
    model_work,
    roofline_point,
)
from alexbench.devices import Device
from alexbench.precision import Precision

FP32_WEIGHTS = 61_100_840 * 4  # 233 MiB
INT8_WEIGHTS = 61_100_840  # 58 MiB


@pytest.fixture(autouse=True)
def _no_optional_sources(monkeypatch):
    """The fake ceilings below measured no optional runtime's GEMM: a cache of them is not
    re-measured for lacking ONNX Runtime's or OpenVINO's (tested on its own at the end)."""
    monkeypatch.setattr(roofline, "_OPTIONAL_CPU_SOURCES", ())


def ceilings(
    gemm: dict[str, float] | None = None,
    by_mib: dict[str, float] | None = None,
    threads: int = 2,
    quick: bool = False,
) -> Ceilings:
    gemm = gemm or {"fp32": 200.0, "tf32": 200.0, "bf16": 400.0, "int8": 1000.0}
    by_mib = by_mib or {"1024": 40.0}
    return Ceilings(
        device="cpu",
        machine="test",
        threads=threads,
        gemm_gflops=gemm,
        gemm_source={d: "fake" for d in gemm},
        gemm_by_source={d: {"fake": v} for d, v in gemm.items()},
        read_bandwidth_gbs=by_mib[max(by_mib, key=int)],
        read_bandwidth_by_mib=by_mib,
        copy_bandwidth_gbs=30.0,
        llc_bytes=256 * MIB,
        quick=quick,
        load_average_1m=0.1,
        measured_at="now",
        method="fixed",
    )


CEIL = ceilings()


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
    assert big.ceiling_dtype == "bf16" and big.peak_gflops == 400.0
    # Batch 1 at fp32: the FC weights are read once for one image: memory-bound layers.
    small = roofline_point(layers, 1, Precision.FP32, 0.1, CEIL)
    t_fc = sum(lw.params * 4 for lw in fc) / 40e9
    t_conv = sum(max(lw.flops / 200e9, lw.params * 4 / 40e9) for lw in conv)
    assert small.roofline_ms == pytest.approx((t_fc + t_conv) * 1e3, rel=1e-4)
    assert small.weight_gbs == round(61_100_840 * 4 / 0.1 / 1e9, 2)
    assert small.ceiling_threads == 2 and "2 threads" in small.ceiling_used
    tiny = roofline_point(model_layers(10, 64), 1, Precision.FP32, 0.1, CEIL)
    assert tiny.bound == "memory"  # at 64 px the convolutions are cheap
    assert roofline_point(layers, 1, Precision.FP32, 0.01, None) is None


def test_int8_is_scored_against_the_int8_ceiling():
    layers = model_layers(1000, 224)
    point = roofline_point(layers, 256, Precision.INT8, 1.0, CEIL)
    t = sum(lw.flops for lw in layers) * 256 / 1000e9  # int8 1000, not bf16's 400
    assert point.ceiling_dtype == "int8" and point.peak_gflops == 1000.0
    assert point.roofline_ms == pytest.approx(t * 1e3, rel=1e-4)
    assert point.pct_of_ceiling == round(100 * t, 1)
    # No int8 ceiling measured: no percentage, rather than another dtype's.
    no_int8 = ceilings({"fp32": 200.0, "bf16": 400.0})
    assert roofline_point(layers, 256, Precision.INT8, 1.0, no_int8) is None


def test_above_100_percent_is_flagged_not_clamped():
    layers = model_layers(1000, 224)
    bound_s = roofline_point(layers, 64, Precision.FP32, 1.0, CEIL).roofline_ms / 1e3
    fast = roofline_point(layers, 64, Precision.FP32, bound_s / 2, CEIL)
    assert fast.exceeds_ceiling and fast.pct_of_ceiling == pytest.approx(200.0, abs=0.1)
    slow = roofline_point(layers, 64, Precision.FP32, bound_s * 2, CEIL)
    assert not slow.exceeds_ceiling and slow.pct_of_ceiling == pytest.approx(50.0, abs=0.1)
    assert fast.to_dict()["exceeds_ceiling"] is True
    # 0.04% above the bound rounds to 100.0 but is above it all the same
    exact = roofline_point(layers, 64, Precision.FP32, 1.0, CEIL).roofline_ms / 1e3
    barely = roofline_point(layers, 64, Precision.FP32, exact / 1.0004, CEIL)
    assert barely.pct_of_ceiling == 100.0 and barely.exceeds_ceiling


def test_bandwidth_of_the_weights_working_set():
    by_mib = {"4": 120.0, "16": 60.0, "64": 55.0, "128": 50.0, "1040": 25.0}
    c = ceilings(by_mib=by_mib)
    # The largest measured working set that is not bigger than the weights: reading less data
    # repeatedly is never slower, so its bandwidth bounds the weights' stream from above.
    assert c.read_bandwidth_for(FP32_WEIGHTS) == (50.0, 128)
    assert c.read_bandwidth_for(INT8_WEIGHTS) == (60.0, 16)
    assert c.read_bandwidth_for(2 << 30) == (25.0, 1040)
    assert c.read_bandwidth_for(1 * MIB) == (120.0, 4)  # below the ladder: its smallest set
    layers = model_layers(1000, 224)
    fc = [lw for lw in layers if lw.name.startswith("classifier")]
    fp32 = roofline_point(layers, 1, Precision.FP32, 0.1, c)
    int8 = roofline_point(layers, 1, Precision.INT8, 0.1, c)
    assert fp32.read_bandwidth_gbs == 50.0 and int8.read_bandwidth_gbs == 60.0
    assert "128 MiB working set" in fp32.ceiling_used
    expected = sum(max(lw.flops / 200e9, lw.params * 4 / 50e9) for lw in layers)
    assert fp32.roofline_ms == pytest.approx(expected * 1e3, rel=1e-4)
    assert all(lw.params * 4 / 50e9 > lw.flops / 200e9 for lw in fc)  # the FCs read at 50 GB/s


def _fake_measurement(monkeypatch, sources, calls=None):
    """Replace the library measurements and the bandwidth kernels with known numbers."""
    calls = calls if calls is not None else []

    def fake_sources(device, threads, numpy_ok):
        calls.append(("sources", threads, torch.get_num_threads()))
        return sources

    def fake_read(x, device, reps):
        calls.append(("read", x.numel() * 4 // MIB, torch.get_num_threads()))
        return 1000.0 / (x.numel() * 4 // MIB)  # smaller working sets read faster

    monkeypatch.setattr(roofline, "_gemm_sources", fake_sources)
    monkeypatch.setattr(roofline, "_read_bandwidth", fake_read)
    monkeypatch.setattr(roofline, "_copy_bandwidth", lambda x, d, r: 7.0)
    return calls


def test_ceiling_is_the_best_source_and_size(monkeypatch):
    def fixed(v):
        return lambda n, reps: v * n / 256  # faster at the larger size

    def broken(n, reps):
        raise RuntimeError("no kernel")

    sources = {
        "fp32": {"torch.mm": fixed(100.0), "numpy": fixed(150.0), "onnxruntime": fixed(120.0)},
        "tf32": {},
        "bf16": {"torch.mm": fixed(80.0)},  # slower than fp32: fp32's ceiling applies
        "int8": {"torch._int_mm": fixed(500.0), "ort": fixed(700.0), "broken": broken},
    }
    _fake_measurement(monkeypatch, sources)
    c = measure_ceilings(Device.CPU, 1, gemm_sizes=(128, 256), read_sizes_mib=(4, 8))
    assert c.gemm_gflops == {"fp32": 150.0, "tf32": 150.0, "bf16": 150.0, "int8": 700.0}
    assert c.gemm_source["fp32"] == "numpy n=256"
    assert c.gemm_source["int8"] == "ort n=256"
    assert c.gemm_source["bf16"] == "fp32 numpy n=256"
    assert c.gemm_by_source["fp32"] == {"torch.mm": 100.0, "numpy": 150.0, "onnxruntime": 120.0}
    assert c.gemm_by_source["bf16"] == {"torch.mm": 80.0}
    assert "broken" not in c.gemm_by_source["int8"] and "int8 broken: RuntimeError" in c.method
    assert c.read_bandwidth_by_mib == {"4": 250.0, "8": 125.0}
    assert c.read_bandwidth_gbs == 125.0  # the largest buffer's
    assert c.copy_bandwidth_gbs == 7.0
    json.dumps(asdict(c))  # serialisable as results.ceilings_dict writes it


def test_measured_with_the_cells_thread_count(monkeypatch):
    sources = {"fp32": {"torch.mm": lambda n, reps: 100.0 + torch.get_num_threads()}}
    calls = _fake_measurement(monkeypatch, sources)
    blas = roofline._openblas_controls()  # numpy's BLAS, where it can be controlled
    seen_blas = []
    if blas:
        sources["fp32"]["numpy"] = lambda n, reps: seen_blas.append(blas[0][0]()) or 0.0
    old, old_blas = torch.get_num_threads(), [get() for get, _ in blas]
    torch.set_num_threads(2)
    for _, set_ in blas:
        set_(2)
    try:
        c = measure_ceilings(Device.CPU, 1, gemm_sizes=(64,), read_sizes_mib=(4,))
        assert torch.get_num_threads() == 2  # restored
        assert [get() for get, _ in blas] == [2] * len(blas)
    finally:
        torch.set_num_threads(old)
        for (_, set_), n in zip(blas, old_blas, strict=True):
            set_(n)
    assert c.threads == 1 and c.gemm_gflops["fp32"] == 101.0  # torch ran with 1 thread
    assert calls == [("sources", 1, 1), ("read", 4, 1)]  # ORT gets threads=1 too
    assert seen_blas == ([1] if blas else [])  # numpy's OpenBLAS ran with 1 thread as well


def test_cache_per_thread_count_and_format(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []

    def fake_measure(device, threads=None, quick=False, **kw):
        measured.append((threads, quick))
        return ceilings(threads=threads, quick=quick)

    monkeypatch.setattr(roofline, "measure_ceilings", fake_measure)
    monkeypatch.setattr(roofline, "others_cpu_now", lambda: 0.0)  # a quiet machine
    one = load_or_measure(Device.CPU, 1, quick=True)
    two = load_or_measure(Device.CPU, 2, quick=True)
    assert (one.threads, two.threads) == (1, 2) and measured == [(1, True), (2, True)]
    p1, p2 = roofline._cache_path(Device.CPU, 1), roofline._cache_path(Device.CPU, 2)
    assert p1 != p2 and p1.is_file() and p2.is_file()
    assert load_or_measure(Device.CPU, 1, quick=True) == one and len(measured) == 2  # cached
    # A full measurement is not answered by a quick one.
    full = load_or_measure(Device.CPU, 1, quick=False)
    assert not full.quick and measured[-1] == (1, False)
    assert load_or_measure(Device.CPU, 1, quick=True) == full  # a full one serves quick asks
    # threads=None means torch's current count.
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert load_or_measure(Device.CPU, quick=True) == two and len(measured) == 3
    finally:
        torch.set_num_threads(old)
    # Files of an older format (other fields, or none) or unreadable ones are measured again.
    old_format = {k: v for k, v in asdict(one).items() if k != "cache_format"}
    for stale in (
        {**old_format, "bandwidth_gbs": 40.0},
        {**asdict(one), "cache_format": CACHE_FORMAT - 1},
        {**asdict(one), "unknown_field": 1},
        # Edited by hand: values of the wrong type (they crashed bench after its sweep).
        {**asdict(one), "gemm_gflops": {"fp32": "101"}},
        {**asdict(one), "read_bandwidth_by_mib": {"4": None}},
        {**asdict(one), "gemm_by_source": {"fp32": {"torch.mm": float("nan")}}},
        {**asdict(one), "llc_bytes": "32M"},
    ):
        p1.write_text(json.dumps(stale))
        before = len(measured)
        assert load_or_measure(Device.CPU, 1, quick=True).threads == 1
        assert len(measured) == before + 1
    p1.write_text("{not json")
    load_or_measure(Device.CPU, 1, quick=True)
    assert len(measured) == before + 2
    load_or_measure(Device.CPU, 1, quick=True, force=True)
    assert len(measured) == before + 3


def test_ceilings_measured_on_a_busy_machine_are_not_cached(monkeypatch, tmp_path):
    # Measured while another process held a core, they were cached: every later run on the
    # quiet machine scored above 100% of its "ceiling" ("!173%").
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []

    def fake_measure(device, threads=None, quick=False, **kw):
        measured.append(threads)
        return ceilings(threads=threads, quick=quick)

    monkeypatch.setattr(roofline, "measure_ceilings", fake_measure)
    others = {"cores": 1000.0}  # other processes' CPU use, in cores: busy on any machine
    monkeypatch.setattr(roofline, "others_cpu_now", lambda: others["cores"])
    path = roofline._cache_path(Device.CPU, 1)
    assert load_or_measure(Device.CPU, 1, quick=True).threads == 1  # used for this run
    assert not path.exists()
    load_or_measure(Device.CPU, 1, quick=True)
    assert len(measured) == 2  # measured again, not served from a cache
    others["cores"] = 0.0
    load_or_measure(Device.CPU, 1, quick=True)
    assert path.is_file()
    load_or_measure(Device.CPU, 1, quick=True)
    assert len(measured) == 3

    # `alexbench ceilings` says so, and its --json records whether they were cached.
    from typer.testing import CliRunner

    from alexbench.cli import app

    others["cores"] = 1000.0
    r = CliRunner().invoke(
        app, ["ceilings", "--device", "cpu", "--threads", "1", "--force", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert "note: cpu ceilings not cached, the machine is busy (1000.0 of" in r.stderr
    (doc,) = json.loads(r.stdout)["ceilings"]
    assert doc["cached"] is False and doc["threads"] == 1
    others["cores"] = 0.0
    r = CliRunner().invoke(app, ["ceilings", "--device", "cpu", "--threads", "1", "--json"])
    assert "not cached" not in r.stderr and json.loads(r.stdout)["ceilings"][0]["cached"] is True


def test_openblas_thread_control():
    blas = roofline._openblas_controls()
    if not blas:
        pytest.skip("numpy does not use a loaded OpenBLAS here")
    get, set_ = blas[0]
    old = get()
    try:
        set_(1)
        assert get() == 1
    finally:
        set_(old)
    assert get() == old


def test_real_measurement_small():
    """Really measures, with tiny sizes: every CPU dtype gets a ceiling and a source."""
    c = measure_ceilings(Device.CPU, 1, quick=True, gemm_sizes=(256,), read_sizes_mib=(4, 16))
    assert set(c.gemm_gflops) == {"fp32", "tf32", "fp16", "bf16", "int8"}
    assert all(v > 0 for v in c.gemm_gflops.values())
    assert set(c.gemm_source) == set(c.gemm_gflops)
    assert "torch._int_mm" in c.gemm_by_source["int8"]
    assert any(s.startswith("onnxruntime") for s in c.gemm_by_source["int8"])
    assert {"torch.mm", "onnxruntime"} <= set(c.gemm_by_source["fp32"])
    if importlib.util.find_spec("openvino") is not None:  # its cells are bounded by its GEMM too
        assert c.gemm_by_source["fp32"]["openvino"] > 0
        assert "openvino" in c.gemm_by_source["bf16"], c.method  # measured, or probed below fp32
    assert c.gemm_gflops["int8"] >= max(c.gemm_by_source["int8"].values())
    assert c.threads == 1 and c.read_bandwidth_gbs > 0
    assert set(c.read_bandwidth_by_mib) == {"4", "16"}
    assert Ceilings(**json.loads(json.dumps(asdict(c)))) == c
    assert replace(c, threads=2) != c


def test_a_slowed_small_working_set_does_not_lower_the_bound(monkeypatch):
    _fake_measurement(monkeypatch, {"fp32": {"torch.mm": lambda n, reps: 100.0}})
    measured = {4: 0.5, 8: 30.0, 16: 20.0}  # 4 MiB slowed down by a busy machine
    monkeypatch.setattr(roofline, "_read_bandwidth", lambda x, d, r: measured[x.numel() * 4 >> 20])
    c = measure_ceilings(Device.CPU, 1, gemm_sizes=(64,), read_sizes_mib=(4, 8, 16))
    assert c.read_bandwidth_by_mib == {"4": 30.0, "8": 30.0, "16": 20.0}
    assert c.read_bandwidth_gbs == 20.0


def test_a_slow_fallback_gemm_stops_before_a_size_that_would_take_minutes(monkeypatch):
    # fp16 torch.mm on a CPU without AVX-512 FP16 ran at ~2.5 GFLOP/s: n=3072 took minutes a call.
    seen: list[tuple[str, int]] = []

    def rate(name, gflops):
        return lambda n, reps: seen.append((name, n)) or gflops

    # fp32 itself at 5 GFLOP/s (one slow core) still reaches every size: its ceiling is the floor.
    sources = {"fp32": {"torch.mm": rate("fp32", 5.0)}, "fp16": {"torch.mm": rate("fp16", 2.5)}}
    _fake_measurement(monkeypatch, sources)
    c = measure_ceilings(Device.CPU, 1, gemm_sizes=(1024, 2048, 3072), read_sizes_mib=(4,))
    # Half of fp32's rate at the probe (n=512) is not far enough below it to stop there.
    assert seen == [
        ("fp32", 1024), ("fp32", 2048), ("fp32", 3072),
        ("fp16", 512), ("fp32", 512), ("fp16", 1024),
    ]  # fmt: skip
    assert c.gemm_by_source["fp16"] == {"torch.mm": 2.5}
    assert c.gemm_gflops["fp16"] == 5.0  # fp32's floor still applies
    assert "fp16 torch.mm at n=1024 (2.5 GFLOP/s)" in c.method


def test_the_1x1_conv_source_does_the_n_cubed_gemm_it_counts():
    # Its GFLOP/s counts 2 n^3 a call: a smaller convolution would inflate the ceiling.
    from torch.utils.flop_counter import FlopCounterMode

    sources = roofline._gemm_sources(Device.CPU, 1, numpy_ok=False)
    for dtype in ("fp32", "bf16"):
        conv = sources[dtype]["torch 1x1 conv (oneDNN)"]
        with FlopCounterMode(display=False) as counter:
            assert conv(64, 1) > 0
        assert counter.get_total_flops() == 2 * (2 * 64**3)  # a warm-up and one timed call


def test_a_gemm_far_below_fp32_at_the_probe_is_not_measured_further(monkeypatch):
    # fp16/bf16 torch.mm at 0.9 GFLOP/s beside fp32 at 134 (an AMD EPYC without AVX-512): one
    # n=1024 measurement took about 10 s each, for a value that fp32's floor replaces anyway.
    seen: list[tuple[str, int, int]] = []

    def rate(name, at_512, above):  # a small GEMM fills fewer cores: slower per FLOP
        return lambda n, reps: seen.append((name, n, reps)) or (at_512 if n <= 512 else above)

    sources = {
        "fp32": {"torch.mm": rate("fp32", 100.0, 120.0), "numpy": rate("numpy", 40.0, 134.0)},
        "fp16": {"torch.mm": rate("fp16", 0.9, 0.9)},
        # Under a quarter of fp32's best (134) at n=512, but not of fp32's own n=512 rate (40):
        # compared like for like, it is measured in full.
        "bf16": {"torch.mm": rate("bf16", 0.9, 0.9), "conv": rate("bf16 conv", 30.0, 150.0)},
    }
    _fake_measurement(monkeypatch, sources)
    c = measure_ceilings(Device.CPU, 1, gemm_sizes=(1024, 2048), read_sizes_mib=(4,))
    assert [(name, n) for name, n, _ in seen] == [
        ("fp32", 1024), ("fp32", 2048), ("numpy", 1024), ("numpy", 2048),
        ("fp16", 512), ("numpy", 512),  # fp32's best library, at the probe's size, once
        ("bf16", 512), ("bf16 conv", 512), ("bf16 conv", 1024), ("bf16 conv", 2048),
    ]  # fmt: skip
    assert all(reps == roofline.PROBE_REPS for name, n, reps in seen if n == 512)
    assert c.gemm_by_source["fp16"] == {"torch.mm": 0.9}
    assert c.gemm_by_source["bf16"] == {"torch.mm": 0.9, "conv": 150.0}
    assert c.gemm_gflops == {"fp32": 134.0, "fp16": 134.0, "bf16": 150.0}  # fp32's floor
    assert (
        "Under 1/4 of fp32's 40.0 GFLOP/s at n=512 (best of 2), so not measured further: "
        "fp16 torch.mm 0.9, bf16 torch.mm 0.9." in c.method
    )


def test_a_cache_measured_before_a_runtime_was_installed_is_measured_again(monkeypatch, tmp_path):
    """A cache from before `pip install 'alexbench[openvino]'` was trusted: the openvino cells,
    faster than any GEMM it measured, read above 100% of it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []

    def fake_measure(device, threads=None, quick=False, **kw):
        measured.append(threads)
        return ceilings(threads=threads, quick=quick)  # its fp32 sources: "fake" only

    monkeypatch.setattr(roofline, "measure_ceilings", fake_measure)
    monkeypatch.setattr(roofline, "others_cpu_now", lambda: 0.0)
    monkeypatch.setattr(roofline, "_OPTIONAL_CPU_SOURCES", ("json",))  # installed everywhere
    load_or_measure(Device.CPU, 1, quick=True)
    load_or_measure(Device.CPU, 1, quick=True)
    assert len(measured) == 2  # the cache lacks the installed library's GEMM: measured again
    monkeypatch.setattr(roofline, "_OPTIONAL_CPU_SOURCES", ("no_such_library_here",))
    load_or_measure(Device.CPU, 1, quick=True)
    load_or_measure(Device.CPU, 1, quick=True)
    assert len(measured) == 2  # not installed: the cache serves
    # Tried and failed here (its kernel refused this CPU): not measured again on every run.
    monkeypatch.setattr(roofline, "_OPTIONAL_CPU_SOURCES", ("json",))
    monkeypatch.setattr(
        roofline, "measure_ceilings",
        lambda device, threads=None, quick=False, **kw: measured.append(threads) or replace(
            ceilings(threads=threads, quick=quick), method="Unavailable: fp32 json: RuntimeError."
        ),
    )  # fmt: skip
    load_or_measure(Device.CPU, 1, quick=True, force=True)
    load_or_measure(Device.CPU, 1, quick=True)
    assert len(measured) == 3
