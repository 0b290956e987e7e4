"""A cell's CUDA memory, read through stand-ins for torch.cuda's allocator counters (no GPU), and
the forecast that keeps a CPU cell too large for memory from getting the whole run killed."""

import pytest
import torch

from alexbench import environment
from alexbench.bench.memory import CellMemory, MemoryScope, forecast_peak, worth_probing
from alexbench.bench.sweep import BenchSpec, CellStatus, iter_sweep
from alexbench.bench.timer import RunLength
from alexbench.devices import Device
from alexbench.precision import Precision
from alexbench.runtimes import Backend, ModelBundle


class _Allocator:
    """torch.cuda's caching-allocator counters, driven by the test. A CUDA graph replays in its
    private pool: its activations stay reserved between replays and are never allocated."""

    def __init__(self) -> None:
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0

    def hold(self, allocated: int, reserved: int) -> None:
        self.allocated, self.reserved = allocated, reserved
        self.peak_allocated = max(self.peak_allocated, allocated)
        self.peak_reserved = max(self.peak_reserved, reserved)

    def reset_peaks(self) -> None:
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def empty_cache(self) -> None:  # cached blocks handed back; a graph's pool is allocated
        self.reserved = self.allocated


@pytest.fixture
def allocator(monkeypatch) -> _Allocator:
    a = _Allocator()
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "memory_allocated", lambda *_: a.allocated)
    monkeypatch.setattr(cuda, "memory_reserved", lambda *_: a.reserved)
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda *_: a.peak_allocated)
    monkeypatch.setattr(cuda, "max_memory_reserved", lambda *_: a.peak_reserved)
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda *_: a.reset_peaks())
    monkeypatch.setattr(cuda, "synchronize", lambda *_: None)
    monkeypatch.setattr(cuda, "empty_cache", a.empty_cache)
    return a


def test_a_cuda_graph_cell_counts_its_pool_in_resident_and_peak(allocator):
    mib = 1 << 20
    allocator.hold(allocated=100 * mib, reserved=100 * mib)  # an earlier cell's live tensors
    mem = CellMemory(Device.CUDA, device_wide=False)
    mem.baseline()
    # Load and capture: weights and static input/output allocated (250 MiB), activations in
    # the graph's pool (400 MiB) reserved only once capture is over.
    allocator.hold(allocated=350 * mib, reserved=750 * mib)
    mem.loaded()
    mem.timing_started()
    allocator.hold(allocated=350 * mib, reserved=750 * mib)  # replays allocate nothing
    mem.timing_done()
    assert mem.scope is MemoryScope.TORCH_CUDA_ALLOCATOR and "reserved" in mem.scope.value
    assert mem.resident_bytes == 650 * mib  # allocated bytes would say 250 MiB
    assert mem.peak_bytes == 650 * mib


def test_a_later_batch_size_does_not_count_an_earlier_one_s_cache(allocator):
    mib = 1 << 20
    session = CellMemory(Device.CUDA, device_wide=False)
    session.baseline()  # nothing held
    allocator.hold(allocated=250 * mib, reserved=250 * mib)  # the weights
    # batch 256 ran before: its activations freed, 2 GiB left cached by the allocator
    allocator.hold(allocated=250 * mib, reserved=2298 * mib)
    cell = CellMemory(session.device, session.device_wide, session.baseline_bytes)
    cell.cell_started()
    # batch 1's first call needs 270 MiB reserved: from the cache if it still holds 2 GiB
    allocator.hold(allocated=260 * mib, reserved=max(allocator.reserved, 270 * mib))
    cell.loaded()
    assert cell.resident_bytes == 270 * mib  # not the 2 GiB batch 256 left in the cache


MIB = 2**20


def test_a_cpu_peak_is_never_below_what_the_cell_held_after_its_first_run(monkeypatch):
    # The first call's scratch memory handed back before timing: the high-water mark, reset when
    # timing starts, reads below the resident figure taken after that call (550 / 549 MiB).
    from alexbench.bench import memory

    now = {"VmRSS": 1000 * MIB, "VmHWM": 1000 * MIB}
    monkeypatch.setattr(memory, "_status_bytes", now.get)
    monkeypatch.setattr(memory, "_reset_hwm", lambda: True)
    monkeypatch.setattr(memory, "release_freed_memory", lambda: None)
    mem = CellMemory(Device.CPU, device_wide=False)
    mem.baseline()
    now["VmRSS"] = 1550 * MIB  # loaded, first call run
    mem.loaded()
    now["VmRSS"] = now["VmHWM"] = 1549 * MIB  # scratch handed back; HWM reset to it
    mem.timing_started()
    mem.timing_done()
    assert mem.resident_bytes == 550 * MIB
    assert mem.peak_bytes == 550 * MIB  # not 549


def test_forecast_extrapolates_from_the_two_largest_smaller_batches():
    f = forecast_peak({1: 240 * MIB, 16: 250 * MIB, 64: 270 * MIB}, 1024)
    assert f is not None and f.basis == (16, 64)
    assert f.per_image_bytes == pytest.approx(20 * MIB / 48)
    assert f.peak_bytes == pytest.approx(270 * MIB + 20 * MIB / 48 * 960, abs=1)
    # The peaks of larger batches play no part in a smaller one's forecast.
    assert forecast_peak({16: 250 * MIB, 64: 270 * MIB, 4096: 9000 * MIB}, 256).basis == (16, 64)


@pytest.mark.parametrize(
    "measured",
    [
        {},
        {64: 270 * MIB},  # one batch: no per-image cost
        {1: 240 * MIB, 2: 260 * MIB},  # one image apart: the allocator's granularity
        {60: 240 * MIB, 64: 260 * MIB},  # 4 images apart
        {40: 240 * MIB, 64: 260 * MIB},  # under twice the smaller batch
    ],
)
def test_no_forecast_without_two_batches_far_enough_apart(measured):
    assert forecast_peak(measured, 4096) is None


def test_a_per_image_cost_read_as_negative_forecasts_the_larger_peak():
    f = forecast_peak({16: 300 * MIB, 64: 280 * MIB}, 4096)
    assert f is not None and f.per_image_bytes == 0 and f.peak_bytes == 280 * MIB


def test_a_cpu_cell_forecast_beyond_available_memory_is_not_run(small_model, monkeypatch):
    """Linux kills a process that runs out of memory, finished cells and all: a batch whose
    forecast (from the measured peaks of the smaller ones) exceeds the memory available is an
    error cell with the reason, and the sweep goes on."""
    monkeypatch.setattr(environment, "available_memory_bytes", lambda: 100 * MIB)
    spec = BenchSpec(
        [Backend.EAGER], [Device.CPU], [Precision.FP32], [1, 16, 64, 2048],
        run_length=RunLength(warmup=1, min_seconds=0.0, min_iters=3, max_iters=5),
    )  # fmt: skip
    cells = {c.batch: c for c in iter_sweep(ModelBundle(small_model, {}), spec)}
    assert [cells[b].status for b in (1, 16, 64)] == [CellStatus.OK] * 3
    big = cells[2048]
    assert big.status is CellStatus.ERROR and big.stats is None and big.memory == {}
    assert big.reason.startswith("not run: batch 2048 would need about ")
    assert "from the peaks at batches 16 and 64), more than the 0.1 GiB available" in big.reason


def test_a_first_large_batch_is_forecast_from_two_untimed_probes(small_model, monkeypatch):
    """`--batch 1,2048`: no two smaller batches to forecast 2048 from, so it ran and the kernel
    killed the run. Two untimed calls at batches 8 and 32 give the forecast instead."""
    monkeypatch.setattr(environment, "available_memory_bytes", lambda: 100 * MIB)
    spec = BenchSpec(
        [Backend.EAGER], [Device.CPU], [Precision.FP32], [1, 2048],
        run_length=RunLength(warmup=1, min_seconds=0.0, min_iters=3, max_iters=5),
    )  # fmt: skip
    cells = {c.batch: c for c in iter_sweep(ModelBundle(small_model, {}), spec)}
    assert cells[1].status is CellStatus.OK and "probe_peaks" not in cells[1].memory
    big = cells[2048]
    assert big.status is CellStatus.ERROR and big.reason.startswith("not run: batch 2048 ")
    assert "from the peaks at batches 8 and 32), more than the 0.1 GiB available" in big.reason
    # With the memory to spare, nothing is probed (worth_probing) and the cell runs as before.
    monkeypatch.setattr(environment, "available_memory_bytes", lambda: 64 * 2**30)
    assert not worth_probing(2048, 3 * 64 * 64 * 4)
    assert worth_probing(4096, 3 * 224 * 224 * 4) is False  # 4096 x 9.2 MiB < 64 GiB
    monkeypatch.setattr(environment, "available_memory_bytes", lambda: 8 * 2**30)
    assert worth_probing(4096, 3 * 224 * 224 * 4) and not worth_probing(64, 3 * 224 * 224 * 4)
