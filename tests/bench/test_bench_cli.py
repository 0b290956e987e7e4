"""`alexbench bench`, `report` and `compare` end to end on the small model (short runs)."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from typer.testing import CliRunner

from alexbench.cli import app
from alexbench.results import CSV_COLUMNS, RESULTS_JSON_SCHEMA

runner = CliRunner()
ROOT_RESULTS = Path(__file__).resolve().parents[2] / "results" / "xeon-2c"
SHORT = ["--min-time", "0.05", "--min-iters", "3", "--warmup", "1"]
# Row counts below assume one device: with a GPU the default is every device.
FAST = [*SHORT, "--device", "cpu"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def bench_run(small_artifacts, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", results, "--batch", "1,3",
        "--backend", "eager,onnxruntime,torchscript", "--precision", "fp32,bf16", *FAST,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return r, results


def test_results_json_validates_against_the_schema(bench_run):
    # Imported here: the GPU machine's image has no jsonschema, and a module-level import would
    # stop pytest from collecting this file's cuda tests there (benchmarks/gpu_check.sh).
    jsonschema = pytest.importorskip("jsonschema")
    (json_path,) = bench_run[1].glob("*.json")
    jsonschema.validate(json.loads(json_path.read_text()), RESULTS_JSON_SCHEMA)


def test_the_schema_names_every_backend_device_and_precision_and_takes_the_committed_runs():
    from alexbench.devices import Device
    from alexbench.precision import Precision
    from alexbench.runtimes import Backend

    props = RESULTS_JSON_SCHEMA["properties"]["cells"]["items"]["properties"]
    for key, enum in (("backend", Backend), ("device", Device), ("precision", Precision)):
        assert props[key]["enum"] == [m.value for m in enum], key
    jsonschema = pytest.importorskip("jsonschema")
    committed = Path(__file__).parents[2] / "results" / "xeon-2c"
    for path in sorted(committed.glob("2026*.json")):
        data = json.loads(path.read_text())
        if data["schema"] == RESULTS_JSON_SCHEMA["properties"]["schema"]["const"]:
            jsonschema.validate(data, RESULTS_JSON_SCHEMA)


def test_results_json_and_csv_agree_and_csv_opens_in_pandas(bench_run):
    r, results = bench_run
    (json_path,) = results.glob("*.json")
    (csv_path,) = results.glob("*.csv")
    assert json_path.stem == csv_path.stem and "_cpu" in json_path.stem
    data = json.loads(json_path.read_text())
    df = pd.read_csv(csv_path)
    assert list(df.columns) == CSV_COLUMNS
    assert len(df) == 3 * 2 * 2  # every cell listed, skipped ones included
    ok = df[df.status == "ok"]
    assert set(ok.backend) == {"eager", "onnxruntime", "torchscript"}
    skipped = df[df.status == "skipped"]
    assert set(zip(skipped.backend, skipped.precision, strict=True)) == {("onnxruntime", "bf16")}
    # Every printed statistic traces back to the raw latencies stored in the JSON.
    for cell in data["cells"]:
        if cell["status"] != "ok":
            continue
        lat = np.array(cell["latencies_ns"]) / 1e6
        assert cell["stats"]["p50_ms"] == pytest.approx(np.median(lat))
        assert cell["stats"]["throughput"] == pytest.approx(cell["batch"] / np.median(lat) * 1e3)
        assert cell["parity"]["passed"] and cell["cold_start"]["first_inference_ms"] > 0
        # Memory above the pre-load baseline: the session's own copy of the weights is in it
        # (57 M parameters: >= 100 MB in fp32 or bf16), the process's torch and bundle are not.
        mem = cell["memory"]
        assert mem["scope"] == "process RSS" and cell["roofline"]["gflops"] > 0
        assert 50e6 < mem["resident_bytes"] < 1.5e9 and mem["peak_bytes"] >= 0
    # Session creation is the first batch's cold start only; later batch sizes do not repeat it.
    ok = [c for c in data["cells"] if c["status"] == "ok"]
    firsts = [c for c in ok if c["batch"] == 1]
    assert all(c["cold_start"]["session_create_s"] is not None for c in firsts)
    assert all(c["cold_start"]["session_create_s"] is None for c in ok if c["batch"] == 3)
    assert data["environment"]["cpu"]["model"] and data["model"]["artifacts"]["onnx"]
    assert data["complete"] is True and data["interrupted"] is None
    assert "load_average_1m_after" in data["environment"]
    assert isinstance(data["environment"]["others_cpu_cores"], float)  # sampled at the start
    assert "images/s" in r.stdout and "skipped" in r.stdout


def test_report_and_compare_render_saved_runs(bench_run):
    _, results = bench_run
    (path,) = results.glob("*.json")
    r = invoke("report", path)
    assert r.exit_code == 0 and "onnxruntime" in r.stdout
    r = invoke("compare", path, path)
    assert r.exit_code == 0 and "1.000x" in r.stdout and "within noise" in r.stdout


def test_parity_failure_is_reported_and_exits_1(corrupt_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", corrupt_artifacts, "--out", tmp_path / "res",
        "--backend", "onnxruntime", "--batch", "2", "--precision", "fp32", *FAST,
    )  # fmt: skip
    assert r.exit_code == 1
    assert "failed parity" in r.stderr and "FAIL" in r.stdout
    (json_path,) = (tmp_path / "res").glob("*.json")
    (cell,) = json.loads(json_path.read_text())["cells"]
    assert cell["status"] == "parity_failed"
    # The JSON keeps the figures beside the status; the CSV, which a spreadsheet averages
    # column by column, leaves the speed of a wrong answer empty (an outside audit).
    assert cell["stats"]["throughput"] > 0
    (row,) = pd.read_csv(json_path.with_suffix(".csv")).to_dict("records")
    assert row["status"] == "parity_failed" and row["max_abs_err"] > 0
    for column in ("throughput", "wall_throughput", "p50_ms", "p99_ms", "gflops", "pct_of_ceiling"):
        assert pd.isna(row[column]), column


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "--batch: 0 is below the minimum of 1"),
        (["--batch", "-4"], "--batch: -4 is below the minimum of 1"),
        (["--batch", "1,x"], "'x' is not an integer"),
        (["--batch", "1_0"], "'1_0' is not an integer"),  # int() read it as 10
        (["--batch", "\u0661"], "is not an integer"),  # an Arabic-Indic 1
        (["--backend", "tensorflow"], "unknown backend 'tensorflow'"),
        (["--precision", "fp64"], "unknown value 'fp64'"),
        (["--threads", "0"], "--threads must be 1 to"),
    ],
)
def test_bad_inputs_are_one_line_errors(args, message, tmp_path):
    r = invoke("bench", "--out", tmp_path, "--artifacts", tmp_path / "e", *args)
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {r.stderr.strip()[7:]}" and message in r.stderr
    assert "\n" not in r.stderr.strip() and not (tmp_path / "e").exists()


def test_unwritable_results_dir(tmp_path):
    (tmp_path / "file").write_text("")
    r = invoke("bench", "--out", tmp_path / "file" / "sub", "--artifacts", tmp_path / "e")
    assert r.exit_code == 2 and "is not a directory" in r.stderr and "\n" not in r.stderr.strip()


@pytest.mark.cuda
@pytest.mark.parametrize("flag", [None, "--cuda-graphs", "--include-transfers"])
def test_cuda_bench_cells_follow_the_timing_contract(small_artifacts, tmp_path, flag):
    import onnxruntime

    extra = [flag] if flag else []
    # An ONNX Runtime without its CUDA provider (the CPU build) runs no cuda cell: named, it
    # would exit 4 (a backend asked for and measured nowhere).
    backends = "eager,torchscript,pt2"
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        backends += ",onnxruntime"
    r = invoke("bench", "--device", "cuda", "--artifacts", small_artifacts, "--out",
               tmp_path, "--batch", "2", "--backend", backends,
               "--precision", "fp32", *SHORT, *extra)  # fmt: skip
    assert r.exit_code == 0, r.output
    (path,) = tmp_path.glob("*.json")
    cells = json.loads(path.read_text())["cells"]
    ok = {c["backend"]: c for c in cells if c["status"] == "ok"}
    assert {"eager", "torchscript", "pt2"} <= set(ok), [(c["backend"], c["reason"]) for c in cells]
    for c in ok.values():
        session = c["session"]
        if flag == "--cuda-graphs" and c["backend"] != "onnxruntime":
            assert session["cuda_graphs"] is True
        if flag == "--cuda-graphs" and c["backend"] == "onnxruntime":
            assert session["cuda_graphs"] is False and session["cuda_graphs_not_applied"]
        if flag == "--include-transfers":
            assert session["include_transfers"] is True
        if c["device_time"] is not None:  # kernels on torch's stream: events bracket them
            # A part of the latency, from another loop: noise at a fraction of a millisecond
            # (transfers and ORT cells come close to it) gets 20% and 20 us of slack.
            assert 0 < c["device_time"]["p50_ms"] <= c["stats"]["p50_ms"] * 1.2 + 0.02
        assert c["stats"]["wall_throughput"] > 0
    assert ok["eager"]["device_time"] is not None


def test_error_cells_and_empty_sweeps_exit_4(small_artifacts, tmp_path):
    broken = tmp_path / "exports"
    shutil.copytree(small_artifacts, broken)
    onnx_path = broken / "alexnet.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:1000])  # truncated: ORT cannot load it
    r = invoke(
        "bench", "--artifacts", broken, "--out", tmp_path / "res", "--backend",
        "eager,onnxruntime", "--batch", "1", "--precision", "fp32", *FAST,
    )  # fmt: skip
    assert r.exit_code == 4, r.output
    assert "failed to run" in r.stderr and "ERROR" in r.stdout
    (json_path,) = (tmp_path / "res").glob("*.json")
    status = {c["backend"]: c["status"] for c in json.loads(json_path.read_text())["cells"]}
    assert status == {"eager": "ok", "onnxruntime": "error"}
    # Every requested cell unsupported: an empty table is not a success.
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path / "res2",
        "--backend", "onnxruntime", "--precision", "bf16", "--batch", "1", *FAST,
    )  # fmt: skip
    assert r.exit_code == 4 and "nothing was measured" in r.stderr


def test_repeat_keeps_each_repeat_and_centres_the_median_on_them(small_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--backend", "eager",
        "--precision", "fp32", "--batch", "1,2", "--repeat", "3", *FAST,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (json_path,) = tmp_path.glob("*.json")
    data = json.loads(json_path.read_text())
    assert data["settings"]["repeat"] == 3 and len(data["cells"]) == 2
    for cell in data["cells"]:
        reps = cell["repeats"]
        assert len(reps) == 3
        assert sum(rep["iterations"] for rep in reps) == len(cell["latencies_ns"])
        first = np.array(cell["latencies_ns"][: reps[0]["iterations"]]) / 1e6
        assert reps[0]["p50_ms"] == pytest.approx(np.median(first))
        # the cell's median and CI are the repeats' (geometric mean, t interval), not the pool's
        medians = np.array([rep["p50_ms"] for rep in reps])
        stats = cell["stats"]
        assert stats["p50_ms"] == pytest.approx(np.exp(np.log(medians).mean()))
        assert stats["p50_ci_low_ms"] <= stats["p50_ms"] <= stats["p50_ci_high_ms"]
        assert stats["repeats"] == 3 and stats["iterations"] == len(cell["latencies_ns"])
        assert stats["p90_ms"] == pytest.approx(np.percentile(cell["latencies_ns"], 90) / 1e6)


def _bench_subprocess(artifacts, results, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "alexbench", "bench", "--artifacts", str(artifacts),
         "--out", str(results), "--backend", "eager", "--precision", "fp32",
         "--batch", "1,2,3,4,5,6,7,8", "--min-time", "0.3", "--min-iters", "3", "--warmup", "1",
         "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_during_the_sweep_keeps_finished_cells(small_artifacts, tmp_path, sig, code):
    import signal

    results = tmp_path / "res"
    proc = _bench_subprocess(small_artifacts, results, tmp_path)
    seen = []
    for line in proc.stderr:  # one line per finished cell when stderr is not a terminal
        seen.append(line)
        if sum(line.startswith("[") for line in seen) >= 2:
            break
    proc.send_signal(getattr(signal, sig))
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == code, stderr
    assert f"interrupted by {sig}" in stderr and "saved" in stderr
    assert "Traceback" not in stderr
    (json_path,) = results.glob("*.json")
    data = json.loads(json_path.read_text())
    assert data["complete"] is False and data["interrupted"] == sig
    assert 2 <= len(data["cells"]) < 8
    assert all(c["status"] == "ok" and c["latencies_ns"] for c in data["cells"])
    assert list(results.glob("*.csv")) and not list(results.glob(".*tmp*"))
    r = invoke("report", json_path)  # a saved incomplete run is still readable, and says so
    assert r.exit_code == 0 and "incomplete" in r.stdout


def test_cuda_flags_on_cpu_are_recorded_as_not_applied(small_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--backend",
        "eager,onnxruntime", "--precision", "fp32", "--batch", "1", "--cuda-graphs",
        "--include-transfers", "--compile-mode", "max-autotune", "--threads", "1", *FAST,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (path,) = tmp_path.glob("*.json")
    data = json.loads(path.read_text())
    # The threads the cells ran with, not torch's count before they set it (it said 2).
    assert data["environment"]["torch_threads"] == 1
    threads = {"eager": "torch_threads", "onnxruntime": "intra_op_num_threads"}
    assert all(c["session"][threads[c["backend"]]] == 1 for c in data["cells"])
    assert data["settings"]["options"]["cuda_graphs"] is True  # what was asked ...
    for cell in data["cells"]:  # ... and, per cell, what was done
        session = cell["session"]
        assert session["cuda_graphs"] is False and session["include_transfers"] is False
        assert session["cuda_graphs_not_applied"] and session["include_transfers_not_applied"]
        assert session["compile_mode_not_applied"] and "cudnn_benchmark" not in session
        assert cell["device_time"] is None and cell["timing_method"] == "host clock"


def test_compile_records_cuda_graphs_on_cpu_as_not_applied(small_bundle):
    from alexbench.devices import Device
    from alexbench.precision import Precision
    from alexbench.runtimes import Backend, SessionOptions, get_runtime
    from alexbench.runtimes.base import CompileMode

    opts = SessionOptions(cuda_graphs=True, compile_mode=CompileMode.MAX_AUTOTUNE)
    session = get_runtime(Backend.COMPILE).load(small_bundle, Device.CPU, Precision.FP32, opts)
    try:  # read before the first call: nothing is compiled yet
        info = session.info()
    finally:
        session.close()
    assert info["cuda_graphs"] is False and info["cuda_graphs_not_applied"]
    assert "compile_mode_not_applied" not in info  # its mode applies: the CPU form of it
    assert info["compile_mode"] == "max-autotune-no-cudagraphs"


def test_a_crash_outside_any_cell_still_saves_the_finished_cells(
    small_artifacts, tmp_path, monkeypatch
):
    import alexbench.cli.bench as bench_cli

    real = bench_cli.iter_sweep
    crash_at = [1]

    def crashing_after_one_cell(*args, **kwargs):  # the real sweep, then a fault between cells
        for i, cell in enumerate(real(*args, **kwargs)):
            if i == crash_at[0]:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            yield cell

    monkeypatch.setattr(bench_cli, "iter_sweep", crashing_after_one_cell)
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--backend", "eager",
        "--precision", "fp32", "--batch", "1,2,3", *FAST,
    )  # fmt: skip
    assert r.exit_code == 3, r.output
    assert "the sweep failed (RuntimeError: CUDA error" in r.stderr and "saved" in r.stderr
    (path,) = tmp_path.glob("*.json")
    data = json.loads(path.read_text())
    assert data["complete"] is False and data["interrupted"].startswith("aborted: RuntimeError")
    assert [c["batch"] for c in data["cells"]] == [1] and data["cells"][0]["status"] == "ok"
    # --debug: the traceback first, then the same line and the same exit code.
    r = invoke(
        "--debug", "bench", "--artifacts", small_artifacts, "--out", tmp_path / "d",
        "--backend", "eager", "--precision", "fp32", "--batch", "1,2,3", *FAST,
    )  # fmt: skip
    assert r.exit_code == 3 and "Traceback" in r.stderr and "the sweep failed" in r.stderr
    crash_at[0] = 0  # before any cell: an empty run would have become the newest run
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path / "none", "--backend",
        "eager", "--precision", "fp32", "--batch", "1", *FAST,
    )  # fmt: skip
    assert r.exit_code == 3 and "before any cell finished: nothing saved" in r.stderr
    assert not (tmp_path / "none").exists()


def test_two_runs_in_the_same_second_keep_both_files(tmp_path):
    from alexbench.results import load_results, write_results

    run = load_results(sorted(ROOT_RESULTS.glob("2026*.json"))[0])
    first, second = write_results(tmp_path, run), write_results(tmp_path, run)
    assert first[0] != second[0] and second[0].name.endswith("-2.json")
    assert load_results(first[0]) == load_results(second[0]) == run
    # A name whose CSV is taken is not free: an orphan CSV is never overwritten, and a folder
    # by that name (IsADirectoryError after the JSON was written) is passed over too.
    stem = first[0].stem
    first[0].unlink()
    third = write_results(tmp_path, run)
    assert third[0].name == f"{stem}-3.json" and (tmp_path / f"{stem}.csv").is_file()
    (tmp_path / f"{stem}-4.csv").mkdir()  # free by the JSON's name only
    (tmp_path / f"{stem}-4.csv" / "x").write_text("x")
    assert write_results(tmp_path, run)[0].name == f"{stem}-5.json"
    assert not (tmp_path / f"{stem}-4.json").exists()


def test_a_csv_that_cannot_be_written_takes_its_json_with_it(tmp_path, monkeypatch):
    # The JSON stayed without its CSV: half a run in the folder, while bench said not saved.
    from alexbench import results

    run = results.load_results(sorted(ROOT_RESULTS.glob("2026*.json"))[0])

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results, "write_text", full_disk)  # the CSV's write, after the JSON's
    with pytest.raises(OSError, match="No space left"):
        results.write_results(tmp_path / "out", run)
    assert not (tmp_path / "out").exists()


def test_results_record_the_hashes_of_the_files_that_ran(small_artifacts, tmp_path):
    # The results file copied the manifest's sha256 for every format in the folder: an ONNX file
    # edited since export (run as it is, with a warning) was recorded as the exported one, and
    # an eager-only run recorded a folder's hashes though it loaded nothing from it.
    from alexbench.checkpoint import file_sha256

    art = tmp_path / "art"
    shutil.copytree(small_artifacts, art)
    model = onnx.load(str(art / "alexnet.onnx"))
    model.doc_string = "edited after export"  # other bytes, the same computation
    onnx.save(model, str(art / "alexnet.onnx"))
    short = ["--min-time", "0.05", "--min-iters", "3", "--warmup", "1", "--batch", "1",
             "--precision", "fp32", "--device", "cpu", "--artifacts", art]  # fmt: skip
    r = invoke("bench", *short, "--backend", "eager,onnxruntime", "--results-dir", tmp_path / "a")
    assert r.exit_code == 0, r.output
    assert "differs from the sha256 in its manifest" in r.stderr
    (path,) = (tmp_path / "a").glob("*.json")
    doc = json.loads(path.read_text())["model"]
    manifest = json.loads((art / "manifest.json").read_text())["artifacts"]
    assert doc["artifacts"] == {"onnx": file_sha256(art / "alexnet.onnx")}
    assert doc["artifacts"]["onnx"] != manifest["onnx"]["sha256"]
    assert doc["artifacts_dir"] == str(art.resolve())
    r = invoke("bench", *short, "--backend", "eager", "--results-dir", tmp_path / "b")
    assert r.exit_code == 0, r.output
    (path,) = (tmp_path / "b").glob("*.json")
    doc = json.loads(path.read_text())["model"]
    assert doc["artifacts"] == {} and doc["artifacts_dir"] is None


def test_results_that_cannot_be_written_are_one_error_and_leave_no_folder(tmp_path):
    # A full disk (here: a 4 KiB file-size limit, RLIMIT_FSIZE) was "unexpected OSError", exit 3,
    # and left the results folder it had made, empty.
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "res" / "deeper"
    args = ["bench", "--backend", "eager", "--batch", "1", "--precision", "fp32", "--device",
            "cpu", "--min-time", "0.05", "--min-iters", "3", "--warmup", "1", "--image-size",
            "64", "--num-classes", "10", "--results-dir", str(out)]  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "alexbench", *args], capture_output=True,
                       text=True, preexec_fn=limit, cwd=tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert errors == [
        f"error: cannot save the results in {out}: File too large: the 1 cell(s) above are not "
        "saved"
    ], r.stderr
    assert "Traceback" not in r.stderr and "p50" in r.stdout  # the figures are still shown
    assert not (tmp_path / "res").exists()
    # The run's `git status` wrote no index lock into the checkout (a cut-short write left one).
    assert not (Path(__file__).resolve().parents[2] / ".git" / "index.lock").exists()


def test_a_machine_busy_during_the_sweep_is_warned_and_recorded(
    small_artifacts, tmp_path, monkeypatch
):
    """Other processes' CPU use was sampled only as the sweep started: a job that began during
    it slowed every later cell unsaid. Now their average over the sweep is recorded and warned."""
    from alexbench.cli import bench as bench_cli

    spans = []
    monkeypatch.setattr(bench_cli, "others_cpu_since", lambda mark: spans.append(mark) or 1.5)
    monkeypatch.setattr("alexbench.environment.usable_cores", lambda: 2)
    args = ["bench", "--artifacts", small_artifacts, "--backend", "eager", "--precision", "fp32",
            "--batch", "1", *FAST]  # fmt: skip
    r = invoke(*args, "--out", tmp_path / "busy")
    assert r.exit_code == 0, r.output
    assert spans and spans[0] is not None  # measured from a mark taken before the sweep
    said = " ".join(r.stderr.split())
    assert "other processes used 1.5 of 2 cores on average during the sweep" in said
    (path,) = (tmp_path / "busy").glob("*.json")
    assert json.loads(path.read_text())["environment"]["others_cpu_cores_during"] == 1.5
    monkeypatch.setattr(bench_cli, "others_cpu_since", lambda mark: 0.2)  # quiet
    r = invoke(*args, "--out", tmp_path / "quiet")
    assert r.exit_code == 0 and "on average during" not in r.stderr


def test_the_report_s_environment_table_shows_others_cpu_at_start_and_during(tmp_path):
    from alexbench.pages import environment_table
    from alexbench.results import Run

    data = {"environment": {"others_cpu_cores": 0.04, "others_cpu_cores_during": 1.234}}
    rows = {r[0].text: r[1].text for r in environment_table(Run("r", tmp_path, data)).rows}
    assert rows["other processes' CPU"] == "0.0 cores at start, 1.23 cores on average during"
    rows = {r[0].text: r[1].text for r in environment_table(Run("r", tmp_path, {})).rows}
    assert rows["other processes' CPU"] == "- at start, - on average during"  # older files
