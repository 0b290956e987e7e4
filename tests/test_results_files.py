"""Results files with the right schema but a broken structure: one line naming what is wrong
(exit 2) when given by name, skipped with a note in a folder, never an "unexpected" crash; and
`compare` of two runs with nothing in common exits 4 (nothing was compared)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alexbench.cli import app
from alexbench.errors import InputError
from alexbench.exit_codes import ExitCode
from alexbench.results import collect_runs, load_results
from alexbench.results_shape import evaluation_problem, results_problem

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "results" / "xeon-2c" / "20261126-185047_vm_cpu.json"  # 12 ok cells, 4 skipped
OLD = ROOT / "tests" / "fixtures" / "results-schema1.json"
runner = CliRunner()


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(r) -> str:
    """The single stderr line of a bad-input failure (exit 2, no traceback, not "unexpected")."""
    assert r.exit_code == ExitCode.BAD_INPUT, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in r.stderr
    return lines[0]


def valid() -> dict[str, Any]:
    return json.loads(RUN.read_text())


def _ok(d: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in d["cells"] if c["status"] == "ok")


def _skipped(d: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in d["cells"] if c["status"] == "skipped")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting a dotted path ("environment.cpu"; "ok" is the first ok cell)."""

    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        obj = d
        for p in parents:
            obj = _ok(obj) if p == "ok" else obj[p]
        if value is _DELETE:
            del obj[last]
        else:
            obj[last] = value

    return mutate


def _repeat_medians(d: dict[str, Any], medians: list[float]) -> None:
    for rep, median in zip(_ok(d)["repeats"], medians, strict=True):
        rep["p50_ms"] = median


_DELETE = object()
INF, NAN = float("inf"), float("nan")

# (id, mutation, what the error must name)
BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    # The audit's shapes.
    ("cells-string", _set("cells", "abc"), "cells is a string, expected a list"),
    ("stats-null-ok", _set("ok.stats", None), "].stats is null, but the cell's status is ok"),
    ("stats-empty-ok", _set("ok.stats", {}), "].stats is empty, but the cell's status is ok"),
    ("cell-without-batch", _set("ok.batch", _DELETE), "].batch is missing"),
    ("environment-null", _set("environment", None), "environment is null, expected an object"),
    # More of what the tables, plots and compare index.
    ("cells-missing", _set("cells", _DELETE), "cells is missing"),
    ("cell-not-object", lambda d: d["cells"].insert(0, 7), "cells[0] is 7, expected an object"),
    ("batch-string", _set("ok.batch", "1"), "].batch is a string, expected a positive integer"),
    ("batch-zero", _set("ok.batch", 0), "].batch is 0, expected a positive integer"),
    ("unknown-status", _set("ok.status", "fine"), "].status is 'fine', expected one of ok,"),
    ("stats-without-throughput", _set("ok.stats.throughput", _DELETE), "].stats.throughput is"),
    ("p50-null", _set("ok.stats.p50_ms", None), "].stats.p50_ms is null, expected a positive"),
    ("latencies-text", _set("ok.latencies_ns", ["1", "2"]), "].latencies_ns[0] is a string, exp"),
    ("repeat-not-object", _set("ok.repeats", [1.0]), "].repeats[0] is 1.0, expected an object"),
    ("parity-without-passed", _set("ok.parity.passed", _DELETE), "].parity.passed is missing"),
    ("roofline-list", _set("ok.roofline", []), "].roofline is a list, expected an object"),
    ("cpu-missing", _set("environment.cpu", _DELETE), "environment.cpu is missing"),
    # compare makes sets of the flags (a dict in the list: unhashable, exit 3)
    ("cpu-flags-dict", _set("environment.cpu.flags", ["avx2", {}]),
     "environment.cpu.flags[1] is an object, expected a string"),
    ("cpu-cores-text", _set("environment.cpu.usable_cores", "2"),
     "environment.cpu.usable_cores is a string, expected a positive integer or null"),
    ("versions-string", _set("environment.versions", "2.9"), "environment.versions is a string"),
    ("host-number", _set("environment.host", 5), "environment.host is 5, expected a string"),
    ("version-list", _set("environment.versions.torch", ["2"]), "versions.torch is a list"),
    ("gpu-without-name", _set("environment.gpu", {"cuda": "13"}), "environment.gpu.name is"),
    ("model-list", _set("model", []), "model is a list, expected an object"),
    ("artifacts-list", _set("model.artifacts", ["onnx"]), "model.artifacts is a list"),
    ("settings-null", _set("settings", None), "settings is null, expected an object"),
    ("repeat-text", _set("settings.repeat", "3"), "settings.repeat is a string"),
    ("ceilings-list", _set("ceilings", [1]), "ceilings is a list, expected an object"),
    ("complete-text", _set("complete", "yes"), "complete is a string, expected a boolean"),
    # Non-finite and out-of-range numbers (json reads Infinity, NaN and 400-digit integers):
    # report printed inf, the plots and compare crashed.
    ("p50-infinite", _set("ok.stats.p50_ms", INF), "].stats.p50_ms is inf, expected a positive"),
    ("throughput-inf", _set("ok.stats.throughput", INF), "].stats.throughput is inf, expected"),
    ("p90-nan", _set("ok.stats.p90_ms", NAN), "].stats.p90_ms is nan, expected a positive"),
    ("ci-negative", _set("ok.stats.p50_ci_low_ms", -1.0), "].stats.p50_ci_low_ms is -1.0, exp"),
    ("repeat-p50-inf", lambda d: _ok(d)["repeats"][0].update(p50_ms=INF),
     "].repeats[0].p50_ms is inf, expected a positive number"),
    ("latency-inf", _set("ok.latencies_ns", [5, INF]), "].latencies_ns[1] is inf, expected a pos"),
    ("latency-huge", _set("ok.latencies_ns", [10**400] * 3),
     "].latencies_ns[0] is an integer of 401 digits, expected a positive integer"),
    ("latency-negative", _set("ok.latencies_ns", [-5, 7]), "].latencies_ns[0] is -5, expected"),
    ("latency-zero", _set("ok.latencies_ns", [0, 0]), "].latencies_ns[0] is 0, expected a posit"),
    ("batch-huge", _set("ok.batch", 10**30), "].batch is an integer of 31 digits, expected"),
    ("ceiling-inf", lambda d: d["ceilings"]["cpu"]["gemm_gflops"].update(fp32=INF),
     "ceilings.cpu.gemm_gflops.fp32 is inf, expected a positive number or null"),
    ("memory-nan", _set("ok.memory.resident_bytes", NAN), "].memory.resident_bytes is nan, ex"),
    ("roofline-nan", _set("ok.roofline.pct_of_ceiling", NAN), "].roofline.pct_of_ceiling is nan"),
    ("parity-inf", _set("ok.parity.min_cosine", -INF), "].parity.min_cosine is -inf, expected"),
    ("cold-negative", _set("ok.cold_start.first_inference_ms", -3.0), "first_inference_ms is -3"),
    # A skipped cell's stats were read (recentred on repeats) though never checked: a crash.
    ("skipped-junk-stats", lambda d: _skipped(d).update(stats=_ok(d)["stats"] | {"p50_ms": "x"}),
     "].stats.p50_ms is a string, expected a positive number"),
    # One figure edited: report showed p50 1e308 ms while compare judged by the repeats.
    ("p50-edited", _set("ok.stats.p50_ms", 1e308), "].stats.throughput "),
    ("p50-and-throughput-edited",
     lambda d: _ok(d)["stats"].update(p50_ms=1e6, throughput=_ok(d)["batch"] / 1e3),
     "].stats.p50_ms 1e+06 is outside its fastest and slowest call"),
    # named as edited, not the stats computed from them (an outside audit)
    ("repeats-edited", lambda d: [r.update(p50_ms=r["p50_ms"] * 9) for r in _ok(d)["repeats"]],
     "].repeats[0].p50_ms"),
    # Figures that disagree with the raw latencies or with each other (the audit: report showed
    # the stats, compare judged by the latencies; a failed parity showed as PASS; 500% of the
    # roofline without its "!"; a CUDA cell in a CPU-only run).
    ("latencies-doubled", lambda d: _ok(d).update(latencies_ns=[2 * v for v in
                                                                _ok(d)["latencies_ns"]]),
     "].repeats[0].p50_ms 14.737 disagrees with its 68 latencies_ns (their median: 29.4"),
    ("iterations-edited", _set("ok.stats.iterations", 5),
     "].stats.iterations 5 disagrees with its 203 latencies_ns"),
    ("p99-edited", _set("ok.stats.p99_ms", 14.9),
     "].stats.p99_ms 14.9 disagrees with its latencies_ns (their 99th percentile: 17.0"),
    ("ci-reversed", lambda d: _ok(d)["stats"].update(p50_ci_low_ms=100.0, p50_ci_high_ms=1.0),
     "].stats.p50_ms 14.8106 is outside its 95% interval (100 to 1 ms)"),
    ("parity-passed-false-but-ok", _set("ok.parity.passed", False),
     "].status is ok but its parity.passed is false"),
    # An ok cell whose parity was removed was compared and gated as a pass (an outside audit).
    ("ok-without-parity", _set("ok.parity", None),
     "].parity is null, but the cell's status is ok (a cell is ok only once its outputs passed"),
    ("roofline-pct-edited", _set("ok.roofline.pct_of_ceiling", 500.0),
     "].roofline.pct_of_ceiling 500 disagrees with roofline_ms / p50_ms (56.8%)"),
    ("roofline-exceeds-edited", _set("ok.roofline.exceeds_ceiling", True),
     "].roofline.exceeds_ceiling is true but pct_of_ceiling is 56.8"),
    ("device-not-in-settings", lambda d: _ok(d).update(device="cuda"),
     "].device is 'cuda', which settings.devices (cpu) does not list"),
    # The second audit of hand edits: each was shown, or moved a compare verdict, silently.
    ("repeat-median-edited",
     lambda d: _repeat_medians(d, [14.737005 * 0.98, 14.503869, 15.3278 * 1.02]),
     "].repeats[0].p50_ms 14.4423 disagrees with its 68 latencies_ns (their median: 14.737"),
    ("repeat-iterations-edited", lambda d: _ok(d)["repeats"][0].update(iterations=999),
     "].repeats' iterations add up to 1134, but it has 203 latencies_ns"),
    ("ci-narrowed", lambda d: _ok(d)["stats"].update(p50_ci_low_ms=14.80, p50_ci_high_ms=14.82),
     "].stats.p50_ci_low_ms 14.8 disagrees with its latencies_ns (their 95% interval: 14.7388"),
    ("unstable-edited", _set("ok.stats.unstable", True), "].stats.unstable is true, but its"),
    ("mean-edited", _set("ok.stats.mean_ms", 18.0), "].stats.mean_ms 18 disagrees with its lat"),
    ("wall-throughput-edited", _set("ok.stats.wall_throughput", 900.0),
     "].stats.wall_throughput 900 disagrees with its repeats' wall clock (67.0292 images/s)"),
    ("stripped-min-negative", lambda d: _ok(d).update(latencies_ns=[]) or _ok(d)["stats"].update(
        min_ms=-5.0), "].stats.min_ms is -5.0, expected a positive number or null"),
    ("stripped-p99-below-p90", lambda d: _ok(d).update(latencies_ns=[]) or _ok(d)[
        "stats"].update(p99_ms=15.0), "].stats.p95_ms 15.8032 is above its p99_ms 15"),
    ("stripped-mean-outside", lambda d: _ok(d).update(latencies_ns=[]) or _ok(d)[
        "stats"].update(mean_ms=100.0), "].stats.mean_ms 100 is outside its fastest and slowest"),
    ("parity-pass-above-threshold", _set("ok.parity.max_abs_err", 5.0),
     "].parity.passed is true, but its max_abs_err 5 is above its threshold 1.29482e-05"),
    ("parity-cosine-impossible", _set("ok.parity.min_cosine", 1.5),
     "].parity: min_cosine 1.5 or top1_agreement 1 is impossible"),
    ("parity-agreement-impossible", _set("ok.parity.top1_agreement", -0.1),
     "].parity: min_cosine 1 or top1_agreement -0.1 is impossible"),
    # An older file (no stats.repeats) is recentred on its repeats' medians as it is read; with
    # its raw latencies stripped nothing checks those medians, so the new centre is checked.
    ("recentred-below-fastest",
     lambda d: _ok(d).update(latencies_ns=[]) or _repeat_medians(d, [2.5, 14.8106, 14.82]),
     "].stats.p50_ms 8.18692 is outside its fastest and slowest call (13.5655 to 18.2072 ms)"),
    # What RESULTS_JSON_SCHEMA refuses, the loaders refuse too.
    ("unknown-backend", _set("ok.backend", "tensorrt"), "].backend is 'tensorrt', expected one"),
    ("unknown-device", _set("ok.device", "tpu"), "].device is 'tpu', expected one of cpu, cuda"),
    ("unknown-precision", _set("ok.precision", "fp8"), "].precision is 'fp8', expected one of"),
    # One cell per key: report showed it twice, compare kept the last one silently.
    ("duplicate-cell", lambda d: d["cells"].append(copy.deepcopy(_ok(d))),
     "] repeats cells[0] (eager/cpu/fp32/b1): one cell per backend, device, precision and batch"),
    # Runs are sorted and dated by it.
    ("created-garbage", _set("created", "yesterday-ish"),
     "created is 'yesterday-ish', expected an ISO-8601 date and time"),
]  # fmt: skip
IDS = [b[0] for b in BROKEN]


def write_broken(folder: Path, case: str) -> Path:
    mutate = next(m for name, m, _ in BROKEN if name == case)
    data = valid()
    mutate(data)
    path = folder / f"{case}.json"
    path.write_text(json.dumps(data))
    return path


def expected(case: str) -> str:
    return next(words for name, _, words in BROKEN if name == case)


@pytest.mark.parametrize("case", IDS)
def test_a_broken_structure_is_a_one_line_error_naming_it(tmp_path: Path, case: str) -> None:
    path = write_broken(tmp_path, case)
    with pytest.raises(InputError) as e:
        load_results(path)
    assert str(e.value).startswith(f"{path}: not a valid results file (")
    assert expected(case) in str(e.value)
    for args in (["report", path], ["compare", RUN, path], ["compare", path, RUN, "--json"]):
        line = one_error_line(invoke(*args))
        assert f"{path}: not a valid results file (" in line and expected(case) in line


@pytest.mark.parametrize("case", ["cells-string", "stats-null-ok", "cell-without-batch"])
def test_report_out_refuses_a_broken_file_named_explicitly(tmp_path: Path, case: str) -> None:
    path = write_broken(tmp_path, case)
    line = one_error_line(invoke("report", path, "--out", tmp_path / "rep"))
    assert expected(case) in line and not (tmp_path / "rep").exists()


def _valid_variants() -> dict[str, dict[str, Any]]:
    """Files `bench` does write: nulls where a number was not finite or not measured."""
    out = {}
    d = valid()
    cell = next(c for c in d["cells"] if c["status"] == "ok")
    cell["status"] = "parity_failed"  # a failed cell's errors are infinite: null in the file
    cell["parity"] |= {"passed": False, "max_abs_err": None, "max_rel_err": None}
    cell["stats"]["wall_throughput"] = None  # no wall clock taken: NaN, written as null
    cell["cold_start"] = {"session_create_s": None, "first_inference_ms": None}
    cell["memory"] = {"resident_bytes": None, "peak_bytes": None}
    out["nulls"] = d
    d = valid()
    error = next(c for c in d["cells"] if c["status"] == "skipped")
    error |= {"status": "error", "reason": "OverflowError: boom", "stats": None, "repeats": []}
    out["error-cell"] = d
    out["undated"] = {k: v for k, v in valid().items() if k != "created"}
    out["date-null"] = valid() | {"created": None}
    out["no-cells"] = valid() | {"cells": [], "complete": False, "interrupted": "SIGINT"}
    out["schema-1"] = json.loads(OLD.read_text())
    return out


@pytest.mark.parametrize("name", list(_valid_variants()))
def test_files_bench_writes_stay_valid(tmp_path: Path, name: str) -> None:
    data = _valid_variants()[name]
    assert results_problem(data) is None
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    loaded = load_results(path)
    for c in loaded["cells"] + data["cells"]:  # recentred on reading (see the next test)
        c.pop("stats"), c.pop("roofline")
    assert loaded == data


def test_a_file_with_pooled_repeats_is_read_centred_on_its_repeats_medians() -> None:
    """Older files pooled every repeat's samples for the median and its CI; report showed
    that while compare centred on the repeats' medians, so one cell had two p50s. Read now
    as `bench` computes it, the report's table and compare agree."""
    from alexbench.bench.compare import compare_runs
    from alexbench.bench.stats import repeats_interval

    raw = valid()
    loaded = load_results(RUN)
    for before, after in zip(raw["cells"], loaded["cells"], strict=True):
        if not before["stats"]:
            continue
        medians = [r["p50_ms"] for r in before["repeats"]]
        centre, low, high = repeats_interval(medians)
        s = after["stats"]
        assert (s["p50_ms"], s["p50_ci_low_ms"], s["p50_ci_high_ms"]) == (centre, low, high)
        assert s["throughput"] == pytest.approx(after["batch"] / centre * 1e3)
        assert s["p99_ms"] == before["stats"]["p99_ms"] and s["repeats"] == 3
        pct = after["roofline"]["pct_of_ceiling"]
        assert pct == pytest.approx(100 * after["roofline"]["roofline_ms"] / centre, abs=0.05)
    # compare's A p50 is the table's, against a run with one repeat too
    single = ROOT / "results" / "xeon-2c" / "20261126-185344_vm_cpu.json"
    for cmp in compare_runs(loaded, load_results(single)).cells:
        cell = next(c for c in loaded["cells"] if (c["backend"], c["device"], c["precision"],
                                                    c["batch"]) == cmp.key)  # fmt: skip
        assert cmp.a_p50_ms == pytest.approx(cell["stats"]["p50_ms"])
        assert cmp.ci_low < cmp.ratio < cmp.ci_high


def test_every_committed_results_file_is_valid() -> None:
    runs, _ = collect_runs([ROOT / "results"])
    assert len(runs) >= 2 and all(results_problem(r.data) is None for r in runs)


# ---------------------------------------------------------------- folders: skipped, with a note


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """One good run and the audit's broken shapes beside it."""
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "good.json").write_text(RUN.read_text())
    for case in ("cells-string", "stats-null-ok", "stats-empty-ok", "cell-without-batch",
                 "environment-null", "p50-infinite", "duplicate-cell"):  # fmt: skip
        write_broken(folder, case)
    return folder


BROKEN_IN_FOLDER = 7


def test_collect_runs_skips_broken_files_in_a_folder(mixed_folder: Path) -> None:
    runs, skipped = collect_runs([mixed_folder])
    assert [r.name for r in runs] == ["good"]
    assert len(skipped) == BROKEN_IN_FOLDER
    assert all(": not a valid results file (" in line for line in skipped)


def test_report_of_a_folder_skips_broken_files_and_shows_the_rest(mixed_folder: Path) -> None:
    r = invoke("report", mixed_folder)
    assert r.exit_code == 0, r.output
    assert "good.json" in r.stdout and r.stdout.count("PASS") == 12
    notes = [line for line in r.stderr.splitlines() if line.startswith("skipped ")]
    assert len(notes) == BROKEN_IN_FOLDER, r.stderr
    assert any("cells-string.json: not a valid results file (cells is a string" in n for n in notes)
    assert "error" not in r.stderr


def test_report_out_of_a_folder_skips_broken_files(mixed_folder: Path, tmp_path: Path) -> None:
    r = invoke("report", mixed_folder, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert "Report of 1 run(s)" in r.stdout
    assert r.stderr.count("not a valid results file") == BROKEN_IN_FOLDER
    assert (tmp_path / "rep" / "report.html").is_file()


def test_results_of_a_folder_skips_broken_files(mixed_folder: Path) -> None:
    r = invoke("results", mixed_folder, "--json")
    assert r.exit_code == 0, r.output
    assert [d["file"] for d in json.loads(r.stdout)] == ["good.json"]
    assert f"skipped {BROKEN_IN_FOLDER} JSON file(s)" in r.stderr
    assert "not a valid results file" in r.stderr


def test_a_folder_of_only_broken_files_says_why(tmp_path: Path) -> None:
    write_broken(tmp_path, "cells-string")
    line = one_error_line(invoke("report", tmp_path))
    assert "no alexbench results files" in line and "cells is a string" in line


# ---------------------------------------------------------------- evaluate documents


def test_evaluation_problem_names_a_broken_evaluate_document() -> None:
    doc = json.loads((ROOT / "results/training/sgd-bf16-20/evaluate.json").read_text())
    assert evaluation_problem(doc) is None
    assert evaluation_problem(doc | {"cells": "abc"}) == "cells is a string, expected a list"
    broken = copy.deepcopy(doc)
    del broken["cells"][1]["status"]
    assert evaluation_problem(broken) == "cells[1].status is missing"
    broken["cells"][1] = None
    assert evaluation_problem(broken) == "cells[1] is null, expected an object"


# ---------------------------------------------------------------- compare: nothing compared


def _run_with(tmp_path: Path, name: str, batch: int | None = None, status: str | None = None):
    """The committed run cut to its batch-1 cells, their batch or status changed."""
    data = valid()
    data["cells"] = [c for c in data["cells"] if c["batch"] == 1]
    data["settings"]["batches"] = [batch or 1]
    for c in data["cells"]:
        if batch is not None:
            c["batch"] = batch
            if c["stats"]:  # images/s follow the batch (a file load_results accepts)
                c["stats"]["throughput"] = batch / (c["stats"]["p50_ms"] / 1e3)
                c["stats"]["wall_throughput"] *= batch
        if status is not None and c["status"] == "ok":
            c |= {"status": status, "stats": None, "reason": "crashed"}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("gate", [[], ["--fail-on-regression"], ["--fail-on-regression", "--json"]])
def test_compare_with_no_cell_in_common_exits_4(tmp_path: Path, gate: list[str]) -> None:
    a, b = _run_with(tmp_path, "a"), _run_with(tmp_path, "b", batch=64)
    r = invoke("compare", a, b, *gate)
    assert r.exit_code == ExitCode.CELLS_FAILED == 4, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 + bool(gate) and "unexpected" not in r.stderr
    if gate:  # the gate also names the cells B lost
        assert errors[0].startswith("error: 6 cell(s) measured in A are missing from B: ")
    assert errors[-1].startswith("error: nothing was compared: no cell is measured")
    assert "cell(s) only in A" in errors[-1] and "cell(s) only in B" in errors[-1]
    if "--json" in gate:
        doc = json.loads(r.stdout)
        assert doc["cells"] == [] and doc["only_in_a"] and doc["only_in_b"]


def test_compare_with_common_cells_none_ok_in_both_exits_4(tmp_path: Path) -> None:
    a, b = _run_with(tmp_path, "a"), _run_with(tmp_path, "b", status="error")
    r = invoke("compare", a, b, "--fail-on-regression")
    assert r.exit_code == 4, r.output
    assert "not comparable: " in r.stdout
    assert "in both but not ok in both" in r.stderr


def test_compare_with_a_cell_in_common_still_exits_0(tmp_path: Path) -> None:
    a = _run_with(tmp_path, "a")
    r = invoke("compare", a, a)  # (as a gate, one document twice exits 4: test_compare.py)
    assert r.exit_code == 0, r.output
    assert "nothing was compared" not in r.stderr


def test_report_out_refuses_a_named_broken_evaluate_report_and_skips_one_in_a_folder(
    tmp_path: Path,
) -> None:
    doc = json.loads((ROOT / "results/training/sgd-bf16-20/evaluate.json").read_text())
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps(doc | {"cells": "abc"}))
    (folder / "run.json").write_text(RUN.read_text())
    line = one_error_line(invoke("report", folder / "eval.json", "--out", tmp_path / "a"))
    assert "not a valid evaluate report (cells is a string" in line
    r = invoke("report", folder, "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert "not a valid evaluate report" in r.output and (tmp_path / "b" / "report.html").exists()


def _with_b_cell(tmp_path: Path, name: str, change: dict[str, Any] | None) -> Path:
    """The committed run's batch-1 cells with its first ok cell changed (None: removed)."""
    data = json.loads(_run_with(tmp_path, name).read_text())
    i = next(i for i, c in enumerate(data["cells"]) if c["status"] == "ok")
    if change is None:
        del data["cells"][i]
    else:
        parity = data["cells"][i]["parity"] | change.get("parity", {})
        data["cells"][i] |= change | {"parity": parity}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        (
            {"status": "parity_failed", "parity": {"passed": False, "max_abs_err": 0.5}},
            ExitCode.PARITY_FAILED,
            "fail parity in B",
        ),
        ({"status": "error", "stats": None, "reason": "crashed"}, 4, "crashed in B"),
        ({"status": "skipped", "stats": None, "reason": "no such runtime"}, 4, "not run in B"),
        (None, 4, "missing from B"),
    ],
)
def test_fail_on_regression_fails_when_b_loses_a_cell_a_measured(
    tmp_path: Path, change: dict[str, Any] | None, code: int, words: str
) -> None:
    """A gate must not pass a candidate that computes wrong answers, crashes, or lost cells,
    even though its remaining cells are as fast as A's (without the gate: exit 0, as before)."""
    a, b = _run_with(tmp_path, "a"), _with_b_cell(tmp_path, "b", change)
    assert invoke("compare", a, b).exit_code == 0
    r = invoke("compare", a, b, "--fail-on-regression")
    assert r.exit_code == code, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0] and "/b1" in errors[0], r.stderr
    doc = json.loads(invoke("compare", a, b, "--fail-on-regression", "--json").stdout)
    assert len(doc["lost_in_b"]) == 1 and doc["lost_in_b"][0]["batch"] == 1


def test_a_results_file_of_a_later_schema_is_named_as_such(tmp_path: Path) -> None:
    # It said "not an alexbench results file", which sends the reader looking for another file.
    data = valid() | {"schema": "alexbench-results/3"}
    path = tmp_path / "later.json"
    path.write_text(json.dumps(data))
    line = one_error_line(invoke("report", path))
    assert "results schema alexbench-results/3, from another alexbench version" in line
    assert "reads alexbench-results/1 and alexbench-results/2" in line
    path.write_text(json.dumps(data | {"schema": "something-else/1"}))
    line = one_error_line(invoke("report", path))
    assert "not an alexbench results file (schema something-else/1" in line


def test_what_bench_writes_for_a_wrong_file_or_an_older_tiny_cell_loads(tmp_path: Path) -> None:
    import numpy as np

    from alexbench.bench.stats import compute_stats

    data = valid()
    # bench fails a cell whose file is the wrong one (or whose output batch is wrong) beside
    # outputs that matched: status parity_failed, parity.passed true. It was refused as edited.
    _ok(data)["status"] = "parity_failed"
    _ok(data)["reason"] = "the onnx-int8 file holds no quantized operators"
    # A cell of 3 calls from before stats.repeats: its CI was stored as [fastest, slowest].
    tiny = next(c for c in data["cells"] if c["status"] == "ok")
    lat = tiny["latencies_ns"][:3]
    stats = compute_stats(np.asarray(lat), tiny["batch"], sum(lat)).to_dict()
    stats |= {"p50_ci_low_ms": min(lat) / 1e6, "p50_ci_high_ms": max(lat) / 1e6}
    del stats["repeats"], stats["batch"]
    tiny |= {"latencies_ns": lat, "stats": stats, "repeats": None, "roofline": None}
    path = tmp_path / "bench-wrote-it.json"
    path.write_text(json.dumps(data))
    loaded = load_results(path)
    assert [c["status"] for c in loaded["cells"]][:2] == ["parity_failed", "ok"]
