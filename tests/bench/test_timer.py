"""The timing contract on a simulated asynchronous device: latency synchronises every call,
throughput pipelines calls, device time comes from events on the stream (a stand-in class)."""

import numpy as np
import pytest

from alexbench.bench.stats import compute_stats
from alexbench.bench.timer import RunLength, time_session
from alexbench.devices import Device
from alexbench.runtimes.base import Session

LAUNCH_NS = 100_000  # host time to submit one call
KERNEL_NS = 2_000_000  # device time of one call


class FakeStream:
    """A host clock and one in-order device queue: work starts when both it is submitted and
    the previous work is done; `synchronize` waits for the queue to drain."""

    def __init__(self) -> None:
        self.host = 0
        self.busy_until = 0
        self.syncs = 0

    def clock(self) -> int:
        return self.host

    def submit(self, duration: int) -> None:
        self.host += LAUNCH_NS
        self.busy_until = max(self.host, self.busy_until) + duration

    def synchronize(self) -> None:
        self.syncs += 1
        self.host = max(self.host, self.busy_until)


class FakeEvent:
    """Stands in for torch.cuda.Event: records when the device reaches it in the queue."""

    def __init__(self, stream: FakeStream) -> None:
        self.stream, self.at = stream, None

    def record(self, stream=None) -> None:
        assert stream is None  # the session's kernels run on the current stream
        self.at = max(self.stream.host, self.stream.busy_until)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def elapsed_time(self, end: "FakeEvent") -> float:
        return (end.at - self.at) / 1e6


class AsyncSession(Session):
    device = Device.CUDA
    device_time_measurable = True

    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream

    def prepare(self, batch):
        return batch

    def run(self, inputs):
        self.stream.submit(KERNEL_NS)
        return inputs

    def synchronize(self) -> None:
        self.stream.synchronize()

    def to_numpy(self, outputs):
        return np.asarray(outputs)


def test_latency_throughput_and_device_time_follow_the_contract():
    stream = FakeStream()
    session = AsyncSession(stream)
    rl = RunLength(warmup=2, min_seconds=0.0, min_iters=20, max_iters=20)
    t = time_session(session, [0, 1, 2], rl, clock=stream.clock, events=lambda: FakeEvent(stream))
    # latency: submit + wait for the device, every call
    assert t.latencies_ns.tolist() == [LAUNCH_NS + KERNEL_NS] * 20
    # throughput: 20 calls back to back; submission overlaps the device after the first call
    assert t.wall_iterations == 20
    assert t.wall_ns == LAUNCH_NS + 20 * KERNEL_NS
    # device time: what the events bracket on the stream. Once the queue is fed it is the kernel
    # alone; the first call's also holds the idle gap while the host was still submitting it.
    assert t.device_ns.tolist() == [LAUNCH_NS + KERNEL_NS] + [KERNEL_NS] * 19
    stats = compute_stats(t.latencies_ns, 8, t.wall_ns, t.wall_iterations)
    assert stats.throughput == pytest.approx(8 / ((LAUNCH_NS + KERNEL_NS) / 1e9))
    assert stats.wall_throughput == pytest.approx(8 * 20 / (t.wall_ns / 1e9))
    assert stats.wall_throughput > stats.throughput  # pipelining hides the launches


def test_no_events_no_device_time_but_the_same_throughput_loop():
    stream = FakeStream()
    session = AsyncSession(stream)
    session.device_time_measurable = False  # e.g. ORT on a stream of its own
    rl = RunLength(warmup=0, min_seconds=0.0, min_iters=5, max_iters=5)
    t = time_session(session, [0], rl, clock=stream.clock, events=None)
    assert t.device_ns is None and t.wall_iterations == 5


def test_cpu_throughput_is_the_latency_loop():
    stream = FakeStream()
    session = AsyncSession(stream)
    session.device = Device.CPU
    rl = RunLength(warmup=0, min_seconds=0.0, min_iters=7, max_iters=7)
    t = time_session(session, [0], rl, clock=stream.clock)
    assert t.wall_ns == int(t.latencies_ns.sum()) and t.device_ns is None


class LazyEvent(FakeEvent):
    """torch.cuda.Event creates its CUDA event at its first record(), which costs host time."""

    CREATE_NS = 3_000

    def record(self, stream=None) -> None:
        if self.at is None:
            self.stream.host += self.CREATE_NS
        super().record(stream)


def test_event_creation_stays_out_of_the_timed_throughput_loop():
    stream = FakeStream()
    session = AsyncSession(stream)
    rl = RunLength(warmup=2, min_seconds=0.0, min_iters=20, max_iters=20)
    t = time_session(session, [0, 1, 2], rl, clock=stream.clock, events=lambda: LazyEvent(stream))
    assert t.wall_ns == LAUNCH_NS + 20 * KERNEL_NS  # 40 creations inside would add 120 us
