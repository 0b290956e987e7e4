"""Options shared by several commands, defined once so that they read the same everywhere."""

from __future__ import annotations

import typer

CHECKPOINT = typer.Option(
    None, "--checkpoint", help="An alexbench checkpoint (carries its own metadata).", dir_okay=False
)
WEIGHTS = typer.Option(
    None, "--weights", help="A plain torchvision AlexNet state dict (e.g. ImageNet weights).",
    dir_okay=False,
)  # fmt: skip
SEED = typer.Option(None, "--seed", help="Seed of the random-init default model (default: 0).")
NUM_CLASSES = typer.Option(
    None, "--num-classes", help="Output classes (default: 1000, or from the weights).", min=1
)
IMAGE_SIZE = typer.Option(
    None, "--image-size", help="Input height/width in pixels, >= 64 (default: 224).", min=1
)
NORMALIZE = typer.Option(
    None, "--normalize", help="Input normalisation for --weights (default: imagenet)."
)
ARTIFACTS = typer.Option(
    None, "--artifacts",
    help="Folder of one model's artifacts (exported if missing or stale; another model's "
    "folder is refused). Default: the model's own folder under exports/ (exports/latest: the "
    "last export).",
)  # fmt: skip
THREADS = typer.Option(
    None, "--threads", help="Intra-op threads for torch and ONNX Runtime (default: library's)."
)
CALIB_DATA = typer.Option(
    None, "--calib-data", help="Image folder for int8 calibration (real images).", file_okay=False
)
CALIB_SAMPLES = typer.Option(64, "--calib-samples", help="Images used for int8 calibration.", min=1)
