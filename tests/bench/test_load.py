"""Latency under load (bench --load): open-loop arrivals on a simulated clock, where every wait
in the queue is known in advance; then the command end to end on the small model."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alexbench.bench.load import (
    LoadLevel,
    arrival_gaps,
    expected_wait_ms,
    merge_levels,
    time_open_loop,
    wait_until,
)
from alexbench.bench.timer import RunLength
from alexbench.cli import app
from alexbench.devices import Device
from alexbench.results import RESULTS_JSON_SCHEMA
from alexbench.results_shape import results_problem
from alexbench.runtimes.base import Session

runner = CliRunner()
MS = 1_000_000


class Clocked(Session):
    """A session whose calls take fixed times on a simulated clock (ns), in call order."""

    device = Device.CPU

    def __init__(self, service_ns: list[int]) -> None:
        self.now = 0
        self.service = list(service_ns)
        self.calls = 0

    def clock(self) -> int:
        return self.now

    def wait(self, deadline: int) -> None:
        assert deadline > self.now, "waited for an arrival that had already come"
        self.now = deadline

    def prepare(self, x):
        return x

    def run(self, x):
        self.now += self.service[self.calls]
        self.calls += 1
        return x

    def to_numpy(self, out):
        return out


class Gaps:
    """Stands in for numpy's Generator: standard exponential draws, in order."""

    def __init__(self, draws: list[float]) -> None:
        self.draws = iter(draws)

    def standard_exponential(self) -> float:
        return next(self.draws)


def test_latency_counts_the_wait_behind_earlier_requests():
    # Mean service 2 ms at load 0.5: a mean gap of 4 ms; draws 0.25 -> arrivals at 1, 2, 3 ms and
    # then 2.0 -> 11 ms. The first request is served 1-4, the second waits 2 ms (2 -> 4, served
    # 4-6), the third waits 3 ms (3 -> 6, served 6-8), the fourth arrives to an idle server.
    session = Clocked([3 * MS, 2 * MS, 2 * MS, 1 * MS])
    run = time_open_loop(
        session, [object()], 0.5, 2 * MS, RunLength(min_seconds=0, min_iters=4),
        Gaps([0.25, 0.25, 0.25, 2.0, 1.0]), session.clock, session.wait,
    )  # fmt: skip
    assert run.latencies_ns == [3 * MS, 4 * MS, 5 * MS, 1 * MS]
    assert run.service_ns == [3 * MS, 2 * MS, 2 * MS, 1 * MS]
    assert run.queue_ns.tolist() == [0, 2 * MS, 3 * MS, 0]
    assert run.nominal_rates_per_s[0] == pytest.approx(250.0)  # one request per 4 ms asked...
    assert run.rates_per_s[0] == pytest.approx(4 / 0.011)  # ...and four in 11 ms applied
    assert run.late_ns == [0, 0, 0, 0]  # the harness started each on time
    assert run.span_ns == 12 * MS  # first arrival at 1 ms... the clock starts at 0: 0 -> 12 ms


def test_arrivals_do_not_wait_for_the_server_and_the_queue_is_drained():
    """Open loop: a slow call does not delay the next arrival (a closed loop would send it after
    the slow call returned, and report its latency as the service time alone). The stop rule
    ends the arrivals, not the queue: the requests already waiting, the longest waits, count."""
    session = Clocked([50 * MS] + [1 * MS] * 30)
    run = time_open_loop(
        session, [object()], 0.5, 2 * MS, RunLength(min_seconds=0, min_iters=6),
        Gaps([1.0] * 30), session.clock, session.wait,
    )  # fmt: skip
    # Arrivals every 4 ms from 4 ms; the first call ends at 54 ms, then one per ms. The rule is
    # met when the 6th ends (59 ms): the 8 more that arrived by then (28..56 ms) are served.
    arrivals = [4 * MS * (i + 1) for i in range(14)]
    ends = [54 * MS + i * MS for i in range(14)]
    assert run.latencies_ns == [e - a for e, a in zip(ends, arrivals, strict=True)]
    assert run.span_ns == 67 * MS


def test_the_level_stops_by_the_latency_loops_rule():
    session = Clocked([1 * MS] * 1000)
    run = time_open_loop(
        session, [object()], 0.5, 1 * MS, RunLength(min_seconds=0.05, min_iters=5, max_iters=1000),
        Gaps([1.0] * 1000), session.clock, session.wait,
    )  # fmt: skip
    # a request every 2 ms, each done 1 ms later: 25 requests reach 50 ms (the 25th ends at 51)
    assert len(run.latencies_ns) == 25
    capped = Clocked([1 * MS] * 1000)
    run = time_open_loop(
        capped, [object()], 0.5, 1 * MS, RunLength(min_seconds=10, min_iters=5, max_iters=7),
        Gaps([1.0] * 1000), capped.clock, capped.wait,
    )  # fmt: skip
    assert len(run.latencies_ns) == 7


def test_the_harness_own_lateness_is_measured_apart():
    """A sleep that overshoots the arrival reads as queue wait; the level says how much of the
    wait was the harness's (a review)."""
    session = Clocked([1 * MS] * 10)
    overshoot = 300_000

    def late_wait(deadline: int) -> None:
        session.now = deadline + overshoot

    run = time_open_loop(
        session, [object()], 0.25, 1 * MS, RunLength(min_seconds=0, min_iters=3),
        Gaps([1.0] * 10), session.clock, late_wait,
    )  # fmt: skip
    assert run.late_ns == [overshoot] * 3
    assert run.queue_ns.tolist() == [overshoot] * 3
    d = run.to_dict(batch=1)
    assert d["harness_late_p99_ms"] == pytest.approx(0.3)
    from alexbench.report import load_table

    cell = {"device": "cpu", "backend": "eager", "precision": "fp32", "batch": 1, "status": "ok",
            "stats": {"p50_ms": 1.0}, "load": [d]}  # fmt: skip
    (note,) = load_table([cell]).notes
    assert "the harness started 1% of its requests 0.300 ms or more late" in note


@pytest.mark.parametrize("load", [0.0, -0.5, 1.0, 1.5])
def test_a_load_that_queues_without_bound_is_refused(load):
    session = Clocked([MS])
    with pytest.raises(ValueError, match="load must be in"):
        time_open_loop(session, [object()], load, MS, RunLength(), Gaps([1.0]))


@pytest.mark.parametrize("load", [0.5, 0.8])
def test_the_queue_matches_queueing_theory(load):
    """20,000 requests of a constant 1 ms at Poisson arrivals: the mean wait is M/D/1's
    load / (2 (1 - load)) ms, and the Pollaczek-Khinchine figure the table shows agrees."""
    n = 20_000
    session = Clocked([MS] * (n + 1000))  # and the queue left when the rule is met
    run = time_open_loop(
        session, [object()], load, MS, RunLength(min_seconds=0, min_iters=n, max_iters=n),
        arrival_gaps(0, load), session.clock, session.wait,
    )  # fmt: skip
    theory = load / (2 * (1 - load))
    assert run.queue_ns.mean() / MS == pytest.approx(theory, rel=0.1)
    d = run.to_dict(batch=1)
    assert d["queue_mean_expected_ms"] == pytest.approx(theory, rel=0.1)  # at the applied rate
    assert d["busy_share"] == pytest.approx(load, rel=0.05)
    assert d["served_per_s"] == pytest.approx(d["offered_per_s"], rel=0.05)


def test_expected_wait_has_no_steady_state_at_full_load():
    assert expected_wait_ms(250.0, np.array([2.0, 2.0])) == pytest.approx(1.0)  # S/2 at 0.5
    assert expected_wait_ms(500.0, np.array([2.0, 2.0])) is None


def test_every_cell_of_a_run_sees_the_same_traffic_at_one_load():
    a, b = arrival_gaps(0, 0.5), arrival_gaps(0, 0.5)
    assert arrival_gaps(0, 0.5, repeat=1).standard_exponential() != (
        arrival_gaps(0, 0.5).standard_exponential()
    )  # each repeat samples new traffic
    assert [a.standard_exponential() for _ in range(5)] == [
        b.standard_exponential() for _ in range(5)
    ]
    c = arrival_gaps(0, 0.8)
    assert arrival_gaps(0, 0.5).standard_exponential() != c.standard_exponential()
    # drawn from numpy's exponential: mean 1 over many draws
    rng = arrival_gaps(3, 0.5)
    assert np.mean([rng.standard_exponential() for _ in range(20_000)]) == pytest.approx(1, 0.05)


def test_wait_until_returns_at_the_deadline_not_before():
    for delay in (0, 50_000, 3 * MS):
        deadline = time.perf_counter_ns() + delay
        wait_until(deadline)
        assert time.perf_counter_ns() >= deadline


def test_a_level_summary_and_repeats_pooled():
    one = LoadLevel(0.5, [100.0], [90.0], [3 * MS, 4 * MS], [3 * MS, 2 * MS], 10 * MS)
    two = LoadLevel(0.5, [110.0], [90.0], [5 * MS], [1 * MS], 10 * MS)
    other = LoadLevel(0.8, [160.0], [150.0], [6 * MS], [6 * MS], 8 * MS)
    (half, high) = merge_levels([[one, other], [two]])
    d = half.to_dict(batch=4)
    assert d["requests"] == 3 and d["repeats"] == 2
    assert d["offered_per_s"] == pytest.approx(105.0)
    assert d["served_per_s"] == pytest.approx(3 / 0.02)
    assert d["images_per_s"] == pytest.approx(4 * 3 / 0.02)
    assert d["busy_share"] == pytest.approx(6 / 20)
    assert d["p50_ms"] == pytest.approx(4.0) and d["max_ms"] == pytest.approx(5.0)
    assert d["queue_p50_ms"] == pytest.approx(2.0)
    assert d["latencies_ns"] == [3 * MS, 4 * MS, 5 * MS]
    assert high.to_dict(1)["requests"] == 1


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


SHORT = ["--min-time", "0.05", "--min-iters", "3", "--warmup", "1", "--device", "cpu"]


def test_bench_load_times_passing_cells_under_load(small_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--backend",
        "eager,onnxruntime", "--precision", "fp32", "--batch", "1,2", "--load", "0.8,0.5",
        "--repeat", "2", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "under load" in r.stdout and "queue p99 ms" in r.stdout
    # an outside audit: two repeats printed CIs like [0.024, 30725] ms with no word
    assert "warning: --repeat 2: each median's 95% CI is a t interval with 1 degree" in r.stderr
    (json_path,) = tmp_path.glob("*.json")
    data = json.loads(json_path.read_text())
    assert data["settings"]["loads"] == [0.5, 0.8]
    assert "open-loop" in data["settings"]["load_method"]
    assert results_problem(data) is None
    for cell in data["cells"]:
        assert [level["load"] for level in cell["load"]] == [0.5, 0.8]
        for level in cell["load"]:
            assert level["repeats"] == 2 and level["requests"] >= 2 * 3
            assert len(level["latencies_ns"]) == level["requests"]
            # each request's latency holds its service, and its wait before it
            lat, svc = np.array(level["latencies_ns"]), np.array(level["service_ns"])
            assert (lat >= svc).all()
            assert level["p99_ms"] == pytest.approx(np.percentile(lat, 99) / 1e6)
            # each repeat offered load / its own mean latency; the level gives their mean
            ends = np.cumsum([rep["iterations"] for rep in cell["repeats"]])
            per_repeat = np.split(np.array(cell["latencies_ns"]), ends[:-1])
            rates = [level["load"] * 1e9 / part.mean() for part in per_repeat]
            assert level["nominal_per_s"] == pytest.approx(np.mean(rates), rel=1e-6)
            assert level["offered_per_s"] > 0


@pytest.fixture(scope="module")
def eager_load_run(small_artifacts, tmp_path_factory) -> Path:
    """One eager cell timed at load 0.5, saved: its results file."""
    out = tmp_path_factory.mktemp("load")
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", out, "--backend", "eager",
        "--precision", "fp32", "--batch", "1", "--load", "0.5", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (json_path,) = out.glob("*.json")
    return json_path


def test_results_with_load_validate_against_the_schema(eager_load_run):
    import jsonschema

    data = json.loads(eager_load_run.read_text())
    jsonschema.validate(data, RESULTS_JSON_SCHEMA)
    data["cells"][0]["load"][0]["p99_ms"] = None
    assert results_problem(data) == "cells[0].load[0].p99_ms is null, expected a positive number"
    r = invoke("report", eager_load_run)  # the load table from a saved run
    assert r.exit_code == 0 and "under load" in r.stdout, r.output


def test_a_cell_that_failed_parity_is_not_timed_under_load(corrupt_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", corrupt_artifacts, "--out", tmp_path / "res", "--backend",
        "onnxruntime",
        "--precision", "fp32", "--batch", "1", "--load", "0.5", *SHORT,
    )  # fmt: skip
    assert r.exit_code == 1
    (json_path,) = (tmp_path / "res").glob("*.json")
    (cell,) = json.loads(json_path.read_text())["cells"]
    assert cell["status"] == "parity_failed" and cell["load"] == []
    assert "under load" not in r.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1", "--load: 1 is not a fraction above 0 and at most 0.99"),
        ("0", "--load: 0 is not a fraction above 0"),
        ("0.5,x", "--load: 'x' is not a number like 0.5"),
        ("-0.5", "--load: -0.5 is not a fraction above 0 and at most 0.99"),  # a number
        ("nan", "--load: 'nan' is not a number"),
        ("0.5,", "--load: expected a comma-separated list"),
    ],
)
def test_bad_loads_are_one_line_errors(value, message, tmp_path):
    r = invoke("bench", "--out", tmp_path, "--artifacts", tmp_path / "e", "--load", value)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "\n" not in r.stderr.strip()
    assert not (tmp_path / "e").exists()


def test_no_figure_under_load_is_quoted_for_a_cell_that_is_not_ok(eager_load_run):
    """A review: the load table showed every cell holding a load list, whatever its status."""
    from alexbench.report import load_table

    data = json.loads(eager_load_run.read_text())
    cell = data["cells"][0]
    assert load_table([cell]) is not None
    failed = cell | {"status": "error", "reason": "a recompile inside the loaded calls"}
    assert load_table([failed]) is None
    data["cells"][0] = failed
    assert results_problem(data) == ("cells[0].load holds figures, but the cell's status is error")


def test_a_level_that_is_not_the_load_asked_is_flagged():
    """An outside audit: a saturated level (busy 99%, p99 5.3 s growing with the run), calls
    six times slower than unloaded (another process), and arrivals at 1.2x the rate asked
    (a short level's few random gaps) were all shown as ordinary figures."""
    from alexbench.report import load_table

    level = {"load": 0.8, "requests": 200, "offered_per_s": 80.0, "nominal_per_s": 80.0,
             "served_per_s": 79.0, "busy_share": 0.8, "p50_ms": 12.0, "p90_ms": 30.0,
             "p99_ms": 50.0, "max_ms": 60.0, "queue_mean_ms": 5.0, "queue_mean_expected_ms": 4.0,
             "queue_p50_ms": 2.0, "queue_p99_ms": 40.0, "service_p50_ms": 10.0}  # fmt: skip
    cell = {"device": "cpu", "backend": "eager", "precision": "fp32", "batch": 1, "status": "ok",
            "stats": {"p50_ms": 10.0}, "load": [level]}  # fmt: skip
    assert load_table([cell]).notes == []
    bad = level | {"busy_share": 0.99, "queue_mean_expected_ms": None, "service_p50_ms": 60.0,
                   "offered_per_s": 96.0}  # fmt: skip
    notes = load_table([cell | {"load": [bad]}]).notes
    assert len(notes) == 3 and all(n.startswith("cpu/eager/fp32/1 at load 0.8: ") for n in notes)
    assert "saturated (busy 99%)" in notes[0]
    assert "its calls took 6.0x their unloaded p50" in notes[1]
    assert "requests arrived at 1.20x the rate asked" in notes[2]


def test_a_low_load_says_it_takes_long(small_artifacts, tmp_path):
    """An outside audit: --load 0.01 made a level take 15 s against a --min-time of 0.05."""
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--backend", "eager",
        "--precision", "fp32", "--batch", "1", "--load", "0.05", "--min-iters", "3",
        "--min-time", "0", "--warmup", "1", "--device", "cpu",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "warning: --load 0.05: requests arrive 20x a call's time apart" in r.stderr


def test_compare_says_it_does_not_judge_the_figures_under_load(eager_load_run, tmp_path):
    data = json.loads(eager_load_run.read_text())
    other = data | {"created": "2030-01-01T00:00:00+00:00"}
    b = tmp_path / "b.json"
    b.write_text(json.dumps(other))
    r = invoke("compare", eager_load_run, b)
    assert r.exit_code == 0, r.output
    assert (
        "A and B hold figures under load (bench --load): compare judges the unloaded"
        in " ".join(r.stderr.split())
    )
