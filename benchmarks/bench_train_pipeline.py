"""Does the data pipeline cost less than 10 % of training throughput?

Runs alexbench's own `train_one_epoch` two ways, with the same model, optimiser, batch size and
precision:

- end to end: the real pipeline on CIFAR-10 JPEGs (decoded once into memory, or streamed with
  --pipeline stream), shuffled, augmented, resized and normalised per batch;
- compute only: one pre-made, already normalised batch fed again and again.

Rounds alternate compute / end-to-end so that drift on a shared machine hits both alike; the
medians are compared. Target: end-to-end images/s >= 90 % of compute-only.

Usage:
  python benchmarks/bench_train_pipeline.py [--precision fp32,bf16] [--steps 12] [--rounds 2]
      [--augment crop-flip|full|none]
      [--data ../shared/data/cifar10-train-jpg.tar.gz | --data DIR] [--out results/x.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from alexbench.model import build_alexnet
from alexbench.precision import Precision
from alexbench.training.batches import BatchLoader, BatchTransform, augment_config
from alexbench.training.config import TrainConfig
from alexbench.training.data import Augment, DatasetKind, DataSpec, LoadedData, Split, load_data
from alexbench.training.parts import make_optimizer, make_scheduler
from alexbench.training.train import TrainReporter, TrainStep, train_one_epoch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpg.tar.gz"
CPU = torch.device("cpu")


class FixedBatches:
    """A loader that yields the same device-resident batch: no data cost at all."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
        self.x, self.y, self.steps = x, y, steps

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            yield self.x, self.y


def identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return x


def dataset_root(data: Path, tmp: Path) -> Path:
    if data.is_dir():
        return data
    start = time.perf_counter()
    with tarfile.open(data) as tar:
        tar.extractall(tmp, filter="data")
    print(f"extracted {data.name} in {time.perf_counter() - start:.1f} s")
    return tmp


def measure(
    step: TrainStep, loader: object, transform: object, steps: int, epoch: int
) -> tuple[float, float]:
    """(images/s, data share) of `steps` training steps."""
    _, _, seen, secs, data_s, _ = train_one_epoch(
        step,
        loader,  # type: ignore[arg-type]
        transform,  # type: ignore[arg-type]
        epoch,
        steps,
        TrainReporter(),
    )
    return seen / secs, data_s / secs


def run(args: argparse.Namespace, data: LoadedData, precision: Precision) -> dict[str, object]:
    spec = data.spec
    config = TrainConfig(data=spec, batch_size=args.batch_size, precision=precision, epochs=1)
    model = build_alexnet(num_classes=data.num_classes, seed=0).to(
        memory_format=torch.channels_last
    )
    optimizer = make_optimizer(config, model.parameters())
    step = TrainStep(
        model,
        optimizer,
        make_scheduler(config, optimizer, 10_000),
        torch.amp.GradScaler("cpu", enabled=False),
        nn.CrossEntropyLoss(label_smoothing=0.1),
        config,
        CPU,
    )
    loader = BatchLoader(
        data.splits[Split.TRAIN], args.batch_size, device=CPU, shuffle=True, drop_last=True,
        workers=args.workers,
    )  # fmt: skip
    transform = BatchTransform(
        args.image_size, data.mean, data.std, augment_config(Augment(args.augment)), True
    )
    x, y = next(loader.epoch(999))
    fixed = FixedBatches(transform(x, torch.Generator().manual_seed(0)), y, args.steps)
    measure(step, FixedBatches(fixed.x, fixed.y, args.warmup), identity, args.warmup, 0)
    measure(step, loader, transform, args.warmup, 1)
    compute, e2e, shares = [], [], []
    for r in range(args.rounds):
        compute.append(measure(step, fixed, identity, args.steps, 0)[0])
        rate, share = measure(step, loader, transform, args.steps, 2 + r)
        e2e.append(rate)
        shares.append(share)
        name = precision.value
        print(f"  {name} round {r + 1}: compute {compute[-1]:.1f}, end-to-end {rate:.1f} img/s")
    c, e = statistics.median(compute), statistics.median(e2e)
    return {
        "precision": precision.value,
        "pipeline": args.pipeline,
        "train_images": len(data.splits[Split.TRAIN]),
        "compute_only_images_per_s": [round(v, 1) for v in compute],
        "end_to_end_images_per_s": [round(v, 1) for v in e2e],
        "data_share": [round(v, 4) for v in shares],
        "ratio": round(e / c, 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED, help="tarball or extracted ImageFolder")
    p.add_argument("--precision", default="fp32,bf16")
    p.add_argument("--pipeline", choices=("memory", "stream"), default="memory")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--augment", choices=[a.value for a in Augment], default=Augment.CROP_FLIP)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=12, help="steps per timed round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset_root(args.data, Path(tmp))
        spec = DataSpec(
            kind=DatasetKind.IMAGEFOLDER,
            data_dir=root,
            image_size=args.image_size,
            cache_limit_bytes=0 if args.pipeline == "stream" else 2 * 1024**3,
        )
        start = time.perf_counter()
        data = load_data(spec, (Split.TRAIN,))
        load_s = time.perf_counter() - start
        print(f"loaded {data.description} in {load_s:.1f} s")
        for name in args.precision.split(","):
            results.append(run(args, data, Precision(name.strip())))
    print(f"\n{'precision':<10}{'compute img/s':>15}{'end-to-end img/s':>18}{'ratio':>8}")
    for r in results:
        c = statistics.median(r["compute_only_images_per_s"])  # type: ignore[arg-type]
        e = statistics.median(r["end_to_end_images_per_s"])  # type: ignore[arg-type]
        verdict = "ok" if r["ratio"] >= 0.9 else "BELOW 90%"  # type: ignore[operator]
        print(f"{r['precision']:<10}{c:>15.1f}{e:>18.1f}{r['ratio']:>8.3f}  {verdict}")
    doc = {
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps_per_round": args.steps,
        "pipeline": args.pipeline,
        "augment": str(args.augment),
        "load_seconds": round(load_s, 2),
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
