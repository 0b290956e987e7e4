from dataclasses import asdict

import numpy as np
import pytest

from alexbench.bench.stats import compute_stats, median_ci_ranks
from alexbench.bench.timer import RunLength, time_session
from alexbench.devices import Device
from alexbench.runtimes.base import Session


class ScriptedSession(Session):
    """A fake runtime whose every call takes a known number of nanoseconds on a fake clock."""

    device = Device.CPU

    def __init__(self, durations_ns):
        self.durations = list(durations_ns)
        self.now = 0
        self.calls = []

    def clock(self):
        return self.now

    def prepare(self, batch):
        return batch

    def run(self, inputs):
        self.calls.append(inputs)
        self.now += self.durations[(len(self.calls) - 1) % len(self.durations)]
        return inputs

    def to_numpy(self, outputs):
        return np.asarray(outputs)


def test_every_statistic_exactly_from_known_latencies():
    ms = np.arange(1, 11)  # 1..10 ms
    s = compute_stats(ms * 1_000_000, batch=8, wall_ns=int(0.1e9))
    assert s.iterations == 10 and s.batch == 8
    assert s.min_ms == 1.0 and s.max_ms == 10.0
    assert s.mean_ms == 5.5
    assert s.std_ms == pytest.approx(np.sqrt(sum((x - 5.5) ** 2 for x in ms) / 9))
    assert s.p50_ms == 5.5  # linear interpolation between 5 and 6
    assert s.p90_ms == pytest.approx(9.1)
    assert s.p95_ms == pytest.approx(9.55)
    assert s.p99_ms == pytest.approx(9.91)
    assert (s.p50_ci_low_ms, s.p50_ci_high_ms) == (2.0, 9.0)  # order statistics 2 and 9 of 10
    assert s.throughput == pytest.approx(8 / 0.0055)
    assert s.wall_throughput == pytest.approx(8 * 10 / 0.1)
    assert s.unstable  # the CI spans 2..9 ms: far wider than 5% of the median


def test_tight_distribution_is_stable():
    lat = np.full(200, 4_000_000) + np.arange(200)  # 4 ms +- 0.2 us
    s = compute_stats(lat, batch=1, wall_ns=int(0.8e9))
    assert not s.unstable and s.throughput == pytest.approx(250, rel=1e-4)


@pytest.mark.parametrize(("n", "ranks"), [(10, (1, 8)), (20, (5, 14)), (100, (39, 60))])
def test_median_ci_ranks_match_published_tables(n, ranks):
    assert median_ci_ranks(n) == ranks  # 0-based; tables list (2, 9), (6, 15), (40, 61)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_too_few_samples_have_no_95_percent_ci(n):
    # Even [min, max] covers the median with only 1 - 2 / 2**n (0.94 for 5 samples): no CI.
    assert median_ci_ranks(n) is None
    s = compute_stats(np.arange(1, n + 1) * 1_000_000, batch=1, wall_ns=10**9)
    assert (s.p50_ci_low_ms, s.p50_ci_high_ms) == (None, None) and s.unstable
    assert median_ci_ranks(6) == (0, 5)  # 1 - 2 / 64 = 0.969


def test_the_ci_over_repeats_is_a_t_interval_on_their_log_medians():
    medians = [10.0, 10.3, 9.9, 10.2]
    logs = np.log(medians)
    half = 3.182446305284263 * logs.std(ddof=1) / 2  # t(0.975, 3 df), from published tables
    s = compute_stats([10_000_000] * 40, 1, 10**9, repeat_medians_ms=medians)
    assert s.p50_ms == pytest.approx(np.exp(logs.mean()))
    assert s.p50_ci_low_ms == pytest.approx(np.exp(logs.mean() - half), rel=1e-6)
    assert s.p50_ci_high_ms == pytest.approx(np.exp(logs.mean() + half), rel=1e-6)
    # 9.9 to 10.3 ms: the CI over 4 repeats is 5.7% wide, so the median is flagged (~)
    assert s.repeats == 4 and s.unstable
    assert (s.p50_ci_high_ms - s.p50_ci_low_ms) / s.p50_ms == pytest.approx(0.0573, abs=1e-3)
    tight = compute_stats([10_000_000] * 40, 1, 10**9, repeat_medians_ms=[10.0, 10.05, 9.98])
    assert not tight.unstable  # a CI 1.8% wide


def test_timer_records_known_latencies_rotates_inputs_and_obeys_run_length():
    durations = [3_000_000, 5_000_000, 4_000_000]
    session = ScriptedSession(durations)
    prepared = ["a", "b", "c"]
    rl = RunLength(warmup=2, min_seconds=0.05, min_iters=5, max_iters=1000)
    timing = time_session(session, prepared, rl, clock=session.clock)
    # warm-up runs every prepared input once (3 > --warmup 2): durations 0..2; timing restarts
    expected = [durations[i % 3] for i in range(len(timing.latencies_ns))]
    assert timing.latencies_ns.tolist() == expected
    assert sum(expected) >= 50_000_000 and sum(expected[:-1]) < 50_000_000  # stop at min time
    assert timing.wall_ns == sum(expected)
    assert session.calls[:6] == ["a", "b", "c", "a", "b", "c"]  # warm-up all 3, then rotation
    assert rl.to_dict(len(prepared)) | {"warmup": 2} == asdict(rl) | {"warmup_calls": 3}
    stats = compute_stats(timing.latencies_ns, 1, timing.wall_ns)
    assert stats.p50_ms == float(np.median(np.array(expected) / 1e6))


def test_min_iters_wins_over_min_time_and_max_iters_caps():
    session = ScriptedSession([10_000_000])
    t = time_session(session, [0], RunLength(0, 0.0, 7, 100), clock=session.clock)
    assert len(t.latencies_ns) == 7
    session = ScriptedSession([1])
    t = time_session(session, [0], RunLength(0, 10.0, 1, 50), clock=session.clock)
    assert len(t.latencies_ns) == 50
