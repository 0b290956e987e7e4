"""The timing contract, one function per quantity, the same on every device and runtime.

- **latency**: host clock (`perf_counter_ns`) from submitting a batch to its result being ready,
  the device synchronised inside every iteration (`Session.synchronize`). On CPU, and for
  runtimes whose call returns only when the device is done, that synchronisation is free.
- **throughput**: wall clock over many iterations enqueued back to back with no synchronisation
  between them (once at the end). On CPU the latency loop already is such a loop, so it is not
  run twice; on CUDA it is a second loop of as many iterations.
- **device time** (CUDA only): CUDA events recorded around each call of the throughput loop on
  the stream the session's kernels run on (torch's current stream; for ONNX Runtime, the torch
  stream it was given as its `user_compute_stream`).

This is the split trtexec and MLPerf make. Inputs are prepared before timing and rotated, so no
cache or memoisation of a single input flatters the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from alexbench.devices import Device
from alexbench.runtimes.base import Session


@dataclass(frozen=True)
class RunLength:
    """Stop when BOTH at least `min_seconds` of timed work and `min_iters` iterations are done
    (and always by `max_iters`, so a very fast cell does not collect millions of samples)."""

    warmup: int = 3
    min_seconds: float = 1.0
    min_iters: int = 10
    max_iters: int = 10_000

    def warmup_calls(self, inputs: int) -> int:
        """The untimed calls before timing: `warmup`, and each of the `inputs` prepared inputs
        at least once (a runtime that captures a CUDA graph per input, or compiles on first
        sight, must not do it inside the timed loops)."""
        return max(self.warmup, inputs)

    def to_dict(self, inputs: int) -> dict[str, int | float]:
        """As recorded with results: what was asked, and the warm-up calls that ran."""
        return asdict(self) | {"warmup_calls": self.warmup_calls(inputs)}


class DeviceEvent(Protocol):
    """What the timer needs of a CUDA event (torch.cuda.Event; tests pass a stand-in)."""

    def record(self, stream: Any = None) -> None: ...
    def synchronize(self) -> None: ...
    def elapsed_time(self, end: Any) -> float: ...  # milliseconds


EventFactory = Callable[[], DeviceEvent]


def cuda_events() -> EventFactory:
    import torch

    return lambda: torch.cuda.Event(enable_timing=True)


METHOD = (
    "latency: host clock per call, device synchronised each iteration; throughput: wall clock "
    "over back-to-back iterations (CPU: the latency loop itself); device time: CUDA events on "
    "the session's stream around each call of the throughput loop"
)


@dataclass
class Timing:
    latencies_ns: np.ndarray  # latency per call (host clock, device synchronised)
    wall_ns: int  # wall clock of the throughput loop
    wall_iterations: int  # iterations in the throughput loop
    device_ns: np.ndarray | None = None  # device time per call (CUDA events), when measurable
    problem: str | None = None  # the session's `timing_problem()`: the timed calls are invalid

    @property
    def method(self) -> str:
        """What this cell's figures come from (the full contract is `METHOD`)."""
        return "host clock" if self.device_ns is None else "host clock + CUDA events"


def time_session(
    session: Session,
    prepared: Sequence[Any],
    run_length: RunLength,
    clock: Callable[[], int] = time.perf_counter_ns,
    events: EventFactory | None = None,
) -> Timing:
    """Warm up, then measure latency, throughput and (CUDA) device time over `prepared` inputs.

    `clock` and `events` are injectable so that tests drive the loops with known times.
    """
    if not prepared:
        raise ValueError("need at least one prepared input")
    k = len(prepared)
    for i in range(run_length.warmup_calls(k)):
        session.run(prepared[i % k])
    session.synchronize()
    session.timing_started()
    latencies, loop_wall = time_latency(session, prepared, run_length, clock)
    if session.device is Device.CUDA:
        if events is None and session.device_time_measurable:
            events = cuda_events()
        wall, device = time_throughput(session, prepared, len(latencies), clock, events)
        timing = Timing(latencies, wall, len(latencies), device)
    else:
        timing = Timing(latencies, loop_wall, len(latencies))
    timing.problem = session.timing_problem()
    return timing


def time_latency(
    session: Session, prepared: Sequence[Any], run_length: RunLength, clock: Callable[[], int]
) -> tuple[np.ndarray, int]:
    """Latency per call: submit, wait for the device, read the clock. Returns (latencies, wall)."""
    k = len(prepared)
    latencies: list[int] = []
    min_ns = int(run_length.min_seconds * 1e9)
    run, sync = session.run, session.synchronize
    start = clock()
    i = 0
    while True:
        x = prepared[i % k]
        t0 = clock()
        run(x)
        sync()
        t1 = clock()
        latencies.append(t1 - t0)
        i += 1
        if i >= run_length.max_iters or (i >= run_length.min_iters and t1 - start >= min_ns):
            break
    return np.asarray(latencies, dtype=np.int64), t1 - start


def time_throughput(
    session: Session,
    prepared: Sequence[Any],
    iterations: int,
    clock: Callable[[], int],
    events: EventFactory | None,
) -> tuple[int, np.ndarray | None]:
    """`iterations` calls enqueued back to back, synchronised once at the end: (wall ns, device
    time per call from events recorded around each call, or None without events)."""
    k = len(prepared)
    # Events are created before the clock starts: only recording them is inside the loop.
    # torch.cuda.Event creates its CUDA event lazily, at its first record(), so each is
    # recorded once here (later records overwrite it).
    pairs = [(events(), events()) for _ in range(iterations)] if events is not None else []
    stream = session.event_stream  # None: torch's current stream
    for begin, end in pairs:
        begin.record(stream)
        end.record(stream)
    session.synchronize()
    start = clock()
    if pairs:
        for i, (begin, end) in enumerate(pairs):
            begin.record(stream)
            session.run(prepared[i % k])
            end.record(stream)
    else:
        for i in range(iterations):
            session.run(prepared[i % k])
    session.synchronize()
    wall = clock() - start
    if not pairs:
        return wall, None
    pairs[-1][1].synchronize()
    device = np.asarray([int(b.elapsed_time(e) * 1e6) for b, e in pairs], dtype=np.int64)
    return wall, device
