"""`benchmarks/gpu_check.sh --cpu-dry-run`: the GPU session's one prepared script, run on the CPU
with tiny settings so that it is known to work before a GPU is lent."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["cuda-tests", "info", "ceilings", "verify", "bench", "bench-compile",
         "bench-cuda-graphs", "bench-transfers", "train-bf16"]  # fmt: skip


def test_cpu_dry_run_runs_every_step_and_packs_the_results(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stderr
    lines = {line.split()[0]: line for line in summary.splitlines() if " rc=" in line}
    assert list(lines) == STEPS
    assert all(" rc=0 " in line for line in lines.values()), summary
    assert "failed steps: 0" in summary and "mode=cpu-dry-run" in summary
    with tarfile.open(out / "gpu-check.tar.gz") as tar:
        names = tar.getnames()
    for step in STEPS:
        assert f"./{step}.log" in names
    for folder in ("bench", "bench-compile", "bench-cuda-graphs", "bench-transfers"):
        assert any(n.startswith(f"./{folder}/") and n.endswith(".json") for n in names), folder
    assert "./verify-report.json" in names
    # No model weights come back: only logs and results (the artifacts lived in a temp dir).
    assert all(f.stat().st_size < 2_000_000 for f in out.rglob("*") if f.is_file())
    assert not list(out.rglob("*.onnx")) and not list(out.rglob("*.pt*"))
