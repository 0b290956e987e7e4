"""Options shared by several commands, declared once so that each concept has one name, one short
form and one form (list, single value, switch or path) on every command that has it.

README "Options: one vocabulary" is the table of them all; tests/test_vocabulary.py checks the
commands against it. Conventions:

- a list option takes one comma-separated value and its help starts with "Comma list"; a command
  that sweeps (bench, verify, ceilings, evaluate's runtimes) takes lists, the others one value;
- a switch is a plain flag (or a --x/--no-x pair) and takes no value;
- every option has help text, with its unit where it has one, and states a range once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from alexbench.devices import Device
from alexbench.errors import InputError

# ------------------------------------------------------------------ the model

CHECKPOINT = typer.Option(
    None,
    "--checkpoint",
    help="An alexbench checkpoint file (carries its classes, image size and normalisation).",
    dir_okay=False,
)
WEIGHTS = typer.Option(
    None, "--weights", help="A plain torchvision AlexNet state dict file (e.g. ImageNet weights).",
    dir_okay=False,
)  # fmt: skip


def seed() -> Any:
    """--seed of the model-building commands (a function: its bound comes from the torch side,
    which report, results and compare never import)."""
    from alexbench.model import MAX_SEED

    return typer.Option(
        None, "--seed", help="Seed of the random-init default model (default: 0).", min=0,
        max=MAX_SEED,
    )  # fmt: skip


NUM_CLASSES = typer.Option(
    None, "--num-classes", help="Output classes, at least 1 (default: 1000, or from the weights)."
)
IMAGE_SIZE = typer.Option(
    None,
    "--image-size",
    help="Input height and width in pixels, 64 to 4096 (default: 224, or the checkpoint's).",
)
NORMALIZE = typer.Option(
    None,
    "--normalize",
    help="Per-channel mean/std the model's input is normalised with, for --weights or the "
    "seeded model (default: imagenet; a --checkpoint records its own).",
)
# evaluate always names its model (no seeded model, no exports/latest): its help says so.
EVALUATE_NORMALIZE = typer.Option(
    None,
    "--normalize",
    help="Per-channel mean/std the model's input is normalised with, for --weights "
    "(default: imagenet; a --checkpoint records its own).",
)
EVALUATE_ARTIFACTS = typer.Option(
    None, "--artifacts",
    help="Folder of the model's artifacts (exported if missing or stale; another model's "
    "folder is refused). Default: the model's own folder under exports/.",
)  # fmt: skip
ARTIFACTS = typer.Option(
    None, "--artifacts",
    help="Folder of one model's artifacts (exported if missing or stale; another model's "
    "folder is refused). Default: the model's own folder under exports/ (exports/latest: the "
    "last export).",
)  # fmt: skip
THREADS = typer.Option(
    None, "--threads", help="Intra-op threads for torch and ONNX Runtime (default: library's)."
)
# Oversubscribing is a legitimate experiment, but past this many threads per core the OpenMP
# and BLAS pools fail to allocate (100,000 on 2 cores: a malloc failure, exit 1 as if parity).
THREADS_PER_CORE_LIMIT = 16


def check_threads(threads: int | None) -> None:
    """--threads, where given: at least 1, at most THREADS_PER_CORE_LIMIT per core."""
    if threads is None:
        return
    from alexbench.environment import usable_cores

    cores = usable_cores()
    if not 1 <= threads <= THREADS_PER_CORE_LIMIT * cores:
        raise InputError(
            f"--threads must be 1 to {THREADS_PER_CORE_LIMIT * cores} "
            f"({THREADS_PER_CORE_LIMIT} per core, {cores} cores here), got {threads}"
        )


CALIB_DATA = typer.Option(
    None,
    "--calib-data",
    help="Image folder (flat or DIR/<class>/) for int8 calibration (real images).",
    file_okay=False,
    exists=True,  # checked even when no cell is int8: a mistyped folder is named at once
)
# 256, not 64: on the 3-epoch CIFAR-10 checkpoint the QDQ model's logits came 2.5-2.8x closer to
# fp32's (relative error 0.066 -> 0.023 on the 5,000 held-out images, benchmarks/
# int8_recipe_check.py; 0.052 -> 0.021 on 2,000 others) at the same speed and top-1, for ~5 s more
# export at 224 px (Intel Xeon VM). Calibration only reads activation ranges, never labels.
DEFAULT_CALIB_SAMPLES = 256
CALIB_SAMPLES = typer.Option(
    DEFAULT_CALIB_SAMPLES,
    "--calib-samples",
    help="Images used for int8 calibration (a smaller folder gives all its own, none repeated).",
    min=1,
)

# ------------------------------------------------------------------ runtimes, devices, precisions

CACHE_LIMIT_GB = typer.Option(
    2.0, "--cache-limit-gb", help="Decode into memory up to this size in GiB, else stream."
)


def check_min_time(seconds: float) -> None:
    """--min-time: finite and >= 0 (Click's min=0 lets nan and inf through)."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InputError(f"--min-time must be a finite number of seconds >= 0, got {seconds}")


def cache_limit_bytes(gib: float) -> int:
    """--cache-limit-gb in bytes; refuses nan and inf (no int), which Click's FLOAT accepts."""
    if not (math.isfinite(gib) and gib >= 0):
        raise InputError(f"--cache-limit-gb must be a finite number of GiB >= 0, got {gib}")
    return int(gib * 1024**3)


def compile_mode() -> Any:
    """--compile-mode (a function, like seed(): the enum lives with the runtimes)."""
    from alexbench.runtimes.base import CompileMode

    return typer.Option(
        CompileMode.DEFAULT, "--compile-mode", help="torch.compile's mode (compile backend only)."
    )


BACKENDS = "eager, torchscript, pt2 (torch.export), onnxruntime, compile, openvino (optional)"
LIST = "<list>"  # what --help shows for a comma-list option, instead of <str>


def backend_list(default: str) -> Any:
    return typer.Option(
        default, "--backend", "-b", help=f"Comma list of runtimes: {BACKENDS}.", metavar=LIST
    )


def device_list() -> Any:
    return typer.Option(
        None,
        "--device",
        "-d",
        help="Comma list of cpu, cuda (default: every available device).",
        metavar=LIST,
    )


def device_one() -> Any:
    return typer.Option(
        None, "--device", "-d", help="cpu or cuda (default: cuda when available, else cpu)."
    )


def precision_list(default: str, choices: str = "fp32, tf32, fp16, bf16, int8") -> Any:
    return typer.Option(
        default, "--precision", "-p", help=f"Comma list of {choices}.", metavar=LIST
    )


def precision_one(default: Any, help: str) -> Any:
    return typer.Option(default, "--precision", "-p", help=help)


def batch_list(default: str) -> Any:
    return typer.Option(
        default,
        "--batch",
        "--batch-size",
        help="Comma list of batch sizes in images per forward pass, e.g. 1,8,64,256.",
        metavar=LIST,
    )


def batch_one(default: int, help: str) -> Any:
    """One batch size (images); `--batch-size` is kept as a second name for old scripts."""
    return typer.Option(default, "--batch", "--batch-size", help=help, min=1)


# ------------------------------------------------------------------ outputs
# Paths are checked by the commands themselves (one-line errors before any work), not by Click.


def out_folder(default: Path | None, help: str, *old_names: str) -> Any:
    """--out/-o: the folder a command writes into."""
    return typer.Option(default, "--out", "-o", *old_names, help=help)


def out_file(help: str, *old_names: str) -> Any:
    """--out/-o: the file a command writes."""
    return typer.Option(None, "--out", "-o", *old_names, help=help)


def plot_file(help: str) -> Any:
    return typer.Option(None, "--plot", help=help)


def force(help: str, *old_names: str) -> Any:
    return typer.Option(False, "--force", *old_names, help=help)


def devices_asked(device: str | None) -> list[Device]:
    """`--device` of bench, verify and ceilings: the list given, or every available device when
    the option is left out (an empty value is an error, not "every device": an unset $DEVICE)."""
    from alexbench.cli.common import parse_enum_list
    from alexbench.devices import available_devices

    return available_devices() if device is None else parse_enum_list(device, Device, "--device")


def device_default(device: Device | None) -> Device:
    from alexbench.devices import is_available

    return device or (Device.CUDA if is_available(Device.CUDA) else Device.CPU)
