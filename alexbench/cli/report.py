"""`alexbench report`: saved runs as terminal tables, or as an HTML and Markdown report."""

from __future__ import annotations

from pathlib import Path

import typer

from alexbench import report
from alexbench.bench.compare import incomplete_description, is_complete
from alexbench.cli import options as opt
from alexbench.cli.common import (
    WIDE_OPTION,
    Command,
    check_output_dir,
    check_output_file,
    console,
    err_console,
    handle_errors,
)
from alexbench.errors import InputError
from alexbench.results import collect_runs


@handle_errors
@report.warnings_as_lines(err_console)  # one line each, on stderr
def report_cmd(
    results: list[Path] | None = typer.Argument(
        None,
        help="Results JSON files or folders (searched recursively); default: the newest run "
        "in ./results, or all of ./results with --out.",
    ),
    out: Path | None = opt.out_folder(
        None,
        "Folder to write report.html (self-contained, opens offline), report.md and the PNGs into.",
    ),
    plot: Path | None = opt.plot_file(
        "Also write the throughput plot to this file (.png, .pdf or .svg)."
    ),
    threshold: float = typer.Option(
        0.05,
        "--threshold",
        help="With several runs and --out: compare's --threshold, a fraction in [0, 1) "
        "(0.05 = 5%).",
    ),
    wide: bool = WIDE_OPTION,
) -> None:
    """Show saved benchmark runs as tables, or write a report to share.

    Examples: alexbench report;  alexbench report results/xeon-2c --out rep;
    alexbench report results/a.json --plot p.png
    """
    from alexbench import pages, plots

    if plot is not None:
        plots.check_plot_path(plot)
        check_output_file(plot, "--plot")
    if not 0.0 <= threshold < 1.0:  # also rejects nan
        raise InputError(f"--threshold must be >= 0 and < 1 (0.05 = 5%), got {threshold}")
    paths = list(results or [Path("results")])
    if out is not None:
        check_output_dir(out, "--out")
        # Before any work: a folder of the user's is refused.
        target = pages.check_report_folder(out)
        if plot is not None and _resolved(plot, "--plot").is_relative_to(target):
            # The folder is swapped in whole and must hold only the report's own files: a plot
            # written into it made the next `report --out` refuse the folder as the user's.
            raise InputError(
                f"--plot {plot} is inside --out {out}, which is replaced whole: write the plot "
                "elsewhere (the report's folder holds its own throughput plot)"
            )
        runs, evaluations, skipped = pages.load_inputs(paths)
        if plot is not None and not runs:
            raise InputError("--plot draws benchmark runs, and none is among the inputs")
        files = pages.write_report(runs, evaluations, out, threshold)
        for line in skipped:
            err_console.print(f"skipped {line}", style="dim", markup=False)
        console.print(
            f"Report of {files.runs} run(s) and {files.evaluations} evaluation(s): "
            f"{files.html}, {files.markdown}, {len(files.images)} PNG(s) in {out}",
            markup=False,
        )
    else:
        runs, skipped = collect_runs(paths)
        if not results:
            runs = runs[-1:]  # the newest run
        for line in skipped if results else []:
            err_console.print(f"skipped {line}", style="dim", markup=False)
        for run in runs:
            _render_run(run, wide)
    if plot is not None:
        plots.plot_throughput(runs, plot)
        console.print(f"Plot: {plot}", markup=False)


def _resolved(path: Path, option: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a link loop (Python 3.11)
        raise InputError(f"{option} {path}: cannot resolve the path ({e})") from None


def _render_run(run: object, wide: bool) -> None:
    from alexbench.results import Run, created_text

    assert isinstance(run, Run)
    data = run.data
    env = data["environment"]
    gpu = (env.get("gpu") or {}).get("name")
    console.print(
        f"{run.path}: {created_text(data)}, host {env.get('host')}, "
        f"cpu {env['cpu']['model']}"
        + (f", gpu {gpu}" if gpu else "")
        + f", torch {env['versions'].get('torch')}"
        + f", onnxruntime {env['versions'].get('onnxruntime')}",
        markup=False,
    )
    if not is_complete(data):
        line = f"incomplete run {incomplete_description(data)}"
        console.print(line, style="bold yellow", markup=False, highlight=False)
    report.render_bench(console, data["cells"], run.path.name, wide=wide)


def register(app: typer.Typer) -> None:
    app.command("report", cls=Command)(report_cmd)
