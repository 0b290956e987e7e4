"""A cell's CUDA memory, read through stand-ins for torch.cuda's allocator counters (no GPU)."""

import pytest
import torch

from alexbench.bench.memory import CellMemory, MemoryScope
from alexbench.devices import Device


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
