"""`alexbench results`: list the stored benchmark runs."""

from __future__ import annotations

from pathlib import Path

import typer

from alexbench.cli.common import (
    JSON_OPTION,
    WIDE_OPTION,
    Command,
    console,
    emit_json,
    err_console,
    handle_errors,
    json_output,
    jsonable,
)
from alexbench.errors import InputError
from alexbench.report import render_runs
from alexbench.runs import INVALID, RunListing, RunSummary, list_runs

DEFAULT_DIR = Path("results")
MAX_SKIPPED_NAMED = 3


@handle_errors
@json_output
def results_cmd(
    paths: list[Path] | None = typer.Argument(
        None, help="Results files or folders, searched recursively (default: ./results)."
    ),
    as_json: bool = JSON_OPTION,
    wide: bool = WIDE_OPTION,
) -> None:
    """List the stored benchmark runs, oldest first: date, host, device, versions, model, cells.

    Other JSON files (training histories, evaluate reports) are skipped with a note.

    Examples: alexbench results;  alexbench results results/xeon-2c --json
    """
    roots = list(paths or [DEFAULT_DIR])
    if not paths and not DEFAULT_DIR.is_dir():
        raise InputError(f"{DEFAULT_DIR}: no such directory (run `alexbench bench` first)")
    listing = list_runs(roots)
    if not listing.runs:  # one error line, which names what was skipped, and no note
        skipped = listing.skipped
        if len(roots) == 1 and len(skipped) == 1 and skipped[0].path == roots[0]:
            why = skipped[0].why
            if why.startswith(INVALID):  # a results file, but one that cannot be shown
                raise InputError(f"{roots[0]}: {why}")
            raise InputError(f"{roots[0]}: not a benchmark results file ({why})")
        where = ", ".join(str(p) for p in roots)
        if skipped:
            raise InputError(f"{where}: no readable results files; {_skipped_text(listing)}")
        raise InputError(f"{where}: no alexbench results files (run `alexbench bench` first)")
    if listing.skipped:
        err_console.print(f"note: {_skipped_text(listing)}", style="dim", markup=False)
    emit_json([run_dict(r) for r in listing.runs])
    if not as_json:
        render_runs(console, listing.runs, wide=wide)


def run_dict(run: RunSummary) -> dict:
    """One run as `results --json` prints it: every field, plus the model line of the table."""
    return jsonable(run) | {"model": run.model, "machine": run.machine}


def _skipped_text(listing: RunListing) -> str:
    named = ", ".join(f"{s.path} ({s.why})" for s in listing.skipped[:MAX_SKIPPED_NAMED])
    more = len(listing.skipped) - MAX_SKIPPED_NAMED
    return (
        f"skipped {len(listing.skipped)} JSON file(s) that are not runs to list: "
        + named
        + (f" and {more} more" if more > 0 else "")
    )


def register(app: typer.Typer) -> None:
    app.command("results", cls=Command)(results_cmd)
