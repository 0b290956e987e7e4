"""`alexbench report`: re-render saved runs."""

from __future__ import annotations

from pathlib import Path

import typer

from alexbench import report
from alexbench.bench.compare import incomplete_description
from alexbench.cli.common import console, handle_errors
from alexbench.errors import InputError
from alexbench.results import load_results


def _latest(directory: Path) -> Path:
    files = sorted(directory.glob("*.json"))
    if not files:
        raise InputError(f"{directory}: no results files (run `alexbench bench` first)")
    return files[-1]


@handle_errors
def report_cmd(
    results: Path | None = typer.Argument(
        None, help="A results JSON file (default: the newest in ./results)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also write a PNG: throughput and p50 latency vs batch."
    ),
) -> None:
    """Show a saved benchmark run as tables (and optionally a plot).

    Examples: alexbench report;  alexbench report results/xeon-2c/<run>.json --plot p.png
    """
    path = results if results is not None else _latest(Path("results"))
    data = load_results(path)
    env = data["environment"]
    gpu = (env.get("gpu") or {}).get("name")
    console.print(
        f"{path}: {data['created']}, host {env.get('host')}, cpu {env['cpu']['model']}"
        + (f", gpu {gpu}" if gpu else "")
        + f", torch {env['versions'].get('torch')}"
        + f", onnxruntime {env['versions'].get('onnxruntime')}"
    )
    if data.get("complete") is False:
        line = f"incomplete run {incomplete_description(data)}"
        console.print(line, style="bold yellow", markup=False, highlight=False)
    report.render_bench(console, data["cells"], path.name)
    if plot is not None:
        from alexbench.plots import plot_bench

        plot_bench(data["cells"], plot)
        console.print(f"Plot: {plot}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
