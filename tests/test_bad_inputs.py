"""The bad-input catalogue: every case must give one line on stderr starting "error: ", exit 2
(bad input), no traceback, and leave no new file behind. Cases are what a new user types:
wrong values, wrong files, wrong combinations, wrong layouts. Plus property tests (hypothesis)
that the parsers and loaders answer any input with a clean error or a value, never a crash."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from alexbench.checkpoint import ModelMeta, load_model, save_checkpoint
from alexbench.cli import app
from alexbench.cli.common import (
    check_output_dir,
    check_output_file,
    parse_backend_list,
    parse_enum_list,
    parse_int_list,
    split_list,
)
from alexbench.errors import AlexbenchError, InputError
from alexbench.precision import Precision
from alexbench.runtimes import Backend

ROOT = Path(__file__).resolve().parents[1]
RUN = sorted((ROOT / "results" / "xeon-2c").glob("2026*.json"))[0]
SMALL = ["--num-classes", "10", "--image-size", "64"]

# Inputs every case may refer to by name; made once in a fresh folder per case.
FILES = {
    "txt": "hello, not a model\n",
    "empty": "",
    "json": json.dumps({"hello": 1}),
    "array_json": "[1, 2, 3]",
    "truncated_json": '{"schema": "alexbench-results/2", "cells": [',
}


def _make_inputs(tmp: Path) -> dict[str, str]:
    for name, text in FILES.items():
        (tmp / f"{name}.file").write_text(text)
    (tmp / "random.pt").write_bytes(os.urandom(4096))
    (tmp / "dir").mkdir()
    (tmp / "emptydir").mkdir()
    model = load_model(seed=1, num_classes=10, image_size=64)
    torch.save(model.model.state_dict(), tmp / "plain.pth")
    save_checkpoint(tmp / "ckpt.pt", model.model, ModelMeta(num_classes=10, image_size=64))
    torch.save({"not": "tensors"}, tmp / "dict.pt")
    torch.save({"w": torch.zeros(3)}, tmp / "other_sd.pt")
    shutil.copy(RUN, tmp / "run.json")
    wrong = json.loads(RUN.read_text()) | {"schema": "something-else/9"}
    (tmp / "wrong_schema.json").write_text(json.dumps(wrong))
    art = tmp / "badart"
    art.mkdir()
    (art / "manifest.json").write_text("{ not json")
    art2 = tmp / "oldart"
    art2.mkdir()
    (art2 / "manifest.json").write_text(json.dumps({"schema": "alexbench-manifest/0"}))
    flat = tmp / "oneclass" / "cat"
    flat.mkdir(parents=True)
    (flat / "a.jpg").write_bytes(b"not a jpeg")
    for name in ("cat", "dog"):  # real JPEGs, but 2 classes for a 10-class model
        (tmp / "twoclass" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp / "twoclass" / name / "a.jpg")
    shutil.copytree(tmp / "twoclass", tmp / "loose")  # an image beside the class folders
    shutil.copy(tmp / "twoclass" / "cat" / "a.jpg", tmp / "loose" / "stray.jpg")
    noimg = tmp / "noimages" / "train" / "cat"
    noimg.mkdir(parents=True)
    (noimg / "readme.txt").write_text("x")
    return {p.name: str(p) for p in tmp.iterdir()} | {"tmp": str(tmp)}


# (id, argv with {name} placeholders, words the one-line error must contain)
CASES: list[tuple[str, list[str], str]] = [
    # -- bench: values
    ("bench-batch-zero", ["bench", "--batch", "0"], "--batch"),
    ("bench-batch-negative", ["bench", "--batch", "-4"], "--batch"),
    ("bench-batch-word", ["bench", "--batch", "abc"], "--batch"),
    ("bench-batch-empty-item", ["bench", "--batch", "1,,2"], "--batch"),
    ("bench-batch-blank", ["bench", "--batch", " "], "--batch"),
    ("bench-batch-float", ["bench", "--batch", "1.5"], "--batch"),
    ("bench-precision-unknown", ["bench", "--precision", "fp64"], "fp64"),
    ("bench-precision-empty", ["bench", "--precision", ""], "--precision"),
    ("bench-backend-unknown", ["bench", "--backend", "tensorrt"], "tensorrt"),
    ("bench-backend-empty-item", ["bench", "--backend", "eager,"], "--backend"),
    ("bench-device-unknown", ["bench", "--device", "tpu"], "tpu"),
    ("bench-device-cuda-absent", ["bench", "--device", "cuda"], "cuda"),
    # An empty $DEVICE must not mean "every device" (leaving -d out does)
    ("bench-device-empty", ["bench", "--device", ""], "--device"),
    # Root passes access() on /proc: the folder is tried by writing, before any cell runs
    ("bench-out-proc", ["bench", "--out", "/proc/alexbench-results"], "/proc"),
    ("export-out-proc", ["export", "--out", "/proc/alexbench-exports"], "/proc"),
    ("ceilings-device-empty", ["ceilings", "--device", ""], "--device"),
    ("bench-threads-zero", ["bench", "--threads", "0"], "--threads"),
    ("bench-threads-negative", ["bench", "--threads", "-2"], "--threads"),
    ("bench-threads-huge", ["bench", "--threads", "100000"], "--threads"),
    ("verify-threads-huge", ["verify", "--threads", "100000"], "--threads"),
    ("tune-threads-huge", ["tune", "--threads", "2,100000"], "--threads"),
    ("bench-min-iters-zero", ["bench", "--min-iters", "0"], "--min-iters"),
    ("bench-min-above-max", ["bench", "--min-iters", "50", "--max-iters", "5"], "--max-iters"),
    ("bench-warmup-negative", ["bench", "--warmup", "-1"], "--warmup"),
    ("bench-min-time-negative", ["bench", "--min-time", "-1"], "--min-time"),
    ("bench-min-time-nan", ["bench", "--min-time", "nan"], "--min-time"),
    ("bench-min-time-inf", ["bench", "--min-time", "inf"], "--min-time"),
    ("tune-time-budget-zero", ["tune", "--time-budget", "0"], "--time-budget"),
    ("tune-time-budget-inf", ["tune", "--time-budget", "inf"], "--time-budget"),
    ("tune-min-time-nan", ["tune", "--min-time", "nan"], "--min-time"),
    ("tune-min-iters-above-cap", ["tune", "--min-iters", "20000"], "--min-iters"),
    ("verify-image-size-huge", ["verify", "--image-size", "100000000"], "above the maximum"),
    ("train-image-size-huge", ["train", "--image-size", "5000"], "above the maximum of 4096"),
    ("bench-batch-beyond-memory", ["bench", "--batch", "1,9000000"], "--batch 9000000: its 3"),
    ("tune-batch-beyond-memory", ["tune", "--batch", "9000000"], "--batch 9000000: its 3"),
    ("tune-latency-budget-inf", ["tune", "--latency-budget-ms", "inf"], "--latency-budget-ms"),
    ("bench-repeat-zero", ["bench", "--repeat", "0"], "--repeat"),
    ("bench-compile-mode", ["bench", "--compile-mode", "fastest"], "fastest"),
    ("bench-calib-samples-zero", ["bench", "--calib-samples", "0"], "--calib-samples"),
    # -- bench: paths
    ("bench-results-dir-file", ["bench", "--out", "{txt.file}"], "{txt.file}"),
    ("bench-artifacts-file", ["bench", "--artifacts", "{txt.file}"], "--artifacts"),
    ("bench-artifacts-corrupt-manifest", ["bench", "--artifacts", "{badart}"], "manifest"),
    # A mistyped folder made a new one, exported the seeded random model there and passed.
    ("verify-artifacts-mistyped", ["verify", "--artifacts", "{tmp}/exprots"],
     "--artifacts {tmp}/exprots: no such folder: name the model"),
    ("bench-artifacts-empty", ["bench", "--artifacts", "{emptydir}"],
     "is empty (no manifest.json)"),
    # The next export --force into art removed the cache and these results with it.
    ("bench-out-in-ort-cache", ["bench", "--artifacts", "{tmp}/art", "--seed", "0", "--out",
                                "{tmp}/art/ort-cache/runs"], "the ONNX Runtime cache"),
    ("bench-artifacts-old-manifest", ["bench", "--artifacts", "{oldart}"], "manifest"),
    ("bench-calib-missing", ["bench", "--calib-data", "{tmp}/nope", "-p", "int8"], "nope"),
    # A mistyped folder is named at once, not on the first int8 run
    ("bench-calib-missing-fp32", ["bench", "--calib-data", "{tmp}/nope", "-p", "fp32"], "nope"),
    ("verify-calib-missing-fp32", ["verify", "--calib-data", "{tmp}/nope", "-p", "fp32"], "nope"),
    ("tune-calib-missing", ["tune", "--calib-data", "{tmp}/nope", "--time-budget", "5"], "nope"),
    ("bench-calib-file", ["bench", "--calib-data", "{txt.file}", "-p", "int8"], "--calib-data"),
    ("bench-calib-empty", ["bench", "--calib-data", "{emptydir}", "-p", "int8"], "emptydir"),
    ("bench-checkpoint-missing", ["bench", "--checkpoint", "{tmp}/nope.pt"], "nope.pt"),
    ("bench-checkpoint-text", ["bench", "--checkpoint", "{txt.file}"], "txt.file"),
    ("bench-weights-random", ["bench", "--weights", "{random.pt}"], "random.pt"),
    ("bench-both-models", ["bench", "--checkpoint", "{ckpt.pt}", "--weights", "{plain.pth}"],
     "--weights"),
    # -- verify
    ("verify-batch-zero", ["verify", "--batch", "0"], "--batch"),
    ("verify-batch-word", ["verify", "--batch", "x"], "--batch"),
    ("verify-precision-unknown", ["verify", "--precision", "int4"], "int4"),
    ("verify-backend-unknown", ["verify", "--backend", "jax"], "jax"),
    ("verify-device-unknown", ["verify", "--device", "npu"], "npu"),
    ("verify-device-empty", ["verify", "--device", ""], "--device"),
    # An output written over an input: the JSON report replaced the checkpoint, exit 0
    ("evaluate-out-is-checkpoint", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                                    "synthetic", "--out", "{ckpt.pt}"], "--checkpoint"),
    ("evaluate-plot-is-out", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset", "synthetic",
                              "--plot", "{tmp}/cm.png", "--out", "{tmp}/cm.png"], "--plot"),
    ("verify-out-is-weights", ["verify", "--weights", "{plain.pth}", *SMALL, "--out",
                               "{plain.pth}"], "--weights"),
    ("verify-out-is-artifact", ["verify", "--checkpoint", "{ckpt.pt}", "--artifacts", "{tmp}/art",
                                "--out", "{tmp}/art/alexnet.onnx"], "alexnet.onnx"),
    ("verify-out-is-manifest", ["verify", "--checkpoint", "{ckpt.pt}", "--artifacts", "{tmp}/art",
                                "--out", "{tmp}/art/manifest.json"], "manifest.json"),
    ("tune-out-is-checkpoint", ["tune", "--checkpoint", "{ckpt.pt}", "--out", "{ckpt.pt}"],
     "--checkpoint"),
    ("train-label-smoothing-one", ["train", "--dataset", "synthetic", "--label-smoothing", "1",
                                   "--out", "{tmp}/ls"], "--label-smoothing"),
    ("evaluate-plot-in-data", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                               "imagefolder", "--data-dir", "{twoclass}", "--plot",
                               "{twoclass}/cat/cm.png"], "--data-dir"),
    ("train-out-is-data", ["train", "--dataset", "imagefolder", "--data-dir", "{twoclass}",
                           "--out", "{twoclass}"], "--data-dir"),
    ("train-out-in-class", ["train", "--dataset", "imagefolder", "--data-dir", "{twoclass}",
                            "--out", "{twoclass}/cat"], "--data-dir"),
    ("verify-data-missing", ["verify", "--data-dir", "{tmp}/nope"], "nope"),
    ("verify-data-file", ["verify", "--data-dir", "{txt.file}"], "a file, not a directory"),
    ("verify-data-no-images", ["verify", "--data-dir", "{emptydir}"], "no image files found"),
    ("verify-report-dir", ["verify", "--out", "{dir}"], "is a directory"),
    ("verify-report-under-file", ["verify", "--out", "{txt.file}/r.json"], "not a directory"),
    ("verify-threads-zero", ["verify", "--threads", "0"], "--threads"),
    ("verify-artifacts-file", ["verify", "--artifacts", "{txt.file}"], "--artifacts"),
    ("verify-checkpoint-dir", ["verify", "--checkpoint", "{dir}"], "dir"),
    ("verify-weights-ckpt", ["verify", "--weights", "{ckpt.pt}"], "--checkpoint"),
    ("verify-checkpoint-plain", ["verify", "--checkpoint", "{plain.pth}"], "--weights"),
    ("verify-num-classes-zero", ["verify", "--num-classes", "0"], "--num-classes"),
    ("verify-image-size-small", ["verify", "--image-size", "32"], "--image-size"),
    ("verify-ckpt-classes-mismatch", ["verify", "--checkpoint", "{ckpt.pt}", "--num-classes", "5"],
     "classes"),
    # -- export
    ("export-format-unknown", ["export", "--format", "tflite"], "tflite"),
    ("export-format-empty", ["export", "--format", ""], "--format"),
    ("export-opset-low", ["export", "--opset", "3"], "--opset"),
    ("export-opset-high", ["export", "--opset", "99"], "--opset"),
    ("export-seed-negative", ["export", "--seed", "-1"], "--seed"),
    ("bench-seed-huge", ["bench", "--seed", "99999999999999999999"], "--seed"),
    ("export-int8-no-calib", ["export", "--format", "onnx-int8", "--out", "{tmp}/i8"],
     "--calib-data"),
    ("export-opset-dynamo-17", ["export", "--opset", "17"], "--onnx-exporter legacy"),
    ("export-opset-int8-12", ["export", "--opset", "12", "--onnx-exporter", "legacy",
                              "--calib-data", "{twoclass}"], "opset 13"),
    ("export-out-file", ["export", "--out", "{txt.file}"], "txt.file"),
    ("export-out-under-file", ["export", "--out", "{txt.file}/sub"], "txt.file"),
    ("export-weights-text", ["export", "--weights", "{txt.file}"], "txt.file"),
    ("export-weights-empty", ["export", "--weights", "{empty.file}"], "empty.file"),
    ("export-weights-json", ["export", "--weights", "{json.file}"], "json.file"),
    ("export-weights-random", ["export", "--weights", "{random.pt}"], "random.pt"),
    ("export-weights-dict", ["export", "--weights", "{dict.pt}"], "state dict"),
    ("export-weights-other-sd", ["export", "--weights", "{other_sd.pt}"], "AlexNet"),
    ("export-weights-is-checkpoint", ["export", "--weights", "{ckpt.pt}"], "--checkpoint"),
    ("export-checkpoint-plain-sd", ["export", "--checkpoint", "{plain.pth}"], "--weights"),
    ("export-checkpoint-missing", ["export", "--checkpoint", "{tmp}/none.pt"], "none.pt"),
    ("export-checkpoint-dir", ["export", "--checkpoint", "{dir}"], "dir"),
    ("export-num-classes-neg", ["export", "--num-classes", "-3"], "--num-classes"),
    ("export-image-size-zero", ["export", "--image-size", "0"], "--image-size"),
    ("export-image-size-63", ["export", "--image-size", "63"], "--image-size"),
    ("export-weights-classes", ["export", "--weights", "{plain.pth}", "--num-classes", "7"],
     "classes"),
    ("export-calib-missing", ["export", "--calib-data", "{tmp}/nope", *SMALL], "nope"),
    ("export-calib-no-images", ["export", "--calib-data", "{noimages}", *SMALL], "noimages"),
    # -- evaluate
    ("evaluate-no-model", ["evaluate", "--dataset", "synthetic"], "--checkpoint"),
    ("evaluate-dataset-unknown", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset", "mnist"],
     "mnist"),
    ("evaluate-folder-missing", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                                 "imagefolder", "--data-dir", "{tmp}/nope"], "nope"),
    ("evaluate-folder-no-images", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                                   "imagefolder", "--data-dir", "{noimages}"], "noimages"),
    ("evaluate-loose-image", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                              "imagefolder", "--data-dir", "{loose}", "--val-fraction", "0"],
     "stray.jpg beside the class folders"),
    ("train-loose-image", ["train", "--dataset", "imagefolder", "--data-dir", "{loose}",
                           "--image-size", "64", "--out", "{tmp}/r"],
     "stray.jpg beside the class folders"),
    ("evaluate-val-fraction", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset", "synthetic",
                               "--val-fraction", "1.5"], "--val-fraction"),
    ("evaluate-crop-zero", ["evaluate", "--checkpoint", "{ckpt.pt}", "--crop-fraction", "0"],
     "--crop-fraction"),
    ("evaluate-crop-two", ["evaluate", "--checkpoint", "{ckpt.pt}", "--crop-fraction", "2"],
     "--crop-fraction"),
    ("evaluate-split-unknown", ["evaluate", "--checkpoint", "{ckpt.pt}", "--split", "holdout"],
     "holdout"),
    ("evaluate-batch-zero", ["evaluate", "--checkpoint", "{ckpt.pt}", "--batch-size", "0"],
     "--batch"),
    ("evaluate-out-dir", ["evaluate", "--checkpoint", "{ckpt.pt}", "--out", "{dir}"],
     "is a directory"),
    ("evaluate-plot-suffix", ["evaluate", "--checkpoint", "{ckpt.pt}", "--plot", "{tmp}/p.txt"],
     "p.txt"),
    ("evaluate-plot-dir", ["evaluate", "--checkpoint", "{ckpt.pt}", "--plot", "{dir}"], "dir"),
    ("evaluate-precision-unknown", ["evaluate", "--checkpoint", "{ckpt.pt}", "--precision",
                                    "fp8"], "fp8"),
    ("evaluate-backend-unknown", ["evaluate", "--checkpoint", "{ckpt.pt}", "--backend", "tvm"],
     "tvm"),
    ("evaluate-weights-random", ["evaluate", "--weights", "{random.pt}", "--dataset",
                                 "synthetic"], "random.pt"),
    ("evaluate-cache-negative", ["evaluate", "--checkpoint", "{ckpt.pt}", "--cache-limit-gb",
                                 "-1"], "--cache-limit-gb"),
    ("evaluate-cache-inf", ["evaluate", "--checkpoint", "{ckpt.pt}", "--cache-limit-gb", "inf"],
     "--cache-limit-gb"),
    ("evaluate-synthetic-tiny", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                                 "synthetic", "--synthetic-size", "1"], "--synthetic-size"),
    # -- train
    ("train-epochs-zero", ["train", "--dataset", "synthetic", "--epochs", "0", "--out",
                           "{tmp}/r"], "--epochs"),
    ("train-cache-nan", ["train", "--dataset", "synthetic", "--cache-limit-gb", "nan", "--out",
                         "{tmp}/r"], "--cache-limit-gb"),
    ("train-seed-negative", ["train", "--dataset", "synthetic", "--seed", "-1", "--out",
                             "{tmp}/r"], "--seed"),
    ("train-warmup-past-the-end", ["train", "--dataset", "synthetic", "--epochs", "1",
                                   "--schedule", "cosine", "--warmup-epochs", "100", "--out",
                                   "{tmp}/r"], "--warmup-epochs"),
    ("train-split-seed-huge", ["train", "--dataset", "synthetic", "--split-seed",
                               "18446744073709551616", "--out", "{tmp}/r"], "--split-seed"),
    ("train-lr-negative", ["train", "--dataset", "synthetic", "--lr", "-1", "--out", "{tmp}/r"],
     "--lr"),
    ("train-precision-int8", ["train", "--dataset", "synthetic", "--precision", "int8", "--out",
                              "{tmp}/r"], "int8"),
    ("train-precision-tf32", ["train", "--dataset", "synthetic", "--precision", "tf32", "--out",
                              "{tmp}/r"], "tf32"),
    ("train-dropout", ["train", "--dataset", "synthetic", "--dropout", "1.5", "--out",
                       "{tmp}/r"], "--dropout"),
    ("train-label-smoothing", ["train", "--dataset", "synthetic", "--label-smoothing", "-0.1",
                               "--out", "{tmp}/r"], "--label-smoothing"),
    ("train-image-size", ["train", "--dataset", "synthetic", "--image-size", "32", "--out",
                          "{tmp}/r"], "--image-size"),
    ("train-out-file", ["train", "--dataset", "synthetic", "--out", "{txt.file}"], "txt.file"),
    ("train-out-under-file", ["train", "--dataset", "synthetic", "--out", "{txt.file}/run"],
     "txt.file"),
    ("train-resume-missing", ["train", "--resume", "{tmp}/nope.pt", "--out", "{tmp}/r"],
     "nope.pt"),
    ("train-resume-text", ["train", "--resume", "{txt.file}", "--out", "{tmp}/r"], "txt.file"),
    ("train-resume-plain", ["train", "--resume", "{plain.pth}", "--out", "{tmp}/r"],
     "plain.pth"),
    ("train-batch-zero", ["train", "--dataset", "synthetic", "--batch", "0", "--out",
                          "{tmp}/r"], "--batch"),
    ("train-folder-missing", ["train", "--dataset", "imagefolder", "--data-dir", "{tmp}/nope",
                              "--out", "{tmp}/r"], "nope"),
    ("train-folder-one-class", ["train", "--dataset", "imagefolder", "--data-dir",
                                "{oneclass}", "--out", "{tmp}/r"], "at least 2 classes"),
    ("train-optimizer", ["train", "--dataset", "synthetic", "--optimizer", "lbfgs", "--out",
                         "{tmp}/r"], "lbfgs"),
    ("train-schedule", ["train", "--dataset", "synthetic", "--schedule", "step", "--out",
                        "{tmp}/r"], "step"),
    ("train-device-cuda", ["train", "--dataset", "synthetic", "--device", "cuda", "--out",
                           "{tmp}/r"], "cuda"),
    # -- report, compare, results
    ("report-missing", ["report", "{tmp}/nope.json"], "nope.json"),
    ("report-text", ["report", "{txt.file}"], "txt.file"),
    ("report-wrong-schema", ["report", "{wrong_schema.json}"], "wrong_schema.json"),
    ("report-truncated", ["report", "{truncated_json.file}"], "truncated_json.file"),
    ("report-array", ["report", "{array_json.file}"], "array_json.file"),
    ("report-empty-folder", ["report", "{emptydir}"], "emptydir"),
    ("report-out-file", ["report", "{run.json}", "--out", "{txt.file}"], "txt.file"),
    ("report-plot-suffix", ["report", "{run.json}", "--plot", "{tmp}/p.jpeg"], "p.jpeg"),
    ("report-plot-dir", ["report", "{run.json}", "--plot", "{dir}"], "dir"),
    ("report-threshold", ["report", "{run.json}", "--threshold", "-1"], "--threshold"),
    ("compare-missing", ["compare", "{run.json}", "{tmp}/nope.json"], "nope.json"),
    ("compare-text", ["compare", "{txt.file}", "{run.json}"], "txt.file"),
    ("compare-wrong-schema", ["compare", "{run.json}", "{wrong_schema.json}"],
     "wrong_schema.json"),
    ("compare-threshold-one", ["compare", "{run.json}", "{run.json}", "--threshold", "1"],
     "--threshold"),
    ("compare-threshold-nan", ["compare", "{run.json}", "{run.json}", "--threshold", "nan"],
     "--threshold"),
    ("results-empty", ["results", "{emptydir}"], "emptydir"),
    ("results-missing", ["results", "{tmp}/nope"], "nope"),
    # -- ceilings, info, the command line itself
    ("ceilings-threads", ["ceilings", "--threads", "0"], "--threads"),
    ("ceilings-device", ["ceilings", "--device", "gpu"], "gpu"),
    ("unknown-command", ["benchmark"], "benchmark"),
    ("unknown-option", ["bench", "--fast"], "--fast"),
    ("missing-value", ["bench", "--batch"], "--batch"),
    ("int-option-word", ["bench", "--repeat", "many"], "--repeat"),
    ("extra-argument", ["verify", "extra"], "extra"),
    ("compare-one-file", ["compare", "{run.json}"], "argument"),
    ("export-force-value", ["export", "--force", "true"], "true"),
    ("bench-batch-newline", ["bench", "--batch", "1\n2"], "--batch"),
    ("bench-old-results-dir", ["bench", "--results-dir", "{txt.file}"], "txt.file"),
    ("verify-old-report", ["verify", "--report", "{dir}"], "is a directory"),
    ("evaluate-unreadable", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                             "imagefolder", "--data-dir", "{oneclass}"], "could not be read"),
    # -- an empty path: Typer reads '' as '.', so these would write into or read the working folder
    ("train-out-empty", ["train", "--out", "", "--data-dir", "{tmp}/nope"], "--out: an empty path"),
    ("export-out-empty-equals", ["export", "--out=", "--weights", "{tmp}/nope.pt"],
     "--out: an empty path"),
    ("bench-calib-empty-path", ["bench", "--calib-data", "", "--batch", "0"], "--calib-data"),
    ("compare-baseline-empty", ["compare", "", "{run.json}"], "BASELINE: an empty path"),
    ("results-empty-after-dashes", ["results", "--", "{run.json}", ""], "PATHS: an empty path"),
    ("compare-candidate-empty", ["compare", "-", ""], "CANDIDATE: an empty path"),
    ("compare-extra-empty", ["compare", "{run.json}", "{run.json}", ""], "unexpected extra"),
    ("evaluate-class-count", ["evaluate", "--checkpoint", "{ckpt.pt}", "--dataset",
                              "imagefolder", "--data-dir", "{twoclass}"], "classes"),
]  # fmt: skip


def _expand(arg: str, inputs: dict[str, str]) -> str:
    for name, path in sorted(inputs.items(), key=lambda kv: -len(kv[0])):
        arg = arg.replace("{" + name + "}", path)
    return arg


def _snapshot(root: Path) -> set[tuple[Path, int, int]]:
    """Every file with its size and modification time: a new or changed file shows."""
    return {(p, p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def inputs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-inputs")
    _make_inputs(root)
    return root


_NEEDS_NO_GPU = pytest.mark.skipif(
    torch.cuda.is_available(), reason="with a GPU, --device cuda is not a bad input"
)


@pytest.mark.parametrize(
    ("args", "words"),
    [pytest.param(*c[1:], marks=_NEEDS_NO_GPU) if "cuda" in c[1] else c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_input_is_one_clean_line(args, words, inputs_template, tmp_path, monkeypatch):
    # The inputs are shared (read only: models are 200+ MiB, never copied per case); {tmp} and
    # the working directory are this case's own, so anything written by default is seen.
    inputs = {p.name: str(p) for p in inputs_template.iterdir()} | {"tmp": str(tmp_path)}
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path) | _snapshot(inputs_template)
    r = CliRunner().invoke(app, [_expand(a, inputs) for a in args])
    err = r.stderr.strip()
    assert r.exit_code == 2, f"exit {r.exit_code}\n{r.output}"
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in r.output and not err.startswith("error: unexpected "), err
    assert _expand(words, inputs) in err, err
    after = _snapshot(tmp_path) | _snapshot(inputs_template)
    assert after == before, f"left behind: {sorted(after - before)}"


def test_catalogue_is_large_and_distinct():
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES)
    assert len({tuple(c[1]) for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- properties

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_list_parsers_return_values_or_one_clean_error(value):
    for parse in (
        lambda v: parse_int_list(v, "--batch"),
        lambda v: parse_backend_list(v),
        lambda v: parse_enum_list(v, Precision, "--precision"),
    ):
        try:
            out = parse(value)
        except AlexbenchError as e:
            assert "\n" not in str(e) and str(e)
            continue
        assert out and len(out) == len(set(out))
    try:
        assert all(split_list(value, "--x"))
    except AlexbenchError as e:
        assert "\n" not in str(e) and str(e)


def test_list_values_that_name_one_cell_are_one_value():
    # A cell listed twice would be measured twice and merged as if the two were repeats.
    assert parse_int_list("1,01, 1", "--batch") == [1]
    assert parse_enum_list("fp32,FP32,bf16", Precision, "--precision") == [
        Precision.FP32,
        Precision.BF16,
    ]
    assert parse_backend_list("ort,onnxruntime,eager") == [Backend.ONNXRUNTIME, Backend.EAGER]
    with pytest.raises(AlexbenchError, match=r"unknown backend '0\\n0'"):  # found by hypothesis
        parse_backend_list("0\n0")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=2048))
def test_any_bytes_as_weights_are_refused_cleanly(tmp_path, data):
    path = tmp_path / "w.pt"
    path.write_bytes(data)
    for kind in ("checkpoint", "weights"):
        with pytest.raises(AlexbenchError) as e:
            load_model(**{kind: path})
        assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_an_empty_path_still_lets_help_through():
    r = CliRunner().invoke(app, ["bench", "--out", "", "--help"])
    assert r.exit_code == 0 and "--out" in r.stdout


def test_an_older_typers_click_path_counts_as_a_path():
    # The GPU machine's Typer runs on Click itself: its params hold a click.Path, and no
    # type_descriptor.
    from types import SimpleNamespace

    from alexbench.cli.common import _is_path

    class Path:  # named as click.Path is
        pass

    assert _is_path(SimpleNamespace(type=Path()))
    assert not _is_path(SimpleNamespace(type=int))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    """/proc takes no new files, though access() says it is writable to root: the check writes."""
    with pytest.raises(InputError, match="/proc"):
        check_output_dir(Path("/proc/alexbench-results"), "--out")
    with pytest.raises(InputError, match="/proc"):
        check_output_file(Path("/proc/alexbench-report.html"), "--out")
    check_output_dir(tmp_path / "new" / "folder", "--out")  # creates nothing...
    check_output_file(tmp_path / "report.html", "--out")
    assert list(tmp_path.iterdir()) == []  # ...and leaves nothing


def test_export_checks_its_output_folder_before_the_model_loads(tmp_path: Path) -> None:
    """`export --out FILE/sub` printed the model's line, then failed on the folder."""
    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "afile" / "sub")])
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr.startswith(f"error: --out {tmp_path / 'afile' / 'sub'}: ")


def test_an_error_quoting_a_name_with_a_line_break_is_still_one_line(tmp_path: Path) -> None:
    """A folder named "bi\\nrd" split the error over two lines."""
    folder = tmp_path / "bi\nrd"
    folder.mkdir()
    r = CliRunner().invoke(app, ["verify", "--data-dir", str(folder / "missing")])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and "bi\\nrd" in r.stderr, r.stderr


def test_an_artifact_reached_through_a_link_is_not_overwritten(tmp_path: Path) -> None:
    """Files are written beside their path and renamed onto it: `--out art/alexnet.onnx` where
    that entry is a link replaces the link (the model), and `--out shared/alexnet.onnx`
    replaces the file the folder's link points to. Both were allowed (the review)."""
    from alexbench.cli.model_args import check_spares_artifacts

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "alexnet.onnx").write_bytes(b"model")
    art = tmp_path / "art"
    art.mkdir()
    (art / "alexnet.onnx").symlink_to(tmp_path / "shared" / "alexnet.onnx")
    for out in (art / "alexnet.onnx", tmp_path / "shared" / "alexnet.onnx"):
        with pytest.raises(InputError, match="would overwrite alexnet.onnx in the artifacts"):
            check_spares_artifacts(out, "--out", art)
    check_spares_artifacts(art / "verify-report.json", "--out", art)  # its own place
    check_spares_artifacts(tmp_path / "shared" / "other.json", "--out", art)


# ------------------------------------------------------------- output that cannot be written

RESULTS_RUN = Path(__file__).resolve().parents[1] / "results" / "xeon-2c"


def _alexbench(args: list[str], stdout) -> tuple[int, str]:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "alexbench", *args], stdout=stdout, stderr=subprocess.PIPE,
        text=True, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stderr


def test_a_reader_gone_from_stdout_ends_quietly_with_141_not_the_parity_code():
    # `alexbench results | head -1`: rich ended the process with exit 1, which says "parity
    # failed" to a script, and printed nothing.
    read, write = os.pipe()
    os.close(read)
    try:
        code, err = _alexbench(["report", str(next(RESULTS_RUN.glob("2026*_vm_cpu.json")))], write)
    finally:
        os.close(write)
    assert code == 141 and "Traceback" not in err and "Exception ignored" not in err, err


def test_a_reader_gone_from_a_json_document_keeps_the_command_s_own_code(tmp_path: Path):
    """--json wrote its document with a plain write: a reader gone (`| true`, a cancelled CI
    job's jq) ended every --json command with 3, "unexpected BrokenPipeError", hiding its 1, 4,
    130 or 143 (an audit). A command that succeeded ends with 141, as in table mode; one that
    failed keeps its code."""
    run = next(RESULTS_RUN.glob("2026*_vm_cpu.json"))
    lost = json.loads(run.read_text())
    del lost["cells"][0]  # a cell A measured is missing from B: the gate fails (4)
    slow_path = tmp_path / "lost.json"
    slow_path.write_text(json.dumps(lost))
    read, write = os.pipe()
    os.close(read)
    try:
        ok, err_ok = _alexbench(["results", str(RESULTS_RUN), "--json"], write)
        failed, err_failed = _alexbench(
            ["compare", str(run), str(slow_path), "--fail-on-regression", "--json"], write
        )
    finally:
        os.close(write)
    assert ok == 141 and "unexpected" not in err_ok, err_ok
    assert failed == 4 and "unexpected" not in err_failed, err_failed  # its own code, not 3


@pytest.mark.parametrize("args", [["--version"], ["results", str(RESULTS_RUN)]])
def test_a_full_disk_under_stdout_is_one_line_not_a_traceback(args):
    # `--version > /dev/full` printed a 54-line traceback; a command's output, "unexpected
    # OSError" (exit 3).
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        code, err = _alexbench(args, full)
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "error: cannot write the output: No space left on device"


def test_a_file_write_that_runs_out_of_space_names_the_file_and_leaves_nothing(tmp_path):
    # A full disk surfaced as "unexpected OSError: [Errno 28]" (exit 3), naming no file, after
    # a whole evaluation had run.
    import errno

    from alexbench.fileio import atomic_path

    target = tmp_path / "report.json"
    full = rf"^cannot write {target}: No space left on device$"
    with pytest.raises(InputError, match=full), atomic_path(target) as tmp:
        tmp.write_text("{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []
    # other errors are not dressed up as a full disk
    with pytest.raises(PermissionError), atomic_path(target):
        raise PermissionError(errno.EACCES, "denied")


def test_only_the_outputs_broken_pipe_ends_quietly():
    # A broken pipe of the output's reader is 141; one elsewhere (a worker's) stays an
    # internal error, not a quiet exit.
    import typer

    from alexbench.cli.common import OutputClosed, handle_errors

    def raising(error: BaseException):
        @handle_errors
        def command() -> None:
            raise error

        with pytest.raises(typer.Exit) as e:
            command()
        return e.value.exit_code

    assert raising(OutputClosed(32, "the output's reader has gone")) == 141
    assert raising(BrokenPipeError(32, "a worker's pipe")) == 3
