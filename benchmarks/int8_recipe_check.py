"""Which int8 recipe for the ONNX variant: build the int8 model under several recipes (weight
scales per channel or per tensor, MinMax / Entropy / Percentile calibration, 64 or 256
calibration images, reduce_range) from the same fp32 ONNX file and the same images, then
measure each on ONNX Runtime's CPU provider, in one process:

- batch-1 p50 latency and batch-64 throughput, alternating rounds (the order rotated each
  round), reported as the median over rounds of the ratio to the current default recipe;
- top-1 accuracy on the checkpoint's held-out images and top-1 agreement with the fp32 eager
  model, through alexbench's own evaluation (`alexbench.evaluate.evaluate_model` on the split
  `alexbench evaluate` would score), with the paired difference to the default recipe and its
  95% interval (normal approximation over the images where the two disagree in correctness).

    python benchmarks/int8_recipe_check.py --checkpoint /tmp/train3/best.pt \\
        --calib-data /tmp/cifar/train --work /tmp/int8recipes --out /tmp/int8recipes/r.json

Without --checkpoint the seeded model is used and accuracy means nothing (random weights): only
the latency columns and the agreement with fp32 are informative then.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from alexbench.artifacts import ArtifactFormat, ModelBundle
from alexbench.checkpoint import load_model
from alexbench.devices import Device
from alexbench.environment import capture, load_average
from alexbench.evaluate import evaluate_model
from alexbench.exporters import ensure_artifacts
from alexbench.exporters import onnx_int8 as int8
from alexbench.exporters.base import ExportRequest
from alexbench.inputs import image_inputs
from alexbench.precision import Precision
from alexbench.runtimes import Backend
from alexbench.runtimes.onnxruntime import OnnxRuntime
from alexbench.runtimes.ort_cache import CACHE_DIR
from alexbench.training.batches import BatchTransform
from alexbench.training.data import (
    Augment,
    DatasetKind,
    DataSpec,
    MemorySplit,
    NormalizeChoice,
    Split,
    load_data,
)

C = int8.Calibration


def recipes(samples: list[int]) -> dict[str, tuple[int8.Recipe, int]]:
    """name -> (recipe, calibration images); the default recipe at the first count comes first."""
    default = int8.DEFAULT_RECIPE
    out = {f"default-{samples[0]}": (default, samples[0])}
    for n in samples:
        for per_channel in (True, False):
            for method in (C.MINMAX, C.ENTROPY, C.PERCENTILE):
                r = int8.Recipe(per_channel=per_channel, calibration=method)
                name = f"{'pc' if per_channel else 'pt'}-{method.value.lower()}-{n}"
                if (r, n) not in out.values():
                    out[name] = (r, n)
    out[f"pc-minmax-reduce-{samples[0]}"] = (replace(default, reduce_range=True), samples[0])
    for n in samples:
        out[f"pc-minmax-fp32out-{n}"] = (replace(default, float_output_layer=True), n)
    return out


def held_out(loaded: Any, data_dir: Path | None, count: int) -> Any:
    """The images `alexbench evaluate --checkpoint` scores by default: the part of the folder the
    checkpoint trained on that training held out (`count` of them evenly spaced through the
    split, which is in class order)."""
    trained = loaded.meta.provenance.get("data") or {}
    folder = Path(data_dir or trained.get("data_dir") or "data")
    kind = DatasetKind(trained.get("kind", "imagefolder"))
    spec = DataSpec(
        kind=kind,
        data_dir=folder,
        image_size=loaded.meta.image_size,
        augment=Augment.NONE,
        val_fraction=float(trained.get("val_fraction", 0.1)),
        split_seed=int(trained.get("split_seed", 0)),
        normalize=NormalizeChoice.NONE,  # the model's own mean/std, as evaluate does
        crop_fraction=1.0,
    )
    data = load_data(spec, (Split.VAL,))
    split = data.splits[Split.VAL]
    if isinstance(split, MemorySplit) and len(split) > count:
        keep = torch.from_numpy(np.linspace(0, len(split) - 1, count).round().astype(np.int64))
        data.splits[Split.VAL] = MemorySplit(split.images[keep], split.labels[keep])
    return data


def timed(session: Any, inputs: list[Any], seconds: float) -> float:
    """Median per-call latency in ms over `seconds` (after warm-up), inputs rotated."""
    for i in range(3):
        session.run(inputs[i % len(inputs)])
    samples: list[int] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or len(samples) < 10:
        t0 = time.perf_counter_ns()
        session.run(inputs[i % len(inputs)])
        samples.append(time.perf_counter_ns() - t0)
        i += 1
    return statistics.median(samples) / 1e6


def paired(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 of b minus top-1 of a on the same images, with a 95% interval."""
    d = (b == labels).astype(np.int8) - (a == labels).astype(np.int8)
    n = len(d)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"diff": mean, "low": mean - 1.96 * se, "high": mean + 1.96 * se}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--image-size", type=int, default=64, help="the seeded model's")
    parser.add_argument("--calib-data", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the checkpoint's")
    parser.add_argument(
        "--samples", default="256,64", help="calibration image counts (the first: the default's)"
    )
    parser.add_argument("--eval-images", type=int, default=5000)
    parser.add_argument("--logit-images", type=int, default=1000)
    parser.add_argument("--work", type=Path, required=True, help="a folder under /tmp")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--only", default=None, help="comma list of recipe names")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    samples = [int(s) for s in args.samples.split(",")]

    if args.checkpoint is not None:
        loaded = load_model(checkpoint=args.checkpoint)
        note = f"checkpoint {args.checkpoint}"
    else:
        loaded = load_model(seed=0, num_classes=10, image_size=args.image_size)
        note = "seeded model (random weights): accuracy is meaningless, agreement is not"
    print(f"model: {note}; load average {load_average()}", flush=True)
    meta = loaded.meta
    folder = args.work / "fp32"
    manifest, _ = ensure_artifacts(loaded, folder, [ArtifactFormat.ONNX])
    onnx_path = folder / manifest.artifacts["onnx"].path

    all_recipes = recipes(samples)
    if args.only:
        keep = set(args.only.split(","))
        all_recipes = {k: v for k, v in all_recipes.items() if k in keep or k.startswith("default")}
    calib = {n: image_inputs(args.calib_data, n, meta, option="--calib-data") for n in samples}
    built: dict[str, Path] = {}
    export_s: dict[str, float] = {}
    for name, (recipe, n) in all_recipes.items():
        path = args.work / name / "alexnet.int8.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        request = ExportRequest(
            loaded.model,
            meta.image_size,
            meta.num_classes,
            calibration=calib[n].batch,
            calibration_desc=calib[n].description,
            onnx_path=onnx_path,
        )
        t0 = time.perf_counter()
        int8.export(request, path, recipe)
        export_s[name] = time.perf_counter() - t0
        built[name] = path
        print(f"built {name} in {export_s[name]:.1f} s", flush=True)

    # Accuracy: alexbench's evaluation, the eager fp32 model as the reference.
    data = held_out(loaded, args.data_dir, args.eval_images)
    print(f"data: {data.description}", flush=True)
    accuracy: dict[str, dict[str, Any]] = {}
    preds: dict[str, np.ndarray] = {}
    labels = None
    for name, path in built.items():
        paths = {ArtifactFormat.ONNX: onnx_path, ArtifactFormat.ONNX_INT8: path}
        report = evaluate_model(
            ModelBundle(loaded, paths, {}, path.parent),
            data,
            [Backend.ONNXRUNTIME],
            [Precision.INT8],
            Device.CPU,
        )
        shutil.rmtree(path.parent / CACHE_DIR, ignore_errors=True)  # the session's cache entry
        ref = next(c for c in report.cells if c.backend is Backend.EAGER)
        cell = next(c for c in report.cells if c.backend is Backend.ONNXRUNTIME)
        if cell.top1 is None:
            raise SystemExit(f"{name}: {cell.reason}")
        preds[name] = np.concatenate(cell._preds)
        preds["fp32 eager"] = np.concatenate(ref._preds)
        if labels is None:
            labels = np.asarray(data.splits[Split.VAL].labels)
        accuracy[name] = {"top1": cell.top1, "agreement": cell.agreement, "fp32_top1": ref.top1}
    base = next(iter(built))
    assert labels is not None
    for name in built:
        accuracy[name]["vs_default"] = paired(preds[base], preds[name], labels)
    # Fidelity finer than top-1: the int8 logits' error relative to fp32's, same images.
    transform = BatchTransform(meta.image_size, meta.mean, meta.std, crop_fraction=1.0)
    images = data.splits[Split.VAL].images
    some = np.linspace(0, len(images) - 1, min(args.logit_images, len(images))).round()
    x_eval = transform(images[torch.from_numpy(some.astype(np.int64))]).numpy()
    with torch.inference_mode():
        fp32_logits = loaded.model.eval()(torch.from_numpy(x_eval)).numpy()
    plain = OnnxRuntime(cache=False)
    for name, path in built.items():
        bundle = ModelBundle(loaded, {ArtifactFormat.ONNX_INT8: path}, {}, path.parent)
        session = plain.load(bundle, Device.CPU, Precision.INT8)
        got = np.concatenate([session(x_eval[i : i + 256]) for i in range(0, len(x_eval), 256)])
        err = np.linalg.norm(got - fp32_logits) / np.linalg.norm(fp32_logits)
        accuracy[name]["logit_rel_err"] = float(err)
        session.close()

    # Speed: every recipe's session held at once, alternating rounds.
    rng = np.random.default_rng(0)
    size = meta.image_size
    pool = [rng.standard_normal((64, 3, size, size), dtype=np.float32) for _ in range(3)]
    runtime = OnnxRuntime(cache=False)
    sessions = {}
    for name, path in built.items():
        bundle = ModelBundle(loaded, {ArtifactFormat.ONNX_INT8: path}, {}, path.parent)
        sessions[name] = runtime.load(bundle, Device.CPU, Precision.INT8)
    speed: dict[int, dict[str, list[float]]] = {1: {}, 64: {}}
    names = list(sessions)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for batch in (1, 64):
            for name in order:
                s = sessions[name]
                inputs = [s.prepare(x[:batch]) for x in pool]
                speed[batch].setdefault(name, []).append(timed(s, inputs, args.seconds))
        print(f"round {r + 1}/{args.rounds} done (load {load_average()})", flush=True)

    rows = []
    for name in names:
        b1, b64 = speed[1][name], speed[64][name]
        r1 = [a / b for a, b in zip(b1, speed[1][base], strict=True)]
        r64 = [a / b for a, b in zip(b64, speed[64][base], strict=True)]
        recipe, n = all_recipes[name]
        rows.append(
            {
                "name": name,
                "recipe": asdict(recipe) | {"calibration_images": n},
                "exporter": recipe.describe(),
                "export_s": export_s[name],
                "b1_p50_ms": statistics.median(b1),
                "b1_ratio_to_default": statistics.median(r1),
                "b1_ratios": r1,
                "b64_images_per_s": 64 / (statistics.median(b64) / 1e3),
                "b64_time_ratio_to_default": statistics.median(r64),
                "b64_ratios": r64,
                **accuracy[name],
            }
        )
    fp32_top1 = accuracy[base]["fp32_top1"]
    print(f"\nfp32 eager top-1 {fp32_top1:.4f} on {len(labels)} held-out images ({note})")
    print(
        f"{'recipe':<26} {'b1 ms':>7} {'x def':>6} {'b64 img/s':>10} {'x def':>6} "
        f"{'top-1':>7} {'agree':>7} {'logit err':>9} {'top-1 - default [95%]':>26}"
    )
    for row in rows:
        v = row["vs_default"]
        print(
            f"{row['name']:<26} {row['b1_p50_ms']:7.3f} {row['b1_ratio_to_default']:6.3f} "
            f"{row['b64_images_per_s']:10.1f} {row['b64_time_ratio_to_default']:6.3f} "
            f"{row['top1']:7.4f} {row['agreement']:7.4f} {row['logit_rel_err']:9.4f} "
            f"{v['diff']:+8.4f} [{v['low']:+.4f}, {v['high']:+.4f}]"
        )
    if args.out:
        doc = {
            "model": note,
            "machine": capture()["cpu"],
            "platform": platform.platform(),
            "onnxruntime": ort.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_1m_end": load_average(),
            "eval_images": len(labels),
            "data": data.description,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "fp32_eager_top1": fp32_top1,
            "rows": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
