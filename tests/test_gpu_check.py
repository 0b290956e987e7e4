"""`benchmarks/gpu_check.sh --cpu-dry-run`: the GPU session's one prepared script, run on the CPU
with tiny settings, so that it is known to work before a GPU is lent (about 2.5 min here)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
BENCH_STEPS = [
    "bench", "bench-graphs", "bench-transfers",
    "bench-compile", "bench-compile-graphs", "bench-compile-transfers",
]  # fmt: skip
STEPS = [
    "pytest-cuda", "info", "ort-probe", "ceilings", "verify",
    *BENCH_STEPS[:3], "train-bf16", "profile", "verify-compile",
    *BENCH_STEPS[3:],
]  # fmt: skip
MAX_FILE_BYTES = 4 << 20  # logs and results only: a model file is tens of MB even at 64 px


def test_cpu_dry_run_runs_every_step_and_packs_logs_and_results(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("GPU_CHECK_KEEP", None)
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-dry-run", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary_path = out / "summary.txt"
    summary = summary_path.read_text() if summary_path.is_file() else "(no summary.txt)"
    assert proc.returncode == 0, f"{summary}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    # summary.txt: every step, in order, exited 0.
    assert "alexbench gpu_check (cpu-dry-run)" in summary
    rows = re.findall(r"^(\S+)\s+(\S+)\s+([\d.]+)\s+(\d+)\s+(ok|FAIL)\s+(\S+)$", summary, re.M)
    assert [r[0] for r in rows] == STEPS, summary
    assert all(r[1] == "0" and r[4] == "ok" for r in rows), summary
    assert "RESULT: PASS, all 14 steps exited 0" in summary
    ort = r"^onnxruntime: \d+\.\d+\S* built \[.*\]; session ran on \['CPUExecutionProvider'\]"
    assert re.search(ort + ": no CUDA provider$", summary, re.M), summary

    # Only the summary and the tarball are left: the unpacked folder and the scratch folder with
    # the exported models and checkpoints are gone.
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.tar.gz", "summary.txt"]
    scratch = re.search(r"scratch (\S+), budget", proc.stdout)
    assert scratch and not Path(scratch[1]).exists(), "scratch folder left behind"
    big = [(p, p.stat().st_size) for p in out.rglob("*") if p.stat().st_size > MAX_FILE_BYTES]
    assert not big

    with tarfile.open(out / "gpu-check.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        summary_in_tar = tar.extractfile(members["gpu-check/summary.txt"]).read().decode()
        profile = json.loads(tar.extractfile(members["gpu-check/results/profile.json"]).read())
    # Where a cell's time goes: its top ops, most of it in the matrix work (~90% here).
    assert [c["batch"] for c in profile["cells"]] == [1, 2]
    assert all(c["top"] and c["matrix_share"] > 0.5 for c in profile["cells"]), profile
    names = set(members)
    assert summary_in_tar == summary
    for i, step in enumerate(STEPS, 1):
        assert f"gpu-check/logs/{i:02d}-{step}.log" in names, step
    for step in BENCH_STEPS:
        results = [n for n in names if n.startswith(f"gpu-check/results/{step}/")]
        assert any(n.endswith(".json") for n in results), step
        assert any(n.endswith(".csv") for n in results), step
    for name in [
        "results/verify-report.json", "results/verify-compile-report.json",
        "results/pytest-cuda.xml", "results/exports/manifest.json",
        "results/train-bf16/history.json",
        "results/profile.json",
    ]:  # fmt: skip
        assert f"gpu-check/{name}" in names, name
    with tarfile.open(out / "gpu-check.tar.gz") as tar:
        ceilings = json.loads(tar.extractfile("gpu-check/results/ceilings.json").read())
    (cpu,) = ceilings["ceilings"]
    assert cpu["device"] == "cpu" and cpu["quick"] and cpu["gemm_gflops"]["fp32"] > 0
    assert not [n for n in names if n.endswith((".onnx", ".pt", ".pt2", ".pth"))]
    assert all(m.size <= MAX_FILE_BYTES for m in members.values())


def test_steps_the_budget_left_out_read_as_not_run_not_as_failed(tmp_path):
    # A slow but healthy machine: every step left out by the budget. It said FAIL before.
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT), GPU_CHECK_BUDGET_S="25")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-dry-run", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    summary = (out / "summary.txt").read_text()
    assert proc.returncode != 0, summary  # not a pass: nothing was checked
    assert "RESULT: INCOMPLETE, no step failed but 14 of 14 were not run or cut short:" in summary
    assert "FAIL" not in summary and summary.count("NOTRUN") == 14
    assert "  not run or cut: pytest-cuda (not run: budget spent)" in summary


def _kill_groups_running(marker: str) -> None:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_text():
                os.killpg(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile, or not a group leader's


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_run_stopped_mid_step_leaves_few_files_and_the_hung_steps_log(tmp_path, sig):
    """The device call brings back at most 8 files, none deeper than 2 folders: OUTDIR never
    holds the unpacked folder, and the log of the step under way is there if the call kills the
    run (SIGKILL) or stops it (SIGTERM: that step reads as interrupted, not failed). A stand-in
    python passes pytest and hangs in `info`, so no step costs anything."""
    fake = tmp_path / "python"
    fake.write_text(
        '#!/bin/bash\ncase "$*" in *" info") echo hanging; exec sleep 60 ;; esac\necho "3.x"\n'
    )
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=str(fake), GPU_CHECK_BUDGET_S="300", TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--cpu-dry-run", str(out)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    running = out / "running-step.log"
    deadline = time.monotonic() + 60
    while "hanging" not in (running.read_text() if running.is_file() else ""):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    if sig is signal.SIGKILL:  # as the device call does at its limit
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
        _kill_groups_running(str(fake))  # `timeout` made its own group, which the kill missed
        assert sorted(p.name for p in out.iterdir()) == [
            "gpu-check.tar.gz",
            "running-step.log",
            "summary.txt",
        ]
        assert "# step:    info" in running.read_text()
        assert re.search(r"^pytest-cuda +0 .* ok ", (out / "summary.txt").read_text(), re.M)
        return
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 1
    summary = (out / "summary.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.tar.gz", "summary.txt"]
    assert re.search(r"^info +\S+ .* CUT +logs/02-info.log$", summary, re.M), summary
    assert "info (interrupted by a signal)" in summary and "FAIL" not in summary
    assert "ceilings (not run: interrupted)" in summary
    with tarfile.open(out / "gpu-check.tar.gz") as tar:
        assert "hanging" in tar.extractfile("gpu-check/logs/02-info.log").read().decode()
