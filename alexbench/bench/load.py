"""Latency under load: MLPerf's Server scenario, for one session at a time.

`bench` times a cell two ways that see no queue: latency one call at a time (MLPerf's
SingleStream) and throughput back to back (Offline). A service sees requests arrive when its
clients send them, not when it is ready: a request that arrives while another is being served
waits. `--load 0.5,0.8` adds that measurement to each passing cell:

- requests arrive as a Poisson process (exponential gaps), **open loop**: each arrival time is
  drawn before the run and does not depend on when earlier requests finish. A closed loop (the
  next request sent when the last returns) never builds a queue, so it hides the wait that
  matters in production ("coordinated omission");
- the rate is a fraction (the load) of the rate the cell serves one request at a time: 1 / its
  mean latency (device synchronised, as the latency loop measures it). At load 0.8 the session
  is busy about 80% of the time;
- requests are served one at a time in arrival order; a request's **latency runs from its
  scheduled arrival to its result being ready** (device synchronised), so its wait in the
  queue counts. Between requests the process sleeps, as an idle server does: a runtime whose
  threads spin down when idle shows it here;
- the arrival pattern is the same for every cell of a run at one load (drawn from the run's
  seed), scaled by each cell's rate: cells are compared on the same traffic;
- a level stops issuing requests by the same rule as the latency loop (`RunLength`: at least
  `min_seconds` and `min_iters` requests, at most `max_iters`), then serves those that had
  already arrived (the queue is drained, as MLPerf does: its tail holds the longest waits).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alexbench.bench.timer import RunLength
from alexbench.runtimes.base import Session

LOAD_METHOD = (
    "open-loop Poisson arrivals at the load x the cell's one-at-a-time rate (1 / mean latency), "
    "served in arrival order; latency from each request's scheduled arrival to its result "
    "(queueing included)"
)
# A load of 1 or more queues without bound (the queue, and so the latency, grows with the run's
# length, not with anything the cell does): no figure of the cell.
MAX_LOAD = 0.99
# Below this load a level's --min-iters requests take long (each arrives 1/load calls apart):
# bench says so before it starts.
LOW_LOAD = 0.1
# Sleep until this close to an arrival, then spin on the clock: a sleep can overshoot by tens
# of microseconds, which would delay a request's start and read as the runtime's queue.
SPIN_NS = 200_000


def wait_until(deadline_ns: int, clock: Callable[[], int] = time.perf_counter_ns) -> None:
    """Return at `deadline_ns` on `clock`: asleep for most of the wait, spinning at the end."""
    left = deadline_ns - clock()
    if left > SPIN_NS:
        time.sleep((left - SPIN_NS) / 1e9)
    while clock() < deadline_ns:
        pass


def arrival_gaps(seed: int, load: float, repeat: int = 0) -> np.random.Generator:
    """The generator of one load level's arrival gaps (standard exponential draws, scaled by
    each cell's mean gap): the same for every cell of a run at that load, and new traffic in
    each repeat (pooled, the repeats sample more of it)."""
    return np.random.default_rng([seed, round(load * 1_000_000), repeat])


def time_open_loop(
    session: Session,
    prepared: Sequence[Any],
    load: float,
    mean_latency_ns: float,
    run_length: RunLength,
    rng: np.random.Generator,
    clock: Callable[[], int] = time.perf_counter_ns,
    wait: Callable[[int], None] | None = None,
) -> LoadLevel:
    """Serve requests arriving open-loop at `load` / `mean_latency_ns` per nanosecond, one at a
    time in arrival order (see the module's docstring). `clock`, `wait` (until a clock
    reading) and `rng` are injectable so that tests drive the loop with known times."""
    if not 0 < load <= MAX_LOAD:
        raise ValueError(f"load must be in (0, {MAX_LOAD}], got {load}")
    if not prepared:
        raise ValueError("need at least one prepared input")
    if wait is None:
        wait = lambda deadline: wait_until(deadline, clock)  # noqa: E731
    mean_gap_ns = mean_latency_ns / load
    k = len(prepared)
    min_ns = int(run_length.min_seconds * 1e9)
    run, sync = session.run, session.synchronize
    latencies: list[int] = []
    service: list[int] = []
    late: list[int] = []
    start = clock()
    arrival = start
    done = start
    stop_at: int | None = None  # when the stop rule was met: later arrivals are not served
    i = 0
    while True:
        # Drawn without looking at `done`: the traffic does not wait for the server.
        nxt = arrival + max(1, int(rng.standard_exponential() * mean_gap_ns))
        if stop_at is not None and nxt > stop_at:
            break  # the queue is drained
        arrival = nxt
        if arrival > clock():
            wait(arrival)
        t0 = clock()
        late.append(t0 - max(arrival, done))  # `done`: the previous result (or the start)
        run(prepared[i % k])
        sync()
        done = clock()
        latencies.append(done - arrival)
        service.append(done - t0)
        i += 1
        if stop_at is None and (
            i >= run_length.max_iters or (i >= run_length.min_iters and done - start >= min_ns)
        ):
            stop_at = done
    return LoadLevel(
        load,
        [i * 1e9 / (arrival - start)],  # the gaps summed: from the start to the last arrival
        [1e9 / mean_gap_ns],
        latencies,
        service,
        done - start,
        late,
    )


@dataclass
class LoadLevel:
    """A cell's samples at one load (nanoseconds), from one run of `time_open_loop` or the
    repeats' runs pooled (`merge_levels`), and the figures `to_dict` computes from them."""

    load: float
    # Requests offered per second as they arrived, per repeat: their count over the time the
    # arrivals took. Not the nominal rate (load / mean latency): a few dozen exponential gaps
    # average well off their mean (the first 50 of seed 0 at load 0.8: 0.84 of it), and a short
    # level would be judged at a load it was not given.
    rates_per_s: list[float] = field(default_factory=list)
    nominal_rates_per_s: list[float] = field(default_factory=list)  # load / mean, per repeat
    latencies_ns: list[int] = field(default_factory=list)  # scheduled arrival -> result ready
    service_ns: list[int] = field(default_factory=list)  # service start -> result ready
    # The loop's start (the first gap before the first arrival) -> last result, summed over
    # the repeats
    span_ns: int = 0
    # Per request, how late the harness started it: service start - max(arrival, the previous
    # result). A sleep that overshoots counts as queue wait; this says how much of it was ours.
    late_ns: list[int] = field(default_factory=list)

    @property
    def queue_ns(self) -> np.ndarray:
        return np.asarray(self.latencies_ns) - np.asarray(self.service_ns)

    def to_dict(self, batch: int) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ns, dtype=np.float64) / 1e6
        svc = np.asarray(self.service_ns, dtype=np.float64) / 1e6
        queue = lat - svc
        n = len(lat)
        span_s = self.span_ns / 1e9
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        return {
            "load": self.load,
            "requests": n,
            # As the arrivals came (their count over their time), and as asked (load / mean)
            "offered_per_s": float(np.mean(self.rates_per_s)),
            "nominal_per_s": float(np.mean(self.nominal_rates_per_s)),
            # Served per second over the span (Poisson noise aside, below offered when the
            # server could not keep up).
            "served_per_s": n / span_s if span_s > 0 else None,
            "images_per_s": batch * n / span_s if span_s > 0 else None,
            # The share of the span spent serving: the load that was really applied.
            "busy_share": float(svc.sum() / 1e3 / span_s) if span_s > 0 else None,
            "p50_ms": float(p50),
            "p90_ms": float(p90),
            "p99_ms": float(p99),
            "max_ms": float(lat.max()),
            "queue_mean_ms": float(queue.mean()),
            "queue_mean_expected_ms": expected_wait_ms(float(np.mean(self.rates_per_s)), svc),
            "queue_p50_ms": float(np.percentile(queue, 50)),
            "queue_p99_ms": float(np.percentile(queue, 99)),
            "service_p50_ms": float(np.percentile(svc, 50)),
            # How late the harness started requests (a sleep's overshoot), counted in the queue
            # figures above: worth a look where it nears the service time.
            "harness_late_p99_ms": (
                float(np.percentile(self.late_ns, 99)) / 1e6 if self.late_ns else None
            ),
            "repeats": len(self.rates_per_s),
            "latencies_ns": self.latencies_ns,
            "service_ns": self.service_ns,
        }


def expected_wait_ms(rate_per_s: float, service_ms: np.ndarray) -> float | None:
    """The mean wait in the queue that Poisson arrivals at `rate_per_s` on one server with these
    service times give (Pollaczek-Khinchine: W = rate x E[S^2] / (2 (1 - rate x E[S]))), or
    None when the service times keep the server busy all the time (no steady state). A
    measured mean wait far from it: too few requests to reach a steady state, or calls whose
    time depends on the queue (slower in a burst), which the formula's independent service
    times do not model."""
    rate_per_ms = rate_per_s / 1e3
    busy = rate_per_ms * float(service_ms.mean())
    if busy >= 1:
        return None
    return rate_per_ms * float(np.mean(service_ms**2)) / (2 * (1 - busy))


def merge_levels(per_repeat: Sequence[Sequence[LoadLevel]]) -> list[LoadLevel]:
    """One level per load, the repeats' samples pooled in repeat order."""
    merged: dict[float, LoadLevel] = {}
    for levels in per_repeat:
        for level in levels:
            into = merged.setdefault(level.load, LoadLevel(level.load))
            into.rates_per_s += level.rates_per_s
            into.nominal_rates_per_s += level.nominal_rates_per_s
            into.latencies_ns += level.latencies_ns
            into.service_ns += level.service_ns
            into.span_ns += level.span_ns
            into.late_ns += level.late_ns
    return list(merged.values())
