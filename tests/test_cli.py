"""CLI through typer's CliRunner: exit codes, one-line errors, tables, reports."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from alexbench.checkpoint import file_sha256
from alexbench.cli import app

from .conftest import SMALL_CLASSES, SMALL_SIZE

runner = CliRunner()
SMALL = ["--num-classes", str(SMALL_CLASSES), "--image-size", str(SMALL_SIZE)]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    return err


@pytest.fixture(scope="module")
def artifacts_copy(small_artifacts, tmp_path_factory):
    """A private copy of the session's exports, so that tests here may corrupt it."""
    dst = tmp_path_factory.mktemp("cli") / "exports"
    shutil.copytree(small_artifacts, dst)
    return dst


def test_verify_passes_prints_table_and_writes_report(artifacts_copy):
    r = invoke("verify", "--artifacts", artifacts_copy, "--batch", 4)
    assert r.exit_code == 0, r.output
    for name in ("eager", "torchscript", "pt2", "onnxruntime", "PASS", "Tolerances"):
        assert name in r.stdout
    report = json.loads((artifacts_copy / "verify-report.json").read_text())
    assert report["passed"] is True and report["schema"] == "alexbench-verify/1"
    cells = {(c["backend"], c["device"], c["precision"]): c for c in report["cells"]}
    assert cells[("onnxruntime", "cpu", "fp32")]["status"] == "PASS"
    assert [b["batch"] for b in cells[("pt2", "cpu", "fp32")]["dynamic_batch"]] == [1, 2, 3, 4]
    assert report["model"]["meta"]["num_classes"] == SMALL_CLASSES  # taken from the manifest


def test_unsupported_cells_are_listed_with_reasons(artifacts_copy, tmp_path):
    out = tmp_path / "r.json"
    r = invoke(
        "verify", "--artifacts", artifacts_copy, "--batch", 2, "--precision", "fp32,bf16,int8",
        "--backend", "eager,torchscript,onnxruntime", "--out", out,
    )  # fmt: skip
    # No int8 file and no --calib-data: int8, asked for, is checked nowhere: not a pass.
    assert r.exit_code == 4, r.output
    assert "error: nothing was verified at --precision int8, though asked for" in r.stderr
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and doc["asked_not_verified"] == ["--precision int8"]
    cells = {(c["backend"], c["precision"]): c for c in doc["cells"]}
    assert cells[("eager", "bf16")]["status"] == "PASS"
    assert cells[("torchscript", "bf16")]["status"] == "PASS"  # traced from the cast model
    assert cells[("onnxruntime", "bf16")]["status"] == "unsupported"
    assert "no bf16 ONNX variant" in cells[("onnxruntime", "bf16")]["message"]
    assert "unsupported" in r.stdout


def test_corrupted_onnx_weights_make_verify_exit_1(artifacts_copy, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(artifacts_copy, corrupt)
    model = onnx.load(str(corrupt / "alexnet.onnx"))
    init = max(model.graph.initializer, key=lambda t: len(t.dims) == 4 and np.prod(t.dims))
    w = numpy_helper.to_array(init).copy()
    w *= 1.05  # a plausible-looking file with altered weights, not a truncated one
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(corrupt / "alexnet.onnx"))
    r = invoke("verify", "--artifacts", corrupt, "--batch", 4, "--backend", "eager,onnxruntime")
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.stdout and "differs from the sha256" in r.stderr
    report = json.loads((corrupt / "verify-report.json").read_text())
    assert report["passed"] is False
    # the report names the bytes it checked, which the manifest no longer does
    manifest = json.loads((corrupt / "manifest.json").read_text())
    checked = report["artifact_sha256"]["onnx"]
    assert (
        checked == file_sha256(corrupt / "alexnet.onnx") != manifest["artifacts"]["onnx"]["sha256"]
    )


def test_wrong_onnx_metadata_fails_verify_though_the_numbers_match(artifacts_copy, tmp_path):
    # A consumer without the manifest normalises by the file's metadata_props: ImageNet's
    # mean/std in a file of a model normalised otherwise passed verify.
    edited = tmp_path / "meta"
    shutil.copytree(artifacts_copy, edited)
    model = onnx.load(str(edited / "alexnet.onnx"))
    props = {p.key: p for p in model.metadata_props}
    right = props["alexbench.mean"].value
    props["alexbench.mean"].value = "[0.1, 0.2, 0.3]"
    model.metadata_props.remove(props["alexbench.std"])  # a consumer would fall back to a default
    onnx.save(model, str(edited / "alexnet.onnx"))
    r = invoke("verify", "--artifacts", edited, "--batch", 2, "--backend", "onnxruntime")
    assert r.exit_code == 1, r.output
    report = json.loads((edited / "verify-report.json").read_text())
    (cell,) = report["cells"]
    assert cell["status"] == "FAIL" and cell["parity"]["passed"]  # the numbers were right
    assert "metadata_props alexbench.mean differ from the model" in cell["message"]
    assert "metadata_props alexbench.std missing" in cell["message"]
    assert right in cell["message"]


def _with_torch_metadata(src: Path, dst: Path, change: dict) -> None:
    """A copy of a torch zip file whose alexbench.json entry has `change` applied."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/extra/alexbench.json"):
                data = json.dumps(json.loads(data) | change).encode()
            zout.writestr(info, data)


@pytest.mark.parametrize(("name", "backend"), [
    ("alexnet.pt", "torchscript"), ("alexnet.pt2", "pt2"), ("alexnet.onnx", "openvino"),
])  # fmt: skip
def test_a_files_metadata_is_checked_whichever_runtime_runs_it(
    artifacts_copy, tmp_path, name, backend
):
    """An outside audit: only ONNX Runtime's session read the metadata, so OpenVINO passed the
    ONNX file ONNX Runtime failed, and no torch file's alexbench.json was checked."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    edited = tmp_path / "meta"
    shutil.copytree(artifacts_copy, edited)
    wrong = {"alexbench.mean": "[0.1, 0.2, 0.3]"}  # not this model's
    if name.endswith(".onnx"):
        model = onnx.load(str(edited / name))
        next(p for p in model.metadata_props if p.key == "alexbench.mean").value = wrong[
            "alexbench.mean"
        ]
        onnx.save(model, str(edited / name))
    else:
        (edited / name).unlink()
        _with_torch_metadata(artifacts_copy / name, edited / name, wrong)
    r = invoke("verify", "--artifacts", edited, "--batch", 2, "--backend", backend)
    assert r.exit_code == 1, r.output
    (cell,) = json.loads((edited / "verify-report.json").read_text())["cells"]
    assert cell["status"] == "FAIL" and cell["parity"]["passed"], cell  # the numbers were right
    what = "metadata_props" if name.endswith(".onnx") else "metadata (alexbench.json)"
    assert f"{what} alexbench.mean differ from the model" in cell["message"]


def test_a_file_that_is_not_its_precision_or_says_the_wrong_preprocessing_fails_everywhere(
    small_model, artifacts_copy, tmp_path
):
    # Parity passes within the variant's tolerance: an fp32 file in the int8 slot (a copy, a
    # swap) was verified and timed as int8, and bench quoted a file with wrong metadata_props.
    from alexbench.artifacts import ArtifactFormat
    from alexbench.bench.sweep import BenchSpec, CellStatus, run_sweep
    from alexbench.bench.timer import RunLength
    from alexbench.devices import Device
    from alexbench.inputs import random_inputs
    from alexbench.precision import Precision
    from alexbench.runtimes import Backend, ModelBundle
    from alexbench.verify import Status, reference_logits, run_cell

    edited = tmp_path / "alexnet.onnx"
    model = onnx.load(str(artifacts_copy / "alexnet.onnx"))
    props = {p.key: p for p in model.metadata_props}
    props["alexbench.mean"].value = "[0.5, 0.5, 0.5]"
    onnx.save(model, str(edited))
    fp32 = artifacts_copy / "alexnet.onnx"
    bundle = ModelBundle(small_model, {ArtifactFormat.ONNX: edited, ArtifactFormat.ONNX_INT8: fp32})
    inputs = random_inputs(2, SMALL_SIZE, seed=0)
    reference = reference_logits(bundle, inputs)
    int8 = run_cell(bundle, Backend.ONNXRUNTIME, Device.CPU, Precision.INT8, inputs, reference)
    assert int8.status is Status.FAIL and int8.parity.passed, int8.message
    assert "the int8 file is not an int8 model: 0% of its weight values are INT8/UINT8" in (
        int8.message
    )
    assert int8.session_info["onnx_weight_values"]["FLOAT"] > 0
    short = RunLength(warmup=1, min_seconds=0.0, min_iters=3, max_iters=3)
    spec = BenchSpec(
        [Backend.ONNXRUNTIME], [Device.CPU], [Precision.FP32, Precision.INT8], [1], short
    )
    fp32_cell, int8_cell = run_sweep(bundle, spec, {Device.CPU: None})
    assert fp32_cell.status is CellStatus.PARITY_FAILED and fp32_cell.parity.passed
    assert "metadata_props alexbench.mean differ from the model" in fp32_cell.reason
    assert int8_cell.status is CellStatus.PARITY_FAILED
    assert "not an int8 model" in int8_cell.reason


def test_verify_exit_codes_for_crashed_and_empty_runs(artifacts_copy, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(artifacts_copy, broken)
    (broken / "alexnet.onnx").write_bytes((broken / "alexnet.onnx").read_bytes()[:1000])
    r = invoke("verify", "--artifacts", broken, "--batch", 2, "--backend", "eager,onnxruntime")
    assert r.exit_code == 4, r.output
    assert "ERROR" in r.stdout and "a cell failed to run" in r.stderr
    assert "INCOMPLETE: report written" in r.stdout  # the verdict says what the exit code says
    r = invoke("verify", "--artifacts", artifacts_copy, "--batch", 2, "--backend", "onnxruntime",
               "--precision", "bf16", "--out", tmp_path / "r.json")  # fmt: skip
    assert r.exit_code == 4 and "nothing was verified" in r.stderr
    assert "INCOMPLETE: report written" in r.stdout and "FAIL" not in r.stdout


def test_only_values_named_on_the_command_line_must_be_measured():
    """`unmeasured_asked`: a value given with the option that no cell has is a gap; the same
    value as the option's default is not (it asked for nothing in particular)."""
    import typer

    from alexbench.cli.common import unmeasured_asked
    from alexbench.precision import Precision
    from alexbench.runtimes import Backend

    class Ran:
        backend, precision = Backend.EAGER, Precision.FP32

    seen: list[list[str]] = []
    tiny = typer.Typer()

    @tiny.command()
    def go(ctx: typer.Context, precision: str = "fp32,int8", backend: str = "eager") -> None:
        asked = {
            "precision": [Precision(p) for p in precision.split(",")],
            "backend": [Backend(b) for b in backend.split(",")],
        }
        seen.append(unmeasured_asked(ctx, asked, [Ran()]))

    runner = CliRunner()
    assert runner.invoke(tiny, []).exit_code == 0
    assert (
        runner.invoke(tiny, ["--precision", "fp32,int8", "--backend", "eager,pt2"]).exit_code == 0
    )
    assert runner.invoke(tiny, ["--precision", "fp32"]).exit_code == 0
    assert seen == [[], ["--precision int8", "--backend pt2"], []]


def test_verify_warns_of_changed_files_no_cell_checks(artifacts_copy, tmp_path):
    """An fp16 or int8 file replaced by another model's, not asked for, was not mentioned and
    the folder's report said PASS (an outside audit): a warning, and the report names it."""
    folder = tmp_path / "changed"
    shutil.copytree(artifacts_copy, folder)
    (folder / "alexnet.pt").write_bytes(b"another model's bytes")
    (folder / "alexnet.pt2").unlink()
    r = invoke("verify", "--artifacts", folder, "--batch", 2, "--backend", "eager,onnxruntime")
    assert r.exit_code == 0, r.output  # what was asked for passed
    said = " ".join(r.stderr.split())
    assert (
        f"warning: {folder / 'alexnet.pt'} differs from the sha256 in its manifest; no cell" in said
    )
    assert f"warning: {folder / 'alexnet.pt2'} is gone; no cell here checks it" in said
    report = json.loads((folder / "verify-report.json").read_text())
    assert report["unchecked_changed"] == {
        "alexnet.pt": "differs from the sha256 in its manifest", "alexnet.pt2": "is gone",
    }  # fmt: skip
    r = invoke("verify", "--artifacts", artifacts_copy, "--batch", 2, "--backend", "onnxruntime")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output
    assert (
        json.loads((artifacts_copy / "verify-report.json").read_text())["unchecked_changed"] == {}
    )


def test_export_then_reuse(tmp_path):
    out = tmp_path / "e"
    r = invoke("export", "--out", out, "--format", "onnx", *SMALL)
    assert r.exit_code == 0, r.output
    assert "exported" in r.stdout and (out / "alexnet.onnx").is_file()
    r = invoke("export", "--out", out, "--format", "onnx", *SMALL)
    assert r.exit_code == 0 and "reused" in r.stdout


def test_verify_on_real_images(artifacts_copy, cifar_subset):
    r = invoke("verify", "--artifacts", artifacts_copy, "--batch", 6, "--data-dir", cifar_subset,
               "--backend", "eager,onnxruntime")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "images from" in r.stdout
    assert "warning" not in r.stderr  # enough readable images: nothing to say


def test_a_folder_short_of_readable_images_is_warned_about(artifacts_copy, cifar_subset, tmp_path):
    # Calibration on 30 images repeated to 256, or 3 unreadable files skipped, was recorded in
    # the manifest only; export said nothing.
    few = tmp_path / "few"
    few.mkdir()
    for src in sorted(cifar_subset.rglob("*.jpg"))[:2]:
        shutil.copy(src, few / src.name)
    (few / "broken.jpg").write_bytes(b"not a jpeg")
    r = invoke("verify", "--artifacts", artifacts_copy, "--batch", 4, "--data-dir", few,
               "--backend", "eager")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (
        f"warning: --data-dir {few}: 1 unreadable file(s) skipped; 2 image(s) repeated to make "
        "the 4 asked for"
    ) in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--batch", "0"], "--batch"),
        (["verify", "--backend", "tensorrt"], "unknown backend 'tensorrt'"),
        (["verify", "--precision", "fp8"], "unknown value 'fp8'"),
        (["verify", "--device", "tpu"], "unknown value 'tpu'"),
        (["verify", "--threads", "0"], "--threads must be 1 to"),
        (["export", "--image-size", "32"], "below the minimum of 64"),
        (["export", "--checkpoint", "missing.pt"], "missing.pt: no such file"),
        (["export", "--format", "tflite"], "unknown value 'tflite'"),
        (["verify", "--data-dir", "/nonexistent/dir"], "--data-dir /nonexistent/dir: no such"),
    ],
)
def test_bad_inputs_give_one_line_errors(args, message, tmp_path):
    r = invoke(*args, "--artifacts" if args[0] == "verify" else "--out", tmp_path / "x")
    if r.exit_code == 2 and not r.stderr.startswith("error: "):
        assert message in r.output  # typer's own usage error (e.g. --batch min=1)
        return
    err = one_line_error(r)
    assert message in err
    assert not list((tmp_path / "x").glob("*.onnx")) if (tmp_path / "x").exists() else True


def test_corrupt_weights_file_is_one_line_error(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"garbage" * 100)
    err = one_line_error(invoke("export", "--weights", bad, "--out", tmp_path / "o"))
    assert "w.pth: not a PyTorch checkpoint" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_request_without_gpu_is_one_line_error(tmp_path):
    err = one_line_error(invoke("verify", "--device", "cuda", "--artifacts", tmp_path))
    assert "cuda is not available" in err


def test_info_and_help():
    r = invoke("info", "--json")
    assert r.exit_code == 0
    info = json.loads(r.stdout)
    assert info["versions"]["torch"] == torch.__version__ and "cpu" in info["devices"]
    for cmd in ("export", "verify", "info"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.stdout


def test_debug_shows_traceback(tmp_path):
    r = runner.invoke(app, ["--debug", "export", "--checkpoint", str(tmp_path / "nope.pt")])
    # The traceback, then the same line and the same exit code as without --debug (a CI gate
    # must not read a bad input as exit 1, a parity failure).
    assert r.exit_code == 2 and "Traceback" in r.stderr and "CheckpointError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    # Where users put it after reading "rerun with --debug": after the command, the same.
    r = runner.invoke(app, ["export", "--checkpoint", str(tmp_path / "nope.pt"), "--debug"])
    assert r.exit_code == 2 and "CheckpointError" in r.stderr
    r = runner.invoke(app, ["export", "--checkpoint", str(tmp_path / "nope.pt")])
    assert r.exit_code == 2  # and the next run without it is one line again
    assert "no such file" in r.stderr and "Traceback" not in r.output
    # Click's own usage errors too: it drew its multi-line box, with no `error:` line.
    for args in (["--debug", "export", "--seed", "-1"], ["info", "--bogus", "--debug"],
                 ["--debug", "nosuchcmd"], ["--debug", "--bogus"]):  # fmt: skip
        r = runner.invoke(app, args)
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and "Traceback" in r.stderr and "╭" not in r.output, r.output
        assert lines[-1].startswith("error: ") and "--help" in lines[-1]
    r = runner.invoke(app, ["nosuchcmd"])  # and it does not outlive its run
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.parametrize("module", ["rich", "torch"])
def test_ctrl_c_while_the_commands_import_is_one_line(tmp_path, module):
    # The entry point imports the CLI (rich), then the command's module (torch), before any
    # command's error handling exists; a Ctrl-C there (seconds on a cold start) must still be
    # one line and 130. A finder that raises on the import stands in for the keypress, so the
    # test does not race a real signal.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Keypress:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Keypress())\n"
        "sys.argv = ['alexbench', 'info']\n"
        "from alexbench.__main__ import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 130 and proc.stderr == "error: interrupted\n", proc.stderr


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
)
def test_out_of_memory_is_one_line_about_the_sizes(error, capsys):
    import typer

    from alexbench.cli.common import handle_errors

    @handle_errors
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and "--batch" in err and err.count("\n") == 1


def test_the_command_list_shows_each_commands_own_first_help_line():
    # `alexbench --help` lists the commands without importing them (COMMANDS' summaries); each
    # summary must stay what the command itself says, and every command must be listed.
    import typer

    from alexbench.cli import COMMANDS

    group = typer.main.get_command(app)
    ctx = group.make_context("alexbench", ["--debug"])
    for name, entry in COMMANDS.items():
        command = group.get_command(ctx, name)
        assert command.callback.__module__ == f"alexbench.cli.{entry.module}"
        first = " ".join((command.help or "").split("\n\n")[0].split())
        assert first == entry.summary, name
    listing = " ".join(CliRunner().invoke(app, ["--help"]).stdout.split())
    assert all(f"{n} " in listing for n in COMMANDS)
    assert "Show saved benchmark runs as tables, or write a report to share." in listing


def test_a_mistyped_command_names_the_near_ones_and_no_command_shows_the_help():
    r = CliRunner().invoke(app, ["repor"])
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        "error: No such command 'repor'. Did you mean 'report', 'export'? (see 'alexbench --help')"
    )
    r = CliRunner().invoke(app, [])
    assert r.exit_code == 2 and "Commands" in r.stdout and "compare" in r.stdout
    assert r.stderr == ""  # the help alone: no empty "error:" line after it


def test_commands_that_only_read_results_start_without_torch(tmp_path):
    # report, results, compare and --help read JSON and draw tables: importing torch (and
    # torchvision) for them cost 4-5 s at every start. A fresh process shows what is imported.
    import subprocess
    import sys
    from pathlib import Path

    runs = Path(__file__).resolve().parents[1] / "results" / "xeon-2c"
    a, b = runs / "20261126-185047_vm_cpu.json", runs / "20261126-185344_vm_cpu.json"
    cases = {
        "help": (["--help"], 0),
        "results": (["results", str(runs)], 0),
        "report": (["report", str(a)], 0),
        "compare": (["compare", str(a), str(b)], None),  # its verdict sets the exit code
        "report-help": (["report", "--help"], 0),
    }
    for name, (args, code) in cases.items():
        script = (
            "import sys\n"
            f"sys.argv = ['alexbench', *{args!r}]\n"
            "from alexbench.__main__ import main\n"
            "try:\n"
            "    main()\n"
            "except SystemExit as e:\n"
            "    sys.stderr.write(f'exit={e.code}\\n')\n"
            "heavy = sorted({'torch', 'torchvision', 'onnxruntime'} & set(sys.modules))\n"
            "sys.stderr.write(f'heavy={heavy}\\n')\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
            cwd=tmp_path,
        )  # fmt: skip
        assert "heavy=[]" in proc.stderr, (name, proc.stderr[-2000:])
        if code is not None:
            assert f"exit={code}" in proc.stderr or "exit=None" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr


def test_an_int8_file_its_manifest_lists_but_that_is_gone_is_an_error(artifacts_copy, tmp_path):
    """It was "unsupported: int8 needs real images to calibrate" beside a PASS (exit 0)."""
    folder = tmp_path / "lost"
    shutil.copytree(artifacts_copy, folder)
    doc = json.loads((folder / "manifest.json").read_text())
    lost = dict(doc["artifacts"]["onnx"], format="onnx-int8", path="alexnet.int8.onnx")
    doc["artifacts"]["onnx-int8"] = lost
    (folder / "manifest.json").write_text(json.dumps(doc))
    r = invoke(
        "verify", "--artifacts", folder, "--batch", 2, "-b", "onnxruntime", "-p", "fp32,int8"
    )
    err = one_line_error(r)
    assert "lists onnx-int8, but its file alexnet.int8.onnx is gone: give --calib-data" in err
    # bench (and tune, evaluate) time the other cells, and say why int8 was not run.
    r = invoke("bench", "--artifacts", folder, "--batch", 1, "-b", "onnxruntime", "-p", "fp32,int8",
               "--min-time", 0, "--min-iters", 3, "--warmup", 1, "--json",
               "--out", tmp_path / "r.json")  # fmt: skip
    assert r.exit_code == 4, r.output  # int8 was asked for and measured nowhere
    cells = {c["precision"]: c for c in json.loads(r.stdout)["cells"]}
    assert cells["fp32"]["status"] == "ok" and cells["int8"]["status"] == "skipped"
    assert "alexnet.int8.onnx is gone" in cells["int8"]["reason"]


@pytest.mark.parametrize(("name", "fmt", "backend"), [
    ("alexnet.onnx", "onnx", "onnxruntime"), ("alexnet.pt", "torchscript", "torchscript"),
])  # fmt: skip
def test_any_file_its_manifest_lists_but_that_is_gone_is_a_verify_error(
    artifacts_copy, tmp_path, name, fmt, backend
):
    """An outside audit: verify exported a listed fp32 file that was gone and passed the new
    one (after a killed export too), where a missing int8 file is an error."""
    folder = tmp_path / "lost"
    shutil.copytree(artifacts_copy, folder)
    (folder / "verify-report.json").write_text('{"passed": true}')  # an earlier run's
    (folder / name).unlink()
    r = invoke("verify", "--artifacts", folder, "--batch", 2, "-b", backend, "-p", "fp32")
    err = one_line_error(r)
    assert f"lists {fmt}, but its file {name} is gone: export it again" in err
    assert not (folder / name).exists()  # not made again behind the user's back
    # The earlier "passed" no longer speaks for the folder (a script read it after the error)
    assert not (folder / "verify-report.json").exists()
    # bench makes what it times: the file is exported again there
    short = ["--min-time", 0, "--min-iters", 3, "--warmup", 1]
    r = invoke("bench", "--artifacts", folder, "--batch", 1, "-b", backend, "-p", "fp32", *short,
               "--out", tmp_path / "r")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (folder / name).is_file()


def test_an_onnx_file_stripped_of_its_metadata_fails_verify(artifacts_copy, tmp_path):
    """A file with no alexbench props at all was taken for one older than them, and passed."""
    edited = tmp_path / "bare"
    shutil.copytree(artifacts_copy, edited)
    model = onnx.load(str(edited / "alexnet.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(edited / "alexnet.onnx"))
    r = invoke("verify", "--artifacts", edited, "--batch", 2, "--backend", "onnxruntime")
    assert r.exit_code == 1, r.output
    (cell,) = json.loads((edited / "verify-report.json").read_text())["cells"]
    assert cell["status"] == "FAIL" and "metadata_props missing (stripped" in cell["message"]


def test_verify_says_when_its_images_include_int8_s_calibration_images(
    artifacts_copy, tmp_path, cifar_subset
):
    """verify draws from the far end of the order calibration drew from: no overlap while both
    counts fit in the folder. They did not (30 images, 16 + 20 drawn), and --seed changed
    verify's order (not calibration's): int8 was checked on its own calibration images."""
    folder = tmp_path / "int8"
    shutil.copytree(artifacts_copy, folder)
    args = ["verify", "--artifacts", folder, "-b", "onnxruntime", "-p", "int8"]
    args += ["--calib-data", cifar_subset, "--calib-samples", 16, "--data-dir", cifar_subset]
    r = invoke(*args, "--batch", 20)
    assert r.exit_code in (0, 1), r.output
    record = json.loads((folder / "manifest.json").read_text())["artifacts"]["onnx-int8"]
    assert record["calibration_images"] == 16
    assert record["calibration_dir"] == str(cifar_subset)
    said = " ".join(r.stderr.split())
    assert "6 of the 20 images checked are among the 16 onnx-int8 was calibrated on" in said
    # The verify report and bench's results say what int8 was calibrated on (two int8 files of
    # one model calibrated on other images are other models).
    report = json.loads((folder / "verify-report.json").read_text())
    assert report["int8_calibration"] == {"onnx-int8": record["calibration"]}
    assert str(cifar_subset) in record["calibration"]
    r = invoke("bench", "--artifacts", folder, "--batch", 1, "-b", "onnxruntime", "-p", "int8",
               "--min-time", 0, "--min-iters", 3, "--warmup", 1, "--json",
               "--out", tmp_path / "r")  # fmt: skip
    assert r.exit_code == 0, r.output
    model = json.loads(r.stdout)["model"]
    assert model["int8_calibration"] == {"onnx-int8": record["calibration"]}
    r = invoke(*args, "--batch", 14)  # 16 + 14 = 30: none shared
    assert "calibrated on" not in " ".join(r.stderr.split())
    # Folders that nest are drawn in unrelated orders: counted by file.
    nested = [*args[:-1], cifar_subset.parent]  # --data-dir: the folder holding train/
    r = invoke(*nested, "--batch", 30)  # every image of it
    said = " ".join(r.stderr.split())
    assert "16 of the 30 images checked are among the 16 onnx-int8 was calibrated on" in said


def test_export_keeps_the_folders_opset_unless_told(tmp_path):
    """An outside audit: `export --format onnx-fp16` into a folder exported with --opset 20 (the
    command verify suggests) made its ONNX file again at opset 18, with no word."""
    out = tmp_path / "o20"
    r = invoke("export", "--out", out, "--format", "onnx", "--opset", 20, *SMALL)
    assert r.exit_code == 0, r.output
    r = invoke("export", "--out", out, "--format", "onnx-fp16", *SMALL)
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"]["onnx"]["opset"] == 20
    assert manifest["artifacts"]["onnx-fp16"]["opset"] == 20
    assert onnx.load(str(out / "alexnet.onnx")).opset_import[0].version == 20
    r = invoke("export", "--out", out, "--format", "onnx", "--opset", 18, *SMALL)  # told: made anew
    assert r.exit_code == 0, r.output
    assert json.loads((out / "manifest.json").read_text())["artifacts"]["onnx"]["opset"] == 18


def test_verify_checks_int8_on_its_calibration_folder_not_noise(
    artifacts_copy, tmp_path, cifar_subset
):
    """An outside audit: a correct int8 file failed verify (exit 1) on the default N(0,1) inputs,
    which a static int8 model clips, and passed on real images."""
    folder = tmp_path / "int8"
    shutil.copytree(artifacts_copy, folder)
    args = ["verify", "--artifacts", folder, "-b", "onnxruntime", "-p", "fp32,int8", "--batch", 8]
    r = invoke(*args, "--calib-data", cifar_subset, "--calib-samples", 16)
    assert r.exit_code in (0, 1), r.output
    said = " ".join(r.stderr.split())
    assert f"every cell is checked on 8 images from {cifar_subset}" in said, said
    report = json.loads((folder / "verify-report.json").read_text())
    assert report["inputs"]["kind"] == "images", report["inputs"]
    r = invoke(*args)  # later, without --calib-data: the folder the manifest records
    assert "the folder int8 was calibrated in" in " ".join(r.stderr.split()), r.output
    doc = json.loads((folder / "manifest.json").read_text())
    doc["artifacts"]["onnx-int8"]["calibration_dir"] = str(tmp_path / "gone")
    (folder / "manifest.json").write_text(json.dumps(doc))
    r = invoke(*args)  # that folder is not here: the noise, said
    assert "warning: int8 checked on random N(0,1) inputs" in " ".join(r.stderr.split())
    r = invoke(*args[:-4], "-p", "fp32", "--batch", 8)  # no int8 asked: noise, no word
    assert r.exit_code == 0 and "int8" not in r.stderr, r.output
    r = invoke("verify", "--artifacts", artifacts_copy, "-b", "onnxruntime", "-p", "fp32,int8")
    assert "random N(0,1)" not in r.stderr, r.output  # no int8 file here: nothing to warn of


@pytest.mark.parametrize("removed", [False, True])
def test_a_file_replaced_while_verify_runs_is_not_reported_as_checked(
    artifacts_copy, tmp_path, monkeypatch, removed
):
    """An outside audit swapped alexnet.onnx for another model's mid-run: the report said
    passed beside the sha256 of the bytes no cell had loaded (hashed after the cells ran)."""
    import alexbench.cli.verify as verify_cli

    folder = tmp_path / "swap"
    shutil.copytree(artifacts_copy, folder)
    (folder / "verify-report.json").unlink(missing_ok=True)  # an earlier test's
    real = verify_cli.run_verify

    def run_then_swap(*args, **kwargs):
        result = real(*args, **kwargs)
        if removed:  # a concurrent `export --force` of another model removes it: exit 3 was
            (folder / "alexnet.onnx").unlink()
            return result
        model = onnx.load(str(folder / "alexnet.onnx"))
        model.producer_version += "-other"  # other bytes, as a concurrent export writes
        onnx.save(model, str(folder / "alexnet.onnx"))
        return result

    monkeypatch.setattr(verify_cli, "run_verify", run_then_swap)
    r = invoke("verify", "--artifacts", folder, "--batch", 2, "-b", "onnxruntime")
    assert r.exit_code == 4, r.output
    assert "error: onnx changed on disk while verify ran" in " ".join(r.stderr.split())
    assert not (folder / "verify-report.json").exists()


def test_export_takes_each_onnx_setting_from_the_folder_only_where_not_given(monkeypatch):
    """A review: legacy's recorded opset 17 was taken to a given --onnx-exporter dynamo, which
    then refused "--opset 17", never typed."""
    import alexbench.cli.export as export_cli
    from alexbench.exporters import OnnxExporter

    monkeypatch.setattr(export_cli, "recorded_onnx_settings", lambda _: (17, OnnxExporter.LEGACY))
    settings = export_cli._onnx_settings
    assert settings(None, None, Path("x")) == (17, OnnxExporter.LEGACY)
    assert settings(None, OnnxExporter.DYNAMO, Path("x")) == (18, OnnxExporter.DYNAMO)
    assert settings(None, OnnxExporter.LEGACY, Path("x")) == (17, OnnxExporter.LEGACY)
    assert settings(13, None, Path("x")) == (13, OnnxExporter.LEGACY)


def test_verify_checks_the_onnx_file_not_onnx_runtimes_cached_copy(artifacts_copy, tmp_path):
    """An outside audit damaged ORT's optimised-model cache (same size, other bytes): verify
    failed the correct, unchanged alexnet.onnx, blaming the artifact."""
    folder = tmp_path / "cached"
    shutil.copytree(artifacts_copy, folder)
    short = ["--min-time", 0, "--min-iters", 3, "--warmup", 1, "--out", tmp_path / "r"]
    r = invoke(
        "bench", "--artifacts", folder, "--batch", 1, "-b", "onnxruntime", "-p", "fp32", *short
    )
    assert r.exit_code == 0, r.output
    (data,) = (folder / "ort-cache").glob("*/model.onnx.data")
    raw = bytearray(data.read_bytes())
    tail = np.frombuffer(bytes(raw[-4096:]), dtype=np.float32) * 1.5
    raw[-4096:] = tail.astype(np.float32).tobytes()
    data.write_bytes(bytes(raw))
    r = invoke("verify", "--artifacts", folder, "--batch", 2, "-b", "onnxruntime")
    assert r.exit_code == 0, r.output
    (cell,) = json.loads((folder / "verify-report.json").read_text())["cells"]
    assert cell["session"]["optimized_model_cache"] is None
