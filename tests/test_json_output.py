"""`--json` on bench, verify, evaluate, compare and info: one JSON document on stdout and nothing
else, the same figures as the table (drawn on stderr in that mode), the same exit codes."""

import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from alexbench.cli import app
from alexbench.cli.common import dumps_json, jsonable

from .conftest import SMALL_CLASSES, SMALL_SIZE

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
XEON = REPO / "results" / "xeon-2c"
RUN_A = XEON / "20261126-185047_vm_cpu.json"  # --repeat 3: 12 ok cells, 4 skipped
RUN_B = XEON / "20261126-185344_vm_cpu.json"  # --repeat 1: eager and onnxruntime only
FAST = ["--min-time", "0.02", "--min-iters", "3", "--warmup", "1", "--device", "cpu"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def document(result) -> dict | list:
    """The JSON on stdout, checking that stdout holds that document and nothing else."""
    out = result.stdout
    assert out.endswith("\n") and out.lstrip()[:1] in "{[", out[:500]
    return json.loads(out)  # fails on anything before or after the document


@pytest.fixture(scope="module")
def corrupt_artifacts(small_artifacts, tmp_path_factory):
    """The session's exports with the ONNX weights scaled: onnxruntime then fails parity."""
    dst = tmp_path_factory.mktemp("json") / "exports"
    shutil.copytree(small_artifacts, dst)
    model = onnx.load(str(dst / "alexnet.onnx"))
    init = next(t for t in model.graph.initializer if len(t.dims) == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.1, init.name))
    onnx.save(model, str(dst / "alexnet.onnx"))
    return dst


# ---------------------------------------------------------------- the conversion itself


class _Colour(StrEnum):
    RED = "red"


@dataclass
class _Point:
    colour: _Colour
    where: Path
    values: np.ndarray


def test_jsonable_gives_valid_json_for_nan_enums_numpy_and_dataclasses():
    doc = {
        "nan": float("nan"),
        "inf": [math.inf, -math.inf, 1.5],
        "np": np.float32(0.25),
        "int": np.int64(3),
        _Colour.RED: _Point(_Colour.RED, Path("a/b"), np.array([1.0, np.nan])),
        ("cpu", 1): True,
    }
    back = json.loads(dumps_json(doc))
    assert back["nan"] is None and back["inf"] == [None, None, 1.5]
    assert back["np"] == 0.25 and back["int"] == 3
    assert back["red"] == {"colour": "red", "where": "a/b", "values": [1.0, None]}
    assert back['["cpu", 1]'] is True
    assert jsonable(torch.tensor([1.0, 2.0])) == [1.0, 2.0]


def test_files_are_strict_json_as_stdout_is(tmp_path: Path) -> None:
    """Results, reports and manifests go through write_json: a failed parity's infinite error
    is null there, as on --json's stdout, so strict parsers (JavaScript, jq, Go) read them."""
    from alexbench.fileio import write_json
    from alexbench.parity import compare

    failed = compare(np.zeros((2, 10)), np.zeros((2, 4)))
    doc = {"parity": failed.to_dict(), "wall_throughput": float("nan")}
    write_json(tmp_path / "r.json", doc)
    text = (tmp_path / "r.json").read_text()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    back = json.loads(text, parse_constant=refuse)
    assert back["parity"]["max_abs_err"] is None and back["wall_throughput"] is None
    assert back["parity"]["passed"] is False and "shape" in back["parity"]["reason"]
    assert text == dumps_json(doc) + "\n"


# ---------------------------------------------------------------- info and compare


def test_info_json():
    r = invoke("info", "--json")
    assert r.exit_code == 0, r.output
    doc = document(r)
    assert doc["versions"]["torch"] == torch.__version__ and "cpu" in doc["devices"]
    assert r.stderr == ""


def _table_row(text: str, backend: str, precision: str, batch: int) -> str:
    """The table line of one cell (columns: backend, device, precision, batch, ...)."""
    for line in text.splitlines():
        cols = [c.strip() for c in line.replace("┃", "│").split("│")]
        if cols[1:5] == [backend, "cpu", precision, str(batch)]:
            return line
    raise AssertionError(f"no row for {backend}/{precision}/b{batch} in:\n{text}")


def test_compare_json_carries_the_tables_figures():
    table = invoke("compare", RUN_A, RUN_B, "--wide")
    r = invoke("compare", RUN_A, RUN_B, "--json", "--wide")
    assert r.exit_code == table.exit_code == 0, r.output
    doc = document(r)
    assert doc["threshold"] == 0.05 and doc["a"] == str(RUN_A) and doc["b"] == str(RUN_B)
    assert isinstance(doc["warnings"], list)
    assert len(doc["cells"]) == 6  # (eager fp32, eager bf16, onnxruntime fp32) x batch 1, 16
    for c in doc["cells"]:
        row = _table_row(table.stdout, c["backend"], c["precision"], c["batch"])
        assert f"{c['ratio']:.3f}x" in row and f"{c['a_p50_ms']:.2f}" in row
        assert f"{c['b_p50_ms']:.2f}" in row and c["verdict"] in row
        assert f"[{c['ci_low']:.3f}, {c['ci_high']:.3f}]" in row
        assert f"{c['a_repeats']}/{c['b_repeats']}" in row
        assert c["weak"] is True  # B has one repeat
        assert c["ratio"] == pytest.approx(c["a_p50_ms"] / c["b_p50_ms"])
    # torchscript and pt2 ran in A only, int8 in B only: listed as the table lists them
    only_a = {(k["backend"], k["precision"], k["batch"]) for k in doc["only_in_a"]}
    assert ("torchscript", "fp32", 1) in only_a
    assert {k["precision"] for k in doc["only_in_b"]} == {"int8"}
    for side in ("a", "b"):
        assert f"only in {side.upper()} ({len(doc[f'only_in_{side}'])})" in table.stdout
    # In --json mode the table is drawn on stderr, with the same figures.
    assert f"{doc['cells'][0]['ratio']:.3f}x" in r.stderr


def _slowed(src: Path, dst: Path, factor: float) -> Path:
    """A copy of a repeated run in which every repeat took `factor` times as long."""
    data = json.loads(src.read_text())
    for cell in data["cells"]:
        for rep in cell.get("repeats") or []:
            rep["p50_ms"] *= factor
            rep["throughput"] /= factor
        if cell.get("stats"):
            stats = cell["stats"]
            for k in [k for k in stats if k.endswith("_ms") and stats[k] is not None]:
                stats[k] *= factor
            stats["throughput"] /= factor
        cell["latencies_ns"] = [int(v * factor) for v in cell["latencies_ns"]]
        if roof := cell.get("roofline"):  # the share of the bound follows the p50
            roof["pct_of_ceiling"] = round(roof["pct_of_ceiling"] / factor, 1)
    dst.write_text(json.dumps(data))
    return dst


def test_compare_json_keeps_the_regression_exit_code(tmp_path):
    slow = _slowed(RUN_A, tmp_path / "slow.json", 1.3)
    plain = invoke("compare", RUN_A, slow, "--fail-on-regression")
    r = invoke("compare", RUN_A, slow, "--fail-on-regression", "--json")
    assert plain.exit_code == r.exit_code == 1
    assert "regressed" in r.stderr and "regressed" in plain.stderr
    doc = document(r)
    assert doc["exit_code"] == 1 and "regressed" in doc["gate_failures"][0]
    assert doc["regressions"] == len(doc["cells"]) == 12
    assert {c["verdict"] for c in doc["cells"]} == {"slower"}
    assert all(not c["weak"] and c["ratio"] == pytest.approx(1 / 1.3) for c in doc["cells"])


def test_errors_stay_one_line_on_stderr_with_nothing_on_stdout(tmp_path):
    r = invoke("compare", tmp_path / "missing.json", RUN_A, "--json")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_json_through_a_real_pipe_is_the_only_stdout():
    """A separate process with stdout a pipe: also what is written below Python goes to stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "alexbench", "compare", str(RUN_A), str(RUN_B), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["cells"]) == 6 and "compare: B=" in proc.stderr


# ---------------------------------------------------------------- bench and verify


def test_bench_json_is_the_saved_results_and_the_tables_figures(small_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", small_artifacts, "--out", tmp_path, "--batch", "1,2",
        "--backend", "eager,onnxruntime", "--precision", "fp32,bf16", "--json", "--wide", *FAST,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = document(r)
    (saved,) = tmp_path.glob("*.json")
    assert doc == json.loads(saved.read_text())
    assert "Results: " in r.stderr and "Results: " not in r.stdout
    ok = [c for c in doc["cells"] if c["status"] == "ok"]
    assert len(ok) == 6 and len(doc["cells"]) == 8  # onnxruntime has no bf16
    for c in ok:  # the table (on stderr here) shows the document's medians
        assert f"{c['stats']['p50_ms']:.2f}" in r.stderr


def test_bench_json_keeps_exit_1_on_a_parity_failure(corrupt_artifacts, tmp_path):
    r = invoke(
        "bench", "--artifacts", corrupt_artifacts, "--out", tmp_path, "--batch", "2",
        "--backend", "onnxruntime", "--precision", "fp32", "--json", *FAST,
    )  # fmt: skip
    assert r.exit_code == 1, r.output
    (cell,) = document(r)["cells"]
    assert cell["status"] == "parity_failed" and cell["parity"]["passed"] is False
    assert "failed parity" in r.stderr


def test_verify_json_is_the_report_and_the_tables_figures(corrupt_artifacts, tmp_path):
    args = ["verify", "--artifacts", corrupt_artifacts, "--batch", 2, "--device", "cpu"]
    args += ["--backend", "eager,onnxruntime", "--precision", "fp32,bf16"]
    plain = invoke(*args, "--out", tmp_path / "plain.json")
    r = invoke(*args, "--out", tmp_path / "r.json", "--json", "--wide")
    assert plain.exit_code == r.exit_code == 1, r.output  # onnxruntime fails parity
    doc = document(r)
    assert doc == json.loads((tmp_path / "r.json").read_text())
    assert doc["schema"] == "alexbench-verify/1" and doc["passed"] is False
    assert doc["model"]["meta"]["num_classes"] == SMALL_CLASSES
    cells = {(c["backend"], c["precision"]): c for c in doc["cells"]}
    assert cells["onnxruntime", "fp32"]["status"] == "FAIL"
    assert cells["onnxruntime", "bf16"]["status"] == "unsupported"
    assert cells["onnxruntime", "bf16"]["message"]
    eager = cells["eager", "fp32"]
    assert eager["status"] == "PASS" and [b["batch"] for b in eager["dynamic_batch"]] == [1, 2]
    for c in doc["cells"]:
        if c["parity"]:
            assert f"{c['parity']['max_abs_err']:.2e}" in r.stderr
    assert "FAIL" in r.stderr and "FAIL" not in r.stdout.replace('"FAIL"', "")


# ---------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def plain_weights(small_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "small.pth"
    torch.save(small_model.model.state_dict(), path)
    return path


def _evaluate(weights: Path, tmp_path: Path, *extra):
    return invoke(
        "evaluate", "--weights", weights, "--image-size", SMALL_SIZE, "--normalize", "none",
        "--dataset", "synthetic", "--synthetic-size", 40, "--backend", "eager",
        "--artifacts", tmp_path / "exports", *extra,
    )  # fmt: skip


def test_evaluate_json_is_the_out_file_and_the_tables_figures(plain_weights, tmp_path):
    r = _evaluate(plain_weights, tmp_path, "--json", "--wide", "--out", tmp_path / "e.json")
    assert r.exit_code == 0, r.output
    doc = document(r)
    assert doc == json.loads((tmp_path / "e.json").read_text())
    assert doc["schema"] == "alexbench-evaluate/1"
    assert doc["samples"] == sum(map(sum, doc["confusion"])) > 0
    assert doc["model"]["meta"]["num_classes"] == SMALL_CLASSES
    (cell,) = doc["cells"]
    assert cell["backend"] == "eager" and cell["status"] == "ok"
    assert f"{100 * cell['top1']:.2f}%" in r.stderr and "Data: " in r.stderr


def test_evaluate_without_json_prints_no_document(plain_weights, tmp_path):
    r = _evaluate(plain_weights, tmp_path)
    assert r.exit_code == 0, r.output
    assert "Per-class accuracy" in r.stdout and not r.stdout.lstrip().startswith("{")


@pytest.mark.parametrize("where", ["directory", "parent is a file"])
def test_evaluate_out_is_checked_before_the_model_loads(plain_weights, tmp_path, where):
    (tmp_path / "file").write_text("")
    out = tmp_path if where == "directory" else tmp_path / "file" / "e.json"
    r = _evaluate(plain_weights, tmp_path, "--out", out, "--json")
    assert r.exit_code == 2 and r.stdout == ""
    err = r.stderr.strip()
    assert err.startswith("error: --out ") and "\n" not in err
    assert not (tmp_path / "exports").exists()  # nothing was loaded or exported
