"""`alexbench tune`: the fastest configuration that passes parity, per batch size (search logic:
alexbench/tune.py; measuring: the bench sweep; tables: TableData drawn by report.draw)."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from alexbench import report
from alexbench.bench.sweep import ROTATING_INPUTS, check_input_pool
from alexbench.bench.timer import RunLength
from alexbench.checkpoint import LoadedModel, Normalization
from alexbench.cli import options as opt
from alexbench.cli.common import (
    JSON_OPTION,
    WIDE_OPTION,
    Command,
    check_output_file,
    console,
    emit_json,
    err_console,
    handle_errors,
    invoked_command,
    json_output,
    parse_backend_list,
    parse_enum_list,
    parse_int_list,
    signals_as_interrupts,
)
from alexbench.cli.model_args import bundle_for, check_outputs_spare_inputs, model_for
from alexbench.devices import Device, require
from alexbench.environment import (
    busy_during_warning,
    capture_before_measuring,
    cpu_mark,
    others_cpu_since,
    usable_cores,
)
from alexbench.errors import InputError
from alexbench.exit_codes import ExitCode
from alexbench.fileio import signals_held, write_json
from alexbench.precision import Precision
from alexbench.results import now
from alexbench.runtimes import Backend, ModelBundle, cell_unavailable, get_runtime
from alexbench.runtimes.base import CompileMode
from alexbench.tune import (
    DEFAULT_TIME_BUDGET_S,
    P99_FOOTNOTE,
    P99_MIN_SAMPLES,
    TUNE_SCHEMA,
    Candidate,
    PairAccuracy,
    Pick,
    SearchSpace,
    Trial,
    TuneResult,
    accuracy_by_pair,
    batch_table,
    not_tried_table,
    p99_text,
    search_space,
    sweep_measure,
    tune,
    unavailable_count,
)

EVAL_BATCH = 64  # images per forward pass while measuring held-out accuracy
SHORT_RUN_ITERS = 10  # --min-iters without --latency-budget-ms: a short run per candidate


@handle_errors
@json_output
def tune_cmd(
    ctx: typer.Context,
    batch: str = opt.batch_list("1,64"),
    device: Device | None = opt.device_one(),
    backend: str | None = typer.Option(
        None,
        "--backend",
        "-b",
        help=f"Comma list of runtimes to try: {opt.BACKENDS} (default: every one).",
        metavar=opt.LIST,
    ),
    precision: str = opt.precision_list(",".join(p.value for p in Precision)),
    threads: str | None = typer.Option(
        None,
        "--threads",
        help="Comma list of intra-op thread counts to try, the first in the first pass (default "
        "on cpu: every core, then half of them; on cuda: every core).",
        metavar=opt.LIST,
    ),
    time_budget: float = typer.Option(
        DEFAULT_TIME_BUDGET_S,
        "--time-budget",
        help="Seconds the search may take, above 0 (measuring, and the accuracy check; exporting "
        "missing artifacts is not counted). Candidates that would not fit are not tried.",
    ),
    latency_budget_ms: float | None = typer.Option(
        None,
        "--latency-budget-ms",
        help="Pick the largest batch, and its fastest configuration, whose p99 latency is within "
        "this many milliseconds (above 0).",
    ),
    max_accuracy_drop: float | None = typer.Option(
        None,
        "--max-accuracy-drop",
        help="With --data-dir: leave out backend/precision pairs whose held-out top-1 is more "
        "than this many percentage points below eager fp32 (0 or more).",
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Held-out real images for --max-accuracy-drop: an ImageFolder tree (DIR/val, "
        "DIR/test or DIR/<class>/; the folder a --checkpoint trained on: its held-out part).",
    ),
    min_time: float = typer.Option(
        0.3,
        "--min-time",
        help="Seconds of timed work per cell (and no fewer than --min-iters iterations).",
    ),
    min_iters: int | None = typer.Option(
        None,
        "--min-iters",
        help="Fewest timed iterations per cell, 1 or more (default 10; 100 with "
        "--latency-budget-ms, whose p99 would otherwise be the slowest call seen).",
        show_default=False,
    ),
    out: Path | None = opt.out_file(
        "Write every trial, the winners and their commands to this JSON file."
    ),
    artifacts: Path | None = opt.ARTIFACTS,
    calib_data: Path | None = opt.CALIB_DATA,
    calib_samples: int = opt.CALIB_SAMPLES,
    checkpoint: Path | None = opt.CHECKPOINT,
    weights: Path | None = opt.WEIGHTS,
    seed: int | None = opt.seed(),
    num_classes: int | None = opt.NUM_CLASSES,
    image_size: int | None = opt.IMAGE_SIZE,
    normalize: Normalization | None = opt.NORMALIZE,
    as_json: bool = JSON_OPTION,
    wide: bool = WIDE_OPTION,
) -> None:
    """Find the fastest configuration that passes parity, per batch size, within a time budget.

    Tries backend x precision x thread count (torch.compile's modes, CUDA graphs on cuda), each
    parity-checked by the bench sweep, and prints the `alexbench bench` command that reproduces
    each winner. Examples:

      alexbench tune --batch 1,64 --device cpu --time-budget 300

      alexbench tune --batch 1,8,32,128 --latency-budget-ms 50

      alexbench tune --checkpoint best.pt --data-dir data/cifar --max-accuracy-drop 0.5 \\
          --calib-data data/cifar/train

      alexbench tune --out tune.json  (--json: the same document on stdout)
    """
    batches = parse_int_list(batch, "--batch", minimum=1)
    precisions = parse_enum_list(precision, Precision, "--precision")
    backends = (
        parse_backend_list(backend)
        if backend is not None
        else list(Backend)  # whatever the registry offers; unavailable ones are skipped
    )
    device = opt.device_default(device)
    require(device)
    thread_counts = _thread_counts(threads, device)
    if min_iters is None:  # a p99 from fewer calls is the slowest call seen, not a p99
        min_iters = SHORT_RUN_ITERS if latency_budget_ms is None else P99_MIN_SAMPLES
    _check_numbers(time_budget, latency_budget_ms, max_accuracy_drop, min_time, min_iters)
    run_length = RunLength(ROTATING_INPUTS, min_time, min_iters)  # each input warmed once
    if max_accuracy_drop is not None and data_dir is None:
        raise InputError("--max-accuracy-drop needs --data-dir (the held-out images to score)")
    if data_dir is not None and max_accuracy_drop is None:
        raise InputError("--data-dir is used by --max-accuracy-drop only: give both")
    if data_dir is not None and not data_dir.is_dir():
        raise InputError(f"--data-dir {data_dir}: no such folder")
    if out is not None:
        check_output_file(out, "--out")  # creates nothing: a refused run leaves no file
    outputs = [("--out", out)]
    sources = {"checkpoint": checkpoint, "weights": weights, "artifacts": artifacts}
    check_outputs_spare_inputs(outputs, **sources)
    loaded = model_for(
        artifacts, checkpoint=checkpoint, weights=weights, seed=seed,
        num_classes=num_classes, image_size=image_size, normalize=normalize,
    )  # fmt: skip
    check_outputs_spare_inputs(outputs, **sources, loaded=loaded)
    check_input_pool(batches, loaded.meta.image_size)
    # The images are read and checked against the model before anything is exported.
    data = _held_out(data_dir, loaded) if data_dir is not None else None
    bundle = bundle_for(
        console, artifacts, backends, loaded, precisions=precisions, devices=[device],
        calib_data=calib_data, calib_samples=calib_samples,
    )  # fmt: skip
    space = _space(bundle, device, backends, precisions, thread_counts)
    environment, busy = capture_before_measuring()
    if busy:
        err_console.print(f"warning: {busy}", markup=False)
    started = time.monotonic()  # the budget covers the accuracy check and the search
    accuracy, scored = None, None
    if data is not None:
        accuracy, scored = _accuracy(bundle, data, space, device, quiet=as_json)
        _warn_coarse(scored, max_accuracy_drop)
    display = _Display(quiet=as_json, budget_s=time_budget)
    mark = cpu_mark()  # others' CPU use over the search: one slowed first-pass trial is pruned
    with display, signals_as_interrupts():  # a signal ends the search; finished trials are kept
        result = tune(
            space, batches,
            sweep_measure(bundle, run_length, seed or 0, display.on_label),
            time_budget, latency_budget_ms=latency_budget_ms, accuracy=accuracy,
            max_accuracy_drop_pp=max_accuracy_drop, started=started,
            on_start=display.on_start, on_trial=display.on_trial,
        )  # fmt: skip
    model_args = _model_args(ctx.params, bundle.directory)
    environment["others_cpu_cores_during"] = others_cpu_since(mark)
    doc = {
        "schema": TUNE_SCHEMA,
        "created": now().isoformat(timespec="seconds"),
        "command": invoked_command(ctx),
        "environment": environment,
        "model": {
            "source": loaded.source.to_dict(),
            "meta": vars(loaded.meta),
            "artifacts_dir": str(bundle.directory.resolve()) if bundle.directory else None,
        },
        "settings": {
            "backends": [b.value for b in backends],
            "precisions": [p.value for p in precisions],
            "threads": list(thread_counts),
            "run_length": run_length.to_dict(ROTATING_INPUTS),
            "data_dir": None if data_dir is None else str(data_dir),
            # What the top-1 drops were measured on: one image is 100 / images points.
            "accuracy_images": scored,
            "accuracy_data": None if data is None else data.description,
        },
    } | result.to_dict(model_args)
    stop = result.interrupted
    if stop is not None and not result.trials:  # an empty document would read as "nothing fits"
        err_console.print(f"error: {stop} before any trial finished: nothing saved", markup=False)
        raise typer.Exit(stop.exit_code)
    with signals_held():  # a second signal must not cut the document short
        if out is not None:
            write_json(out, doc)
    emit_json(doc)
    _render(result, model_args, wide)
    busy_after = busy_during_warning(environment["others_cpu_cores_during"], "the search")
    if busy_after:  # its trials, and the first-pass configurations pruned as slow, may be off
        err_console.print(f"warning: {busy_after}", markup=False)
    if out is not None:
        console.print(f"Tune document: {out}", markup=False)
    if stop is not None:
        saved = f": saved to {out}" if out is not None else ""
        err_console.print(
            f"error: {stop}: the search is incomplete, {len(result.trials)} finished trial(s) "
            f"ranked{saved}",
            markup=False,
        )
        raise typer.Exit(stop.exit_code)
    if not result.found:
        err_console.print(f"error: {_nothing_found(result)}", markup=False)
        raise typer.Exit(ExitCode.CELLS_FAILED)


def _check_numbers(
    time_budget: float,
    latency_budget_ms: float | None,
    max_accuracy_drop: float | None,
    min_time: float,
    min_iters: int,
) -> None:
    """Every number checked before any work (`not x > 0` also refuses nan)."""
    if not (math.isfinite(time_budget) and time_budget > 0):
        raise InputError(f"--time-budget must be a finite number of seconds > 0, got {time_budget}")
    if latency_budget_ms is not None and not (
        math.isfinite(latency_budget_ms) and latency_budget_ms > 0
    ):
        raise InputError(
            f"--latency-budget-ms must be a finite number above 0, got {latency_budget_ms}"
        )
    if max_accuracy_drop is not None and not max_accuracy_drop >= 0:
        raise InputError(f"--max-accuracy-drop must be 0 or more points, got {max_accuracy_drop}")
    opt.check_min_time(min_time)
    if not 1 <= min_iters <= RunLength.max_iters:
        raise InputError(
            f"--min-iters must be 1 to {RunLength.max_iters} (the most timed calls of a cell), "
            f"got {min_iters}"
        )


def _thread_counts(value: str | None, device: Device) -> tuple[int, ...]:
    """--threads as given; else every core the process may use and, on CPU, half of them (on a
    machine with hyper-threads, about one per physical core). Always explicit: torch's thread
    count is process-wide, so a candidate must never inherit the previous one's."""
    if value is not None:
        counts = tuple(parse_int_list(value, "--threads", minimum=1))
        for n in counts:
            opt.check_threads(n)
        return counts
    cores = usable_cores()
    if device is Device.CPU and cores > 1:
        return (cores, cores // 2)
    return (cores,)


def _space(
    bundle: ModelBundle,
    device: Device,
    backends: list[Backend],
    precisions: list[Precision],
    threads: tuple[int, ...],
) -> SearchSpace:
    runtimes = {}
    for b in backends:
        try:
            runtimes[b] = get_runtime(b)
        except Exception as e:  # a runtime another build lacks is skipped, with why
            runtimes[b] = e

    def unavailable(b: Backend, p: Precision) -> str | None:
        runtime = runtimes[b]
        if isinstance(runtime, Exception):
            return f"runtime not loadable: {type(runtime).__name__}: {runtime}"
        return cell_unavailable(runtime, bundle, device, p)

    modes: list[CompileMode] = [CompileMode.DEFAULT]
    if Backend.COMPILE in backends:
        from alexbench.runtimes.compile import applied_mode

        # Only modes that differ on this device (on CPU reduce-overhead is the default mode).
        seen = {applied_mode(device, CompileMode.DEFAULT)}
        for m in CompileMode:
            if applied_mode(device, m) not in seen:
                seen.add(applied_mode(device, m))
                modes.append(m)
    graphs: list[Backend] = []
    if device is Device.CUDA:
        from alexbench.runtimes.torch_common import TorchRuntime

        # torch.compile applies CUDA graphs through its reduce-overhead mode, tried as a mode.
        graphs = [
            b for b, r in runtimes.items()
            if isinstance(r, TorchRuntime) and b is not Backend.COMPILE
        ]  # fmt: skip
    return search_space(
        device, backends, precisions, threads, unavailable,
        compile_modes=modes, cuda_graph_backends=graphs,
    )  # fmt: skip


def _held_out(data_dir: Path, loaded: LoadedModel) -> Any:
    """The held-out images `evaluate` would score in `data_dir`, checked against the model."""
    from alexbench.cli.evaluate import note_held_out, scoring_spec
    from alexbench.evaluate import check_compatible
    from alexbench.training.data import (
        DatasetKind,
        Split,
        load_data,
        recorded_data,
        same_training_folder,
    )

    trained = recorded_data(loaded)
    same = same_training_folder(trained.get("data_dir"), data_dir)
    kind = trained.get("kind") if same else None  # a valid kind: recorded_data checked it
    spec = scoring_spec(
        DatasetKind(kind) if kind else DatasetKind.IMAGEFOLDER, data_dir, loaded, Split.VAL
    )  # fmt: skip
    data = load_data(spec, (Split.VAL,), by_name=bool(loaded.meta.class_names))
    check_compatible(ModelBundle(loaded), data)  # before any warning about the images
    note_held_out(data, spec, loaded.meta.provenance)  # e.g. its training folder, or a copy
    console.print(f"Held-out data: {data.description}", markup=False, highlight=False)
    return data


def _accuracy(
    bundle: ModelBundle, data: Any, space: SearchSpace, device: Device, quiet: bool
) -> tuple[dict[tuple[Backend, Precision], PairAccuracy], int]:
    """Top-1 per (backend, precision), once each (evaluate's code, one pass over the images),
    and how many images were scored."""
    from alexbench.evaluate import evaluate_model
    from alexbench.training.data import Split

    backends = list(dict.fromkeys(b for b, _ in space.pairs))
    precisions = list(dict.fromkeys(p for _, p in space.pairs))
    t0 = time.monotonic()
    status = err_console.status("measuring held-out top-1 per backend/precision...")
    with contextlib.nullcontext() if quiet else status:
        rep = evaluate_model(
            bundle, data, backends, precisions, device, split=Split.VAL, batch_size=EVAL_BATCH
        )
    if not quiet:
        err_console.print(
            f"held-out top-1 of {len(space.pairs)} pair(s) on {rep.samples} images: "
            f"{time.monotonic() - t0:.1f} s",
            markup=False,
        )
    return accuracy_by_pair(rep), rep.samples


def _warn_coarse(images: int, max_drop_pp: float | None) -> None:
    """One image's worth of top-1 above the allowed drop: the limit is finer than the data can
    resolve (a single image decides), which the user should know before trusting it."""
    step = 100 / images if images else math.inf
    if max_drop_pp and step > max_drop_pp:  # 0 asks for no drop at all: one image may decide
        err_console.print(
            f"warning: one image is {step:.2g} points of top-1 on {images} images, more than "
            f"--max-accuracy-drop {max_drop_pp:g}: a single image decides; score more images",
            markup=False,
        )


class _Display:
    """Progress on stderr: a bar (trials done of planned, elapsed time, the budget) on a
    terminal, one line per trial when piped, nothing under --json."""

    def __init__(self, quiet: bool, budget_s: float) -> None:
        self.quiet = quiet
        self.budget_s = budget_s
        self.bar: Progress | None = None
        self.task: Any = None
        self.prefix = ""

    def __enter__(self) -> _Display:
        if not self.quiet and err_console.is_terminal:
            self.bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn(f"of a {self.budget_s:g} s budget"),
                console=err_console, transient=True,
            )  # fmt: skip
            self.bar.__enter__()
            self.task = self.bar.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def on_start(self, candidate: Candidate, done: int, planned: int) -> None:
        self.prefix = f"[{done + 1}/{max(planned, done + 1)}] {candidate.label}"
        if self.bar is not None:
            self.bar.update(self.task, description=self.prefix, completed=done, total=planned)

    def on_label(self, label: str) -> None:
        """What the sweep is doing inside the trial: loading, or which batch size."""
        if self.bar is None:
            return
        step = label.split(": ")[-1] if ": " in label else "batch " + label.rsplit("/b", 1)[-1]
        self.bar.update(self.task, description=f"{self.prefix}: {step}")

    def on_trial(self, trial: Trial) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)
        elif not self.quiet:
            err_console.print(f"{self.prefix}: {_trial_line(trial)}", markup=False)


def _trial_line(trial: Trial) -> str:
    parts = []
    for c in trial.cells:
        if c.stats is not None and c.status.value == "ok":
            parts.append(f"b{c.batch} {c.stats.throughput:,.1f} img/s")
        else:
            parts.append(f"b{c.batch} {c.status.value}")
    return ", ".join(parts) + f" ({trial.seconds:.1f} s)"


_MODEL_OPTIONS = (
    ("artifacts", "--artifacts"), ("checkpoint", "--checkpoint"), ("weights", "--weights"),
    ("seed", "--seed"), ("num_classes", "--num-classes"), ("image_size", "--image-size"),
    ("normalize", "--normalize"),
)  # fmt: skip


def _model_args(params: dict[str, Any], artifacts_dir: Path | None) -> list[str]:
    """The model and artifact options given to tune, for the reproducing bench command: paths
    absolute (it may run from another folder) and, when tune was given no model, the artifact
    folder it measured (bench would take whatever `export` ran last by then)."""
    args: list[str] = []
    if artifacts_dir is not None and all(params.get(n) is None for n, _ in _MODEL_OPTIONS):
        args += ["--artifacts", str(artifacts_dir.resolve())]
    for name, flag in (*_MODEL_OPTIONS, ("calib_data", "--calib-data")):
        value = params.get(name)
        if isinstance(value, Path):
            value = value.resolve()
        if value is not None:
            args += [flag, str(getattr(value, "value", value))]
    if params.get("calib_data") is not None:  # always: a default can change between releases
        args += ["--calib-samples", str(params["calib_samples"])]
    return args


def _render(result: TuneResult, model_args: list[str], wide: bool) -> None:
    for b in result.batches:
        if result.ranking(b):
            report.draw(console, batch_table(result, b), wide)
    skipped = not_tried_table(result)
    if skipped is not None:
        report.draw(console, skipped, wide)
    n_unavailable = unavailable_count(result)
    if n_unavailable:
        console.print(
            f"  {n_unavailable} backend/precision pair(s) cannot run here and were skipped "
            "(--json or --out lists each with why)",
            style="dim", markup=False, highlight=False,
        )  # fmt: skip
    untried = len(result.not_tried) - n_unavailable
    console.print(
        f"Searched {len(result.trials)} configuration(s) in {result.elapsed_s:.0f} s of the "
        f"{result.budget_s:g} s budget; {untried} not tried.",
        markup=False, highlight=False,
    )  # fmt: skip
    console.print("Fastest configuration that passed parity, per batch:", markup=False)
    for b in result.batches:
        pick = result.winners.get(b)
        if pick is None:
            # "none passed parity" was said when the budget let none be tried at all
            tried = any(t.cell(b) is not None for t in result.trials)
            why = "none passed parity" if tried else "no configuration was tried"
            console.print(f"  batch {b}: {why}", markup=False, highlight=False)
            continue
        s = pick.cell.stats
        assert s is not None
        _print_pick(
            f"  batch {b}: {pick.trial.candidate.label}: {s.throughput:,.1f} images/s, "
            f"p50 {s.p50_ms:.2f} ms, p99 {p99_text(pick.cell)} ms", pick, model_args,
        )  # fmt: skip
    picks = [*result.winners.values(), *([result.latency_pick] if result.latency_pick else [])]
    unmeasured = sorted({p.trial.candidate.precision.value for p in picks}
                        - {Precision.FP32.value})  # fmt: skip
    if unmeasured and not result.accuracy:
        console.print(
            f"  Winners at {'/'.join(unmeasured)} passed parity against eager fp32 on random "
            "inputs only; their accuracy was not measured (--max-accuracy-drop PP --data-dir "
            "DIR scores it on held-out images).",
            markup=False, highlight=False,
        )  # fmt: skip
    if any(p.p99_from_few_calls for p in result.winners.values()):
        console.print(f"  {P99_FOOTNOTE}", markup=False, highlight=False)
    if result.latency_budget_ms is None:
        return
    pick = result.latency_pick
    if pick is None:
        return  # said on stderr, as the error it is
    s = pick.cell.stats
    assert s is not None
    _print_pick(
        f"Largest batch within p99 <= {result.latency_budget_ms:g} ms: batch {pick.batch}, "
        f"{pick.trial.candidate.label}: p99 {p99_text(pick.cell)} ms, {s.throughput:,.1f} images/s",
        pick, model_args,
    )  # fmt: skip
    if pick.p99_from_few_calls:
        console.print(
            f"  * that p99 is from {s.iterations} timed calls, fewer than {P99_MIN_SAMPLES}: "
            "close to the slowest call seen; the command above measures a real one.",
            markup=False, highlight=False,
        )  # fmt: skip


def _print_pick(line: str, pick: Pick, model_args: list[str]) -> None:
    """A pick's line, a toss-up with its runner-up said, and the command that measures it."""
    console.print(line, markup=False, highlight=False)
    if pick.rival is not None:
        console.print(
            f"    a toss-up with {pick.rival.candidate.label}: {pick.rival_why}; rerun both "
            "with --repeat 3 before choosing",
            markup=False, highlight=False,
        )  # fmt: skip
    console.print(f"    {pick.command(model_args)}", markup=False, highlight=False,
                  soft_wrap=True)  # fmt: skip


def _nothing_found(result: TuneResult) -> str:
    if result.latency_budget_ms is not None and result.winners:
        batches = ", ".join(str(b) for b in result.batches)
        return (
            f"no tried configuration keeps p99 within {result.latency_budget_ms:g} ms at any "
            f"batch given ({batches})"
        )
    if not result.trials:
        return (
            "nothing was measured: every candidate was unavailable, excluded, or left out by "
            f"the {result.budget_s:g} s budget"
        )
    return "no configuration passed parity at any batch size (see the tables)"


def register(app: typer.Typer) -> None:
    app.command("tune", cls=Command)(tune_cmd)
