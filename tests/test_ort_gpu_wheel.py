"""`benchmarks/ort_gpu_wheel.sh`: onnxruntime-gpu carried to a GPU machine in parts that fit a
device call beside the working tree, and unpacked there only when every part arrived intact.
A small stand-in wheel (a real zip with a dist-info) takes the place of the 255 MB one."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "ort_gpu_wheel.sh"


def _run(cmd: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable, **env)
    return subprocess.run(
        ["bash", str(SCRIPT), cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_parts_rebuild_the_package_and_a_damaged_one_installs_nothing(tmp_path: Path) -> None:
    wheel = tmp_path / "onnxruntime_gpu-9.9.9-cp312-cp312-manylinux_2_28_x86_64.whl"
    files = {
        "onnxruntime/__init__.py": "__version__ = '9.9.9'\n",
        "onnxruntime/capi/lib.so": os.urandom(300_000).hex(),  # big enough for three parts
        "onnxruntime_gpu-9.9.9.dist-info/METADATA": "Name: onnxruntime-gpu\n",
    }
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    parts = tmp_path / "parts"
    r = _run("prepare", {"ORTGPU_DIR": str(parts), "ORTGPU_PARTS": "3"}, str(wheel))
    assert r.returncode == 0, r.stderr
    assert "in 3 parts" in r.stdout
    assert sorted(p.name for p in parts.iterdir()) == ["p0", "p1", "p2"]

    inbox, site = tmp_path / "inbox", tmp_path / "site"
    inbox.mkdir()
    (site / "other_pkg").mkdir(parents=True)  # another wheel carried into /tmp/site
    for k in range(3):  # what the three device calls copy into /tmp/ortgpu
        for f in (parts / f"p{k}").iterdir():
            (inbox / f.name).write_bytes(f.read_bytes())
    (inbox / "part-03").write_bytes(b"stray")  # not in SHA256SUMS: never read
    env = {"ORTGPU_INBOX": str(inbox), "ORTGPU_SITE": str(site)}
    r = _run("install", env)
    assert r.returncode == 0, r.stderr
    for name, text in files.items():
        assert (site / name).read_text() == text
    assert sorted(p.name for p in site.iterdir()) == [
        "onnxruntime", "onnxruntime_gpu-9.9.9.dist-info", "other_pkg"
    ]  # fmt: skip

    (inbox / "part-01").write_bytes(b"truncated")  # a replaced machine, a broken transfer
    r = _run("install", env)
    assert r.returncode == 1
    assert "missing or damaged" in r.stderr and "no GPU build installed" in r.stderr
    # gpu_check.sh must not find a GPU build there; the other wheel stays.
    assert sorted(p.name for p in site.iterdir()) == ["other_pkg"]
    (inbox / "SHA256SUMS").unlink()
    r = _run("install", env)
    assert r.returncode == 1 and "no part arrived" in r.stderr


def test_parts_are_sized_to_fit_a_call_beside_the_working_tree(tmp_path: Path) -> None:
    wheel = tmp_path / "onnxruntime_gpu-9.9.9-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("onnxruntime/__init__.py", "")
    parts = tmp_path / "parts"
    r = _run("prepare", {"ORTGPU_DIR": str(parts)}, str(wheel))  # 64 MiB a call: one part
    assert r.returncode == 0, r.stderr
    assert "in 1 parts" in r.stdout and sorted(p.name for p in parts.iterdir()) == ["p0"]
    r = _run("prepare", {"ORTGPU_DIR": str(parts), "ORTGPU_LIMIT": "1000000"}, str(wheel))
    assert r.returncode == 1 and "leaves no room in a 1000000-byte call" in r.stderr


def test_prepare_refuses_a_file_that_is_not_an_onnxruntime_gpu_wheel(tmp_path: Path) -> None:
    other = tmp_path / "numpy-2.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    other.write_bytes(b"PK")
    r = _run("prepare", {"ORTGPU_DIR": str(tmp_path / "parts")}, str(other))
    assert r.returncode == 1 and "is not an onnxruntime-gpu wheel" in r.stderr
    assert not (tmp_path / "parts").exists()
