"""`alexbench compare`: two benchmark runs cell by cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from alexbench import report
from alexbench.bench.compare import (
    CellKey,
    Comparison,
    compare_runs,
    gate_failures,
    key_label,
    nothing_compared,
    refusal,
    regressions,
    same_run,
    undecided,
)
from alexbench.cli.common import (
    JSON_OPTION,
    WIDE_OPTION,
    Command,
    console,
    emit_json,
    err_console,
    handle_errors,
    json_output,
    one_line,
)
from alexbench.errors import InputError
from alexbench.exit_codes import ExitCode
from alexbench.results import load_results


@handle_errors
@json_output
@report.warnings_as_lines(err_console)  # one line each, on stderr
def compare_cmd(
    baseline: Path = typer.Argument(..., help="Results JSON A (the baseline)."),
    candidate: Path = typer.Argument(..., help="Results JSON B (the candidate)."),
    threshold: float = typer.Option(
        0.05,
        "--threshold",
        help="Smallest throughput change called faster/slower, a fraction in [0, 1) "
        "(0.05: B/A above 1.05 or below 1/1.05); smaller significant differences are "
        "reported as slightly faster/slower.",
    ),
    fail_on_regression: bool = typer.Option(
        False,
        "--fail-on-regression",
        help="For CI: exit 1 when any cell of B is slower than A beyond --threshold (an "
        "inconclusive one too when its interval excludes a speed-up) or fails parity; exit 4 "
        "when a cell measured in A crashed in B, was not run or is missing, when either run "
        "was stopped before its end or ran on a busy machine (its speed cannot be judged), or "
        "when A and B are one results document. "
        "With or without it, compare exits 4 when no cell could be compared.",
    ),
    allow_different_machines: bool = typer.Option(
        False,
        "--allow-different-machines",
        help="Compare runs from different hardware (CPU model, id, flags or cores; GPU) "
        "anyway; refused otherwise: their figures differ for reasons no interval measures.",
    ),
    allow_different_models: bool = typer.Option(
        False,
        "--allow-different-models",
        help="Compare runs of different models (weights, classes, image size) anyway; "
        "refused otherwise.",
    ),
    as_json: bool = JSON_OPTION,
    wide: bool = WIDE_OPTION,
) -> None:
    """Compare two benchmark runs cell by cell: B/A throughput, a 95% interval and a verdict.

    A cell is faster/slower only if the interval excludes 1 AND the change exceeds --threshold.

    Runs made with `bench --repeat N` (N >= 3 is best) are judged by the spread between repeats.

    Single-repeat runs use a block bootstrap over raw latencies; such verdicts are marked (weak).

    Runs from different machines or of different models are refused (exit 2) unless allowed.

    Differences in library versions, threads or options, and incomplete runs, are warned.

    Exits 4 when no cell is measured (ok) in both runs: nothing was compared, so no CI gate passes.

    Example: alexbench compare results/a.json results/b.json --fail-on-regression

    With --json, stdout holds the comparison as one JSON document (verdicts, ratios, intervals).
    """
    if not 0.0 <= threshold < 1.0:  # also rejects nan
        raise InputError(f"--threshold must be >= 0 and < 1 (0.05 = 5%), got {threshold}")
    a, b = load_results(baseline), load_results(candidate)
    refused = refusal(a, b, allow_different_machines, allow_different_models)
    if refused:  # before any verdict: a gate must not pass or fail on such a pair
        raise InputError(refused)
    comparison = compare_runs(a, b, threshold)
    if baseline.resolve() == candidate.resolve() and not same_run(a, b):
        # (one file read twice: `identical` already, so the gate fails on it)
        comparison.warnings.insert(0, "A and B are the same file: every ratio is 1 by construction")
    failures = gate_failures(comparison) if fail_on_regression else []
    code = failures[0].exit_code if failures else 0 if comparison.cells else ExitCode.CELLS_FAILED
    # The outcome in one place: a script rebuilt the gate's from regressions, lost_in_b, busy...
    # (regressions 1 beside exit 4 on a busy machine; 0 beside exit 1 for a parity failure).
    outcome = {"exit_code": int(code), "gate_failures": [f.text for f in failures]}
    emit_json(comparison_dict(comparison, baseline, candidate) | outcome)
    # Warnings are about the inputs, like errors: stderr, so stdout holds the table (or JSON).
    for w in comparison.warnings:
        # one line each: a warning quotes the files' own text (a host name holding a newline)
        err_console.print(one_line(f"warning: {w}"), style="yellow", markup=False)
    report.render_compare(console, comparison, (baseline.name, candidate.name), wide=wide)
    # The gate's reasons first: a candidate that lost cells has nothing to compare in them, and
    # its wrong answers (exit 1) must not be hidden behind "nothing was compared" (exit 4).
    for failure in failures:
        err_console.print(f"error: {failure.text}", markup=False)
    if fail_on_regression and not comparison.busy and (unsure := undecided(comparison)):
        # Passed, not proven unchanged: a gate's reader must not take exit 0 for "no slowdown".
        shown = ", ".join(f"{key_label(c.key)} {c.ratio:.2f}x" for c in unsure[:3])
        more = f" and {len(unsure) - 3} more" if len(unsure) > 3 else ""
        err_console.print(
            f"warning: {len(unsure)} cell(s) undecided, slower than the threshold at their ratio "
            f"but with intervals that reach a speed-up ({shown}{more}): not counted as "
            "regressions; rerun both with more --repeat to decide them",
            style="yellow",
            markup=False,
        )
    if not comparison.cells:
        # With or without --fail-on-regression: a comparison of nothing has no result, and
        # exit 0 would let a gate (or a script reading the verdicts) pass on two unrelated runs.
        err_console.print(
            f"error: nothing was compared: {nothing_compared(comparison)}", markup=False
        )
    raise typer.Exit(code)


def _key_dict(key: CellKey) -> dict[str, Any]:
    backend, device, precision, batch = key
    return {"backend": backend, "device": device, "precision": precision, "batch": batch}


def comparison_dict(comparison: Comparison, baseline: Path, candidate: Path) -> dict[str, Any]:
    """The comparison as `compare --json` prints it: the figures and words of the table, with
    each cell's key spelled out, and None where an interval could not be computed."""
    return {
        # /2: verdict "no interval" (a side without raw latencies), symmetric threshold;
        # /3: verdicts "slightly faster/slower" and "inconclusive" (were "within noise")
        "schema": "alexbench-compare/3",
        "a": str(baseline),
        "b": str(candidate),
        "a_complete": comparison.a_complete,
        "b_complete": comparison.b_complete,
        "threshold": comparison.threshold,
        "confidence": comparison.confidence,
        "warnings": list(comparison.warnings),
        "cells": [
            _key_dict(c.key)
            | {
                "ratio": c.ratio,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "verdict": c.verdict.value,
                "weak": c.weak,
                "significant": c.significant,
                "method": c.method,
                "a_p50_ms": c.a_p50_ms,
                "b_p50_ms": c.b_p50_ms,
                "a_repeats": c.a_repeats,
                "b_repeats": c.b_repeats,
            }
            for c in comparison.cells
        ],
        "regressions": len(regressions(comparison)),
        # Inconclusive cells slower beyond the threshold that the gate does not count
        "undecided": len(undecided(comparison)),
        # ... which they are (the count alone named none: an outside audit)
        "undecided_cells": [_key_dict(c.key) for c in undecided(comparison)],
        # Why a side's figures cannot gate (--fail-on-regression exits 4): a busy machine
        "busy": comparison.busy,
        # A and B are one document (one file given twice, or a copy): the gate fails (exit 4)
        "identical": comparison.identical,
        # Why a side cannot gate either: saved by a bench that a signal stopped
        "stopped": comparison.stopped,
        "only_in_a": [_key_dict(k) for k in comparison.only_in_a],
        "only_in_b": [_key_dict(k) for k in comparison.only_in_b],
        "not_comparable": [_key_dict(n.key) | {"why": n.why} for n in comparison.not_comparable],
        # What --fail-on-regression fails on besides regressions: B's status, null when absent
        "lost_in_b": [_key_dict(c.key) | {"b_status": c.b_status} for c in comparison.lost_in_b],
    }


def register(app: typer.Typer) -> None:
    app.command("compare", cls=Command)(compare_cmd)
