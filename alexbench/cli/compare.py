"""`alexbench compare`: two benchmark runs cell by cell."""

from __future__ import annotations

from pathlib import Path

import typer

from alexbench import report
from alexbench.bench.compare import compare_runs, regressions
from alexbench.cli.common import console, err_console, handle_errors
from alexbench.errors import InputError
from alexbench.results import load_results


@handle_errors
def compare_cmd(
    baseline: Path = typer.Argument(..., help="Results JSON A (the baseline)."),
    candidate: Path = typer.Argument(..., help="Results JSON B (the candidate)."),
    threshold: float = typer.Option(
        0.05,
        "--threshold",
        help="Smallest throughput change called faster/slower, as a fraction (0.05 = 5%); "
        "smaller significant differences are reported as within noise.",
    ),
    fail_on_regression: bool = typer.Option(
        False,
        "--fail-on-regression",
        help="Exit 1 when any cell of B is slower than A beyond --threshold (for CI).",
    ),
) -> None:
    """Compare two benchmark runs cell by cell: B/A throughput, a 95% interval and a verdict.

    A cell is faster/slower only if the interval excludes 1 AND the change exceeds --threshold.

    Runs made with `bench --repeat N` (N >= 3 is best) are judged by the spread between repeats.

    Single-repeat runs use a block bootstrap over raw latencies; such verdicts are marked (weak).

    Differences in model, machine, library versions or threads, and incomplete runs, are warned.

    Example: alexbench compare results/a.json results/b.json --fail-on-regression
    """
    if not 0.0 <= threshold < 1.0:  # also rejects nan
        raise InputError(f"--threshold must be >= 0 and < 1 (0.05 = 5%), got {threshold}")
    a, b = load_results(baseline), load_results(candidate)
    comparison = compare_runs(a, b, threshold)
    report.render_compare(console, comparison, (baseline.name, candidate.name))
    if fail_on_regression:
        slower = regressions(comparison)
        if slower:
            weak = sum(c.weak for c in slower)
            err_console.print(
                f"error: {len(slower)} cell(s) regressed: B slower than A by more than "
                f"{threshold * 100:g}%" + (f" ({weak} on single-repeat evidence)" if weak else ""),
                markup=False,
            )
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
