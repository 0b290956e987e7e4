"""The timing loop, the same for every runtime.

CPU: perf_counter_ns around each `session.run` (outputs exist when run returns).
CUDA: CUDA events recorded on the current stream around each call, for runtimes that enqueue
work on it (torch); runtimes that return only when their own stream is done (ONNX Runtime with
IO binding) are timed on the host. Inputs are prepared before timing and rotated, so no cache
or memoisation of a single input flatters the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass
class Timing:
    latencies_ns: np.ndarray
    wall_ns: int
    method: str  # "perf_counter" or "cuda_events"
    problem: str | None = None  # the session's `timing_problem()`: the timed calls are invalid


def _uses_events(session: Session) -> bool:
    return session.device is Device.CUDA and not getattr(session, "host_synchronous", False)


def time_session(
    session: Session,
    prepared: Sequence[Any],
    run_length: RunLength,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Timing:
    """Time `session.run` over `prepared` inputs (rotated) and return raw latencies.

    `clock` is injectable so that tests can drive the loop with known latencies.
    """
    if not prepared:
        raise ValueError("need at least one prepared input")
    k = len(prepared)
    for i in range(run_length.warmup):
        session.run(prepared[i % k])
    session.timing_started()
    if _uses_events(session):
        timing = _time_cuda_events(session, prepared, run_length)
    else:
        timing = _time_host(session, prepared, run_length, clock)
    timing.problem = session.timing_problem()
    return timing


def _time_host(
    session: Session, prepared: Sequence[Any], run_length: RunLength, clock: Callable[[], int]
) -> Timing:
    k = len(prepared)
    latencies: list[int] = []
    min_ns = int(run_length.min_seconds * 1e9)
    run = session.run
    start = clock()
    i = 0
    while True:
        x = prepared[i % k]
        t0 = clock()
        run(x)
        t1 = clock()
        latencies.append(t1 - t0)
        i += 1
        if i >= run_length.max_iters or (i >= run_length.min_iters and t1 - start >= min_ns):
            break
    wall = t1 - start
    return Timing(np.asarray(latencies, dtype=np.int64), wall, "perf_counter")


def _time_cuda_events(session: Session, prepared: Sequence[Any], rl: RunLength) -> Timing:
    import torch

    k = len(prepared)
    torch.cuda.synchronize()
    pairs = []
    min_ns = int(rl.min_seconds * 1e9)
    start = time.perf_counter_ns()
    i = 0
    while True:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        session.run(prepared[i % k])
        end.record()
        pairs.append((begin, end))
        i += 1
        # Synchronise every 32 iterations: bounds the queue without serialising each launch.
        if i % 32 == 0:
            end.synchronize()
        if i >= rl.max_iters:
            break
        if i >= rl.min_iters and time.perf_counter_ns() - start >= min_ns:
            break
    torch.cuda.synchronize()
    wall = time.perf_counter_ns() - start
    lat = np.asarray([int(b.elapsed_time(e) * 1e6) for b, e in pairs], dtype=np.int64)
    return Timing(lat, wall, "cuda_events")
