"""`alexbench results`: the stored runs, one row each, from the committed reference results."""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alexbench.cli import app
from alexbench.runs import list_runs, short_cpu_name

runner = CliRunner()
XEON = Path(__file__).resolve().parents[1] / "results" / "xeon-2c"
RUNS = sorted(p.name for p in XEON.glob("2026*_vm_cpu.json"))


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """The committed runs (newest first by name, so sorting must use the date), an interrupted
    copy, and JSON files that are not results: a training history, an evaluate report, junk."""
    root = tmp_path / "results"
    (root / "xeon" / "deeper").mkdir(parents=True)
    for i, name in enumerate(RUNS):
        dst = root / "xeon" / (f"z{i}.json" if i % 2 else f"deeper/a{i}.json")
        shutil.copy(XEON / name, dst)
    data = json.loads((XEON / RUNS[0]).read_text())
    # dated after every committed run, so it sorts last whatever runs are committed later
    data |= {"complete": False, "interrupted": "SIGINT", "created": "2030-01-01T09:00:00+00:00"}
    data["cells"] = data["cells"][:3]
    (root / "partial.json").write_text(json.dumps(data))
    (root / "history.json").write_text(json.dumps({"epochs": []}))
    (root / "evaluate.json").write_text(json.dumps({"schema": "alexbench-evaluate/1"}))
    (root / "broken.json").write_text("{not json")
    (root / "run.csv").write_text("backend,device\n")  # not JSON: not even looked at
    return root


def test_list_runs_summarises_the_committed_results(runs_dir: Path) -> None:
    listing = list_runs([runs_dir])
    assert len(listing.runs) == len(RUNS) + 1
    dates = [r.created for r in listing.runs]
    assert dates == sorted(dates) and dates[-1] == datetime(2030, 1, 1, 9, tzinfo=UTC)
    first = listing.runs[0]
    assert first.created == datetime(2026, 11, 26, 18, 50, 47, tzinfo=UTC)
    assert (first.host, first.devices, first.cpu, first.gpu) == ("vm", ["cpu"], "Intel Xeon", None)
    assert (first.torch, first.onnxruntime) == ("2.14.1+cu130", "1.31.1")
    assert first.model == "seeded 0, 1000 classes, 224 px"
    assert (first.cells_ok, first.cells_total, first.repeat) == (12, 16, 3)
    assert first.statuses == {"ok": 12, "skipped": 4} and first.complete
    assert first.file == "xeon/deeper/a0.json"  # relative to the folder searched
    last = listing.runs[-1]
    assert not last.complete and last.interrupted == "SIGINT" and last.cells_total == 3
    skipped = {s.path.name: s.why for s in listing.skipped}
    assert set(skipped) == {"history.json", "evaluate.json", "broken.json"}
    assert skipped["evaluate.json"] == "schema alexbench-evaluate/1"
    assert skipped["broken.json"] == "not valid JSON"


def test_a_broken_results_file_is_skipped_as_report_skips_it(runs_dir: Path) -> None:
    """A file with the results schema but a structure `report` and `compare` refuse (here a
    cell without its batch) is skipped with the same reason, not listed as a run."""
    data = json.loads((XEON / RUNS[0]).read_text())
    del data["cells"][0]["batch"]
    (runs_dir / "nobatch.json").write_text(json.dumps(data))
    listing = list_runs([runs_dir])
    assert len(listing.runs) == len(RUNS) + 1
    skipped = {s.path.name: s.why for s in listing.skipped}
    assert skipped["nobatch.json"] == "not a valid results file (cells[0].batch is missing)"
    r = invoke("results", runs_dir / "nobatch.json")
    assert r.exit_code == 2 and "cells[0].batch is missing" in r.stderr


def test_results_table_lists_every_run(runs_dir: Path) -> None:
    r = invoke("results", runs_dir, "--wide")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stdout.splitlines() if ".json" in line]
    assert len(lines) == len(RUNS) + 1
    assert "2026-11-26 18:50" in lines[0] and "12/16" in lines[0] and "complete x3" in lines[0]
    assert "incomplete" in lines[-1] and "3/3" in lines[-1]
    assert "seeded 0, 1000 classes, 224 px" in lines[0] and "2.14.1+cu130" in lines[0]
    assert "Intel Xeon" in lines[0] and "1.31.1" in lines[0]
    # Non-results files are a note on stderr, not an error.
    assert "skipped 3 JSON file(s)" in r.stderr and "broken.json" in r.stderr
    assert "error" not in r.stderr


def test_results_json(runs_dir: Path) -> None:
    r = invoke("results", runs_dir / "xeon", runs_dir / "history.json", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [d["created"][:16] for d in doc] == sorted(d["created"][:16] for d in doc)
    assert len(doc) == len(RUNS) and all(d["complete"] for d in doc)
    assert doc[0]["cells_ok"] == 12 and doc[0]["cells_total"] == 16
    assert doc[0]["model"] == "seeded 0, 1000 classes, 224 px" and doc[0]["gpu"] is None
    assert "skipped 1 JSON file(s)" in r.stderr  # the history file given by name


def test_results_default_folder_is_results(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(runs_dir.parent)
    r = invoke("results", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == len(RUNS) + 1


NO_RESULTS = {
    "empty folder": ["empty"],
    "only other JSON": ["other"],
    "missing path": ["nowhere"],
    "no ./results": [],
}


@pytest.mark.parametrize("case", list(NO_RESULTS))
def test_no_results_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "h.json").write_text("[]")
    r = invoke("results", *NO_RESULTS[case], "--json")
    assert r.exit_code == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    if case == "only other JSON":  # what was skipped is in the error, not a note before it
        told = "no readable results files; skipped 1 JSON file(s) that are not runs to list: "
        assert told + "other/h.json" in r.stderr


def test_a_broken_file_given_alone_is_one_error_saying_why(tmp_path: Path) -> None:
    # A note "skipped 1 JSON file(s)" came first, then "no alexbench results files".
    broken = tmp_path / "BROKEN.json"
    broken.write_text('{"schema": "alexbench-results/2",')
    r = invoke("results", broken)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"error: {broken}: not a benchmark results file (not valid JSON)\n"
    edited = json.loads((XEON / RUNS[0]).read_text())  # a results file, but not a valid one
    edited["cells"][0]["stats"]["p50_ms"] *= 1.5
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    r = invoke("results", tmp_path / "edited.json")
    assert r.exit_code == 2 and r.stderr.startswith(
        f"error: {tmp_path / 'edited.json'}: not a valid results file (cells[0].stats.throughput"
    ), r.stderr
    r = invoke("results", tmp_path)  # a folder of such files: no "run bench first"
    assert r.exit_code == 2 and "no readable results files; skipped 2 JSON file(s)" in r.stderr
    assert "run `alexbench bench` first" not in r.stderr
    deep = tmp_path / "deep.json"  # RecursionError: exit 3 with "internal error"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for args in (["results", deep], ["report", deep], ["compare", deep, deep]):
        r = invoke(*args)
        assert r.exit_code == 2 and r.stdout == "", (args, r.output)
        assert len(r.stderr.strip().splitlines()) == 1 and "nested too deeply" in r.stderr


def test_short_cpu_names() -> None:
    assert short_cpu_name("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz") == (
        "Intel Xeon Platinum 8480+"
    )
    assert short_cpu_name("AMD EPYC 7763 64-Core Processor") == "AMD EPYC 7763 64-Core"
    assert short_cpu_name("") is None


def test_runs_on_cpus_under_one_generic_name_are_listed_apart(tmp_path: Path) -> None:
    for name, cpu_id in (("zen4", "family 25 model 17"), ("zen5", "family 26 model 2")):
        data = json.loads((XEON / RUNS[0]).read_text())
        data["environment"]["cpu"] |= {"model": "AMD EPYC", "id": f"AuthenticAMD {cpu_id}"}
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    cpus = sorted(r.cpu for r in list_runs([tmp_path]).runs)
    assert cpus == ["AMD EPYC (family 25 model 17)", "AMD EPYC (family 26 model 2)"]


def test_links_that_lead_nowhere_and_fifos_named_json_are_passed_over(tmp_path: Path) -> None:
    import os

    root = tmp_path / "odd"
    root.mkdir()
    shutil.copy(XEON / RUNS[0], root / "run.json")
    (root / "loop.json").symlink_to("loop.json")  # Path.resolve raised RuntimeError on it
    os.mkfifo(root / "pipe.json")  # reading it blocked report forever
    for command in ("results", "report"):
        r = invoke(command, root)
        assert r.exit_code == 0 and RUNS[0][:8] in r.output.replace("-", ""), r.output
        r = invoke(command, root / "loop.json")
        assert r.exit_code == 2 and "a link that leads to no file" in r.stderr, r.output
        r = invoke(command, root / "pipe.json")
        assert r.exit_code == 2 and "not a regular file" in r.stderr, r.output
    r = invoke("compare", root / "run.json", root / "pipe.json")  # compare reads files itself
    assert r.exit_code == 2 and "not a regular file" in r.stderr, r.output


def test_runs_are_sorted_by_their_time_and_shown_in_utc(tmp_path: Path) -> None:
    """`created` was sorted as text and shown with its offset under "date (UTC)": 01:00+05:00
    (20:00 UTC the day before) came after 21:00 UTC and was shown as 01:00."""
    from alexbench.results import collect_runs

    data = json.loads((XEON / RUNS[0]).read_text())
    (tmp_path / "east.json").write_text(json.dumps(data | {"created": "2026-11-27T01:00:00+05:00"}))
    (tmp_path / "west.json").write_text(json.dumps(data | {"created": "2026-11-26T21:00:00Z"}))
    runs, _ = collect_runs([tmp_path])
    assert [r.name for r in runs] == ["east", "west"]
    listing = list_runs([tmp_path])
    assert [r.file for r in listing.runs] == ["east.json", "west.json"]
    assert listing.runs[0].created == datetime(2026, 11, 26, 20, tzinfo=UTC)
    r = invoke("results", tmp_path, "--wide")
    assert r.exit_code == 0, r.output
    east = next(line for line in r.stdout.splitlines() if "east.json" in line)
    assert "2026-11-26 20:00" in east and "2026-11-27" not in east
    r = invoke("report", tmp_path / "east.json")
    assert r.exit_code == 0, r.output
    assert "east.json: 2026-11-26 20:00:00 UTC, host vm" in r.stdout
