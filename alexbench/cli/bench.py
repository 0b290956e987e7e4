"""`alexbench bench` (the sweep) and `alexbench ceilings` (the machine's roofline limits)."""

from __future__ import annotations

import re
import traceback
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alexbench import report
from alexbench.bench.load import LOAD_METHOD, LOW_LOAD, MAX_LOAD
from alexbench.bench.roofline import load_or_measure, model_work
from alexbench.bench.sweep import (
    ROTATING_INPUTS,
    BenchSpec,
    CellResult,
    CellStatus,
    check_input_pool,
    count_cells,
    error_reason,
    finish_cells,
    iter_sweep,
)
from alexbench.bench.timer import METHOD as TIMING_METHOD
from alexbench.bench.timer import RunLength
from alexbench.checkpoint import Normalization
from alexbench.cli import options as opt
from alexbench.cli.common import (
    JSON_OPTION,
    WIDE_OPTION,
    Command,
    check_output_dir,
    console,
    emit_json,
    err_console,
    handle_errors,
    invoked_command,
    json_output,
    parse_backend_list,
    parse_enum_list,
    parse_int_list,
    report_unmeasured,
    signals_as_interrupts,
    split_list,
    state,
    unmeasured_asked,
)
from alexbench.cli.model_args import (
    bundle_for,
    calibration_records,
    check_results_folder_spares_artifacts,
    int8_calibration,
    model_for,
)
from alexbench.devices import require
from alexbench.environment import (
    busy_during_warning,
    capture_before_measuring,
    cpu_mark,
    load_average,
    others_cpu_since,
)
from alexbench.errors import InputError, Interrupted, shown
from alexbench.exit_codes import ExitCode, outcome
from alexbench.fileio import signals_held
from alexbench.precision import Precision
from alexbench.results import RESULTS_SCHEMA, ceilings_dict, now, write_results
from alexbench.runtimes import ModelBundle, SessionOptions
from alexbench.runtimes.base import CompileMode

DEFAULT_BACKENDS = "eager,torchscript,pt2,onnxruntime"


@handle_errors
@json_output
def bench_cmd(
    ctx: typer.Context,
    backend: str = opt.backend_list(DEFAULT_BACKENDS),
    device: str | None = opt.device_list(),
    batch: str = opt.batch_list("1,16"),
    precision: str = opt.precision_list("fp32,bf16"),
    threads: int | None = opt.THREADS,
    warmup: int = typer.Option(
        3,
        "--warmup",
        help=f"Untimed iterations per cell (and never fewer than the {ROTATING_INPUTS} rotating "
        "inputs: each runs once untimed).",
        min=0,
    ),
    min_time: float = typer.Option(
        1.0,
        "--min-time",
        help="Seconds of timed work per cell (and no fewer than --min-iters iterations).",
        min=0.0,
    ),
    min_iters: int = typer.Option(
        10, "--min-iters", help="Fewest timed iterations per cell (1 or more)."
    ),
    max_iters: int = typer.Option(
        10_000, "--max-iters", help="Most timed iterations per cell (>= --min-iters)."
    ),
    include_transfers: bool = typer.Option(
        False, "--include-transfers", help="CUDA: time host->device, compute and device->host."
    ),
    cuda_graphs: bool = typer.Option(
        False, "--cuda-graphs", help="CUDA: replay torch runtimes as CUDA graphs."
    ),
    compile_mode: CompileMode = opt.compile_mode(),
    repeat: int = typer.Option(
        1,
        "--repeat",
        help="Run the whole sweep N times, one repeat after the other; `compare` uses the spread "
        "between repeats as the run-to-run noise.",
        min=1,
    ),
    cudnn_benchmark: bool = typer.Option(
        True, "--cudnn-benchmark/--no-cudnn-benchmark", help="CUDA: autotune convolutions."
    ),
    load: str | None = typer.Option(
        None,
        "--load",
        metavar="<list>",
        help="Comma list of loads, e.g. 0.5,0.8: also time each passing cell under load "
        "(MLPerf's Server scenario), requests arriving open-loop (Poisson) at these fractions "
        "of the rate it serves one at a time; latency counts each request's wait in the queue.",
    ),
    out: Path = opt.out_folder(
        Path("results"),
        "Folder the results JSON and CSV are written into (created if missing).",
        "--results-dir",
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
    """Benchmark throughput and latency of every backend x device x precision x batch.

    Every cell is parity-checked against fp32 eager first. Examples:

      alexbench bench

      alexbench bench --device cuda --batch 1,64,256 --precision fp32,tf32,fp16

      alexbench bench --device cpu --batch 1,64 --backend eager,onnxruntime,torchscript,compile

      alexbench bench --out results/mine --json > run.json  (stdout: the results document)
    """
    backends = parse_backend_list(backend)
    devices = opt.devices_asked(device)
    for d in devices:
        require(d)
    batches = parse_int_list(batch, "--batch", minimum=1)
    precisions = parse_enum_list(precision, Precision, "--precision")
    opt.check_threads(threads)
    opt.check_min_time(min_time)
    loads = parse_loads(load) if load is not None else []
    if loads and loads[0] < LOW_LOAD:
        # --min-iters requests each arrive about (mean latency / load) apart
        err_console.print(
            f"warning: --load {loads[0]:g}: requests arrive {1 / loads[0]:.0f}x a call's time "
            f"apart, so each cell spends at least {min_iters / loads[0]:.0f}x its latency at that "
            "load (--min-iters requests), whatever --min-time says",
            markup=False,
        )
    if repeat == 2:
        # Legal, and each cell's repeats are kept; but the CI the tables print would mislead.
        err_console.print(
            "warning: --repeat 2: each median's 95% CI is a t interval with 1 degree of freedom "
            "(12.7x the repeats' spread), often wider than the latencies themselves; 3 or more "
            "repeats give intervals that can decide",
            markup=False,
        )
    if min_iters < 1 or max_iters < min_iters:
        raise InputError("--min-iters must be >= 1 and <= --max-iters")
    check_output_dir(out, "--out")  # creates nothing: a refused run leaves no folder
    loaded = model_for(
        artifacts, checkpoint=checkpoint, weights=weights, seed=seed,
        num_classes=num_classes, image_size=image_size, normalize=normalize,
    )  # fmt: skip
    check_input_pool(batches, loaded.meta.image_size)
    check_results_folder_spares_artifacts(out, artifacts, loaded)
    bundle = bundle_for(
        console, artifacts, backends, loaded, precisions=precisions, devices=devices,
        calib_data=calib_data, calib_samples=calib_samples,
    )  # fmt: skip
    # Read now, from the manifest that describes the files the sweep will run: read after it,
    # a manifest rewritten meanwhile would be recorded, or an unreadable one lose the cells.
    calibrated = int8_calibration(calibration_records(bundle))
    options = SessionOptions(
        threads=threads,
        cudnn_benchmark=cudnn_benchmark,
        cuda_graphs=cuda_graphs,
        include_transfers=include_transfers,
        compile_mode=compile_mode,
    )
    spec = BenchSpec(
        backends, devices, precisions, batches,
        RunLength(warmup, min_time, min_iters, max_iters), options, seed or 0, repeat, loads,
    )  # fmt: skip
    # Before the sweep: the load average must describe the machine, not this benchmark.
    environment, busy = capture_before_measuring(threads)
    if busy:
        err_console.print(f"warning: {busy}")
    with console.status("measuring the machine's ceilings (cached per machine and threads)..."):
        ceilings = {d: load_or_measure(d, threads=threads, quick=True) for d in devices}
    created = now()
    mark = cpu_mark()  # others' CPU use over the sweep: work that starts during it counts too
    finished: list[CellResult] = []
    cells: list[CellResult] = []
    interrupted: Interrupted | None = None
    aborted: str | None = None  # the sweep itself crashed: keep what finished, then exit 3
    crash: Exception | None = None
    with signals_as_interrupts():
        try:
            _run_with_progress(bundle, spec, finished)
        except Interrupted as e:
            interrupted = e
        except Exception as e:
            crash = e  # re-raised under --debug once the finished cells are saved
            aborted = error_reason(e)
        if crash is not None and state.debug:  # the traceback, then the same line and exit code
            traceback.print_exception(crash)
        stopped = _stopped(interrupted, aborted)
        if stopped and not finished:  # an empty run saved would become the newest run
            why, code = stopped
            err_console.print(f"error: {why} before any cell finished: nothing saved", markup=False)
            raise typer.Exit(code)
        unsaved: OSError | None = None
        # Signals stay caught from the end of the sweep until the results are on disk: a
        # second Ctrl-C, or the SIGTERM of a `timeout`, must not lose the finished cells.
        try:
            with signals_held():
                environment["others_cpu_cores_during"] = others_cpu_since(mark)
                cells, payload = _payload(
                    bundle, spec, finished, ceilings, environment, created, calibrated
                )
                payload["settings"]["command"] = invoked_command(ctx)
                # Named with --backend/--precision and measured in no cell (exit 4): kept in
                # the file too, so that its reader learns why the run failed.
                stopped_early = interrupted is not None or aborted is not None
                payload["asked_not_measured"] = (
                    [] if stopped_early else _unmeasured(ctx, spec, cells)
                )
                if stopped_early:
                    payload["complete"] = False
                    payload["interrupted"] = (
                        interrupted.signal_name if interrupted else f"aborted: {aborted}"
                    )
                try:
                    json_path, csv_path = write_results(out, payload)
                except OSError as e:  # a full disk, a folder made read-only mid-run
                    unsaved = e
        except Interrupted as e:  # arrived while saving: saved anyway, then honoured
            interrupted = interrupted or e
    emit_json(payload)
    report.render_bench(console, payload["cells"], "alexbench bench", wide=wide)
    if busy_after := busy_during_warning(environment["others_cpu_cores_during"], "the sweep"):
        err_console.print(f"warning: {busy_after}", markup=False)
    if unsaved is not None:  # the figures are shown above (and in --json), but nowhere on disk
        err_console.print(
            f"error: cannot save the results in {out}: {unsaved.strerror or unsaved}: the "
            f"{len(cells)} cell(s) above are not saved",
            markup=False,
        )
        raise typer.Exit(ExitCode.BAD_INPUT)
    console.print(f"Results: {json_path} and {csv_path}")
    stopped = _stopped(interrupted, aborted)  # again: a signal may have come while saving
    if stopped:
        why, code = stopped
        marked = "complete" if payload["complete"] else "marked incomplete"
        err_console.print(
            f"error: {why}: {len(cells)} finished cell(s) saved ({marked}) to {json_path}",
            markup=False,
        )
        raise typer.Exit(code)
    raise typer.Exit(_exit_code(cells, payload["asked_not_measured"]))


def parse_loads(value: str) -> list[float]:
    """--load: fractions above 0 and at most MAX_LOAD (at 1 or more the queue grows without
    bound), lowest first, each once."""
    loads: list[float] = []
    for item in split_list(value, "--load"):
        if not re.fullmatch(r"[+-]?[0-9]*\.?[0-9]+", item):
            raise InputError(f"--load: '{shown(item)}' is not a number like 0.5")
        fraction = float(item)
        if not 0 < fraction <= MAX_LOAD:
            raise InputError(
                f"--load: {item} is not a fraction above 0 and at most {MAX_LOAD} of the rate a "
                "cell serves one request at a time (0 offers no request; at 1 or more the queue "
                "grows without bound)"
            )
        loads.append(fraction)
    return sorted(set(loads))


def _stopped(interrupted: Interrupted | None, aborted: str | None) -> tuple[str, int] | None:
    """Why the sweep ended early, and the exit code that says so (None: it ran to the end)."""
    if interrupted is not None:
        return str(interrupted), interrupted.exit_code
    if aborted is not None:
        return f"the sweep failed ({aborted})", ExitCode.UNEXPECTED
    return None


def _payload(
    bundle: ModelBundle,
    spec: BenchSpec,
    finished: list[CellResult],
    ceilings: dict,
    environment: dict[str, Any],
    created: datetime,
    calibrated: dict[str, str],
) -> tuple[list[CellResult], dict[str, Any]]:
    """The merged cells and the results document: every finished cell, with what produced it."""
    meta = bundle.loaded.meta
    cells = finish_cells(finished, meta.num_classes, meta.image_size, ceilings)
    flops, params = model_work(meta.num_classes, meta.image_size)
    environment["load_average_1m_after"] = load_average()
    return cells, {
        "schema": RESULTS_SCHEMA,
        "created": created.isoformat(timespec="seconds"),
        "complete": True,
        "interrupted": None,
        "environment": environment,
        "model": {
            "source": bundle.loaded.source.to_dict(),
            "meta": vars(meta),
            "flops_per_image": flops,
            "parameters": params,
            "artifacts": bundle.file_hashes(),
            "artifacts_dir": (
                str(bundle.directory.resolve()) if bundle.directory and bundle.artifacts else None
            ),
            # What each int8 file was calibrated on (its manifest's record): two int8 runs of one
            # model on different calibrations are different models.
            "int8_calibration": calibrated,
        },
        "settings": {
            "backends": [b.value for b in spec.backends],
            "devices": [d.value for d in spec.devices],
            "precisions": [p.value for p in spec.precisions],
            "batches": list(spec.batches),
            "repeat": spec.repeat,
            "run_length": spec.run_length.to_dict(ROTATING_INPUTS),
            "options": asdict(spec.options),
            "seed": spec.seed,
            "timing": TIMING_METHOD,
            "loads": list(spec.loads),
            **({"load_method": LOAD_METHOD} if spec.loads else {}),
        },
        "ceilings": ceilings_dict(ceilings),
        "cells": [c.to_dict() for c in cells],
    }


def _run_with_progress(bundle: object, spec: BenchSpec, finished: list[CellResult]) -> None:
    """Run the sweep, appending each finished cell to `finished` (which the caller still holds if
    a signal interrupts the sweep). A terminal gets a progress bar; piped output (CI, scripts)
    gets one line per finished cell on stderr instead, since a bar would print nothing there."""
    total = count_cells(spec) * spec.repeat
    if not console.is_terminal:
        for n, cell in enumerate(iter_sweep(bundle, spec), 1):  # type: ignore[arg-type]
            finished.append(cell)
            err_console.print(f"[{n}/{total}] {_cell_line(cell)}", markup=False)
        return
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("starting", total=total)

        def on_cell(_result: CellResult | None, label: str) -> None:
            progress.update(task, description=label)

        for cell in iter_sweep(bundle, spec, on_cell):  # type: ignore[arg-type]
            finished.append(cell)
            progress.advance(task)


def _cell_line(c: CellResult) -> str:
    name = f"{c.backend.value}/{c.device.value}/{c.precision.value}/b{c.batch}"
    if c.stats is not None and c.status is CellStatus.OK:  # a wrong answer's speed: not quoted
        return f"{name}: {c.status.value}, p50 {c.stats.p50_ms:.2f} ms"
    return f"{name}: {c.status.value}" + (f" ({c.reason})" if c.reason else "")


def _unmeasured(ctx: typer.Context, spec: BenchSpec, cells: list[CellResult]) -> list[str]:
    """The backends and precisions named on the command line that no cell tried. A crashed
    cell was tried: only values every cell of which was unsupported here are gaps."""
    tried = [c for c in cells if c.status is not CellStatus.SKIPPED]
    return unmeasured_asked(ctx, {"backend": spec.backends, "precision": spec.precisions}, tried)


def _exit_code(cells: list[CellResult], gaps: list[str]) -> ExitCode:
    """The README's exit-code table applied to a finished sweep, with one line saying why."""
    failed = sum(c.status is CellStatus.PARITY_FAILED for c in cells)
    errors = sum(c.status is CellStatus.ERROR for c in cells)
    ran = [c for c in cells if c.status in (CellStatus.OK, CellStatus.PARITY_FAILED)]
    code = outcome(len(ran), failed, errors)
    if ran and gaps:
        report_unmeasured(gaps, "measured")
        code = ExitCode.CELLS_FAILED if code is ExitCode.OK else code
    if failed:
        err_console.print(f"error: {failed} cell(s) failed parity; their speed is not valid")
    if errors:
        err_console.print(f"error: {errors} cell(s) failed to run (see the table)")
    if not ran and not errors:
        err_console.print("error: nothing was measured: every requested cell is unsupported here")
    return code


@handle_errors
@json_output
def ceilings_cmd(
    device: str | None = opt.device_list(),
    threads: int | None = opt.THREADS,
    force: bool = opt.force("Measure again even when this machine's ceilings are cached."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Fewer GEMM sizes and repeats, as bench measures on its first run (about a third "
        "of the time).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Measure (and cache) this machine's GEMM throughput per dtype and read bandwidth.

    bench uses them for the roofline columns, per thread count. Example: alexbench ceilings --force
    """
    devices = opt.devices_asked(device)
    opt.check_threads(threads)
    measured: list[dict[str, Any]] = []
    for d in devices:
        require(d)
        why: list[str] = []
        with console.status(f"measuring {d.value} ceilings..."):
            c = load_or_measure(
                d, threads=threads, force=force, quick=quick, on_not_cached=why.append
            )
        report.render_ceilings(console, asdict(c))
        if why:
            err_console.print(
                f"note: {d.value} ceilings not cached, {why[0]}: they would score later runs on a "
                "quiet machine above 100%; measure again when it is quiet",
                markup=False,
            )
        measured.append(asdict(c) | {"cached": not why})
    emit_json({"ceilings": measured})


def register(app: typer.Typer) -> None:
    app.command("bench", cls=Command)(bench_cmd)
    app.command("ceilings", cls=Command)(ceilings_cmd)
