"""The exit codes every measuring command (bench, verify, evaluate) shares, so CI can gate on them.

The README's "Exit codes" table is this module in words.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every requested cell measured, or unsupported with a reason
    PARITY_FAILED = 1  # a runtime computed something else than eager fp32: its speed is void
    BAD_INPUT = 2  # a bad option or file, or an expected failure before any cell ran
    UNEXPECTED = 3  # an internal error (rerun with --debug for the traceback)
    CELLS_FAILED = 4  # a cell crashed (ERROR), or nothing at all was measured
    INTERRUPTED = 130  # SIGINT (Ctrl-C); finished cells are saved
    # stdout closed before the output was written (`| head`): what a shell reports for a
    # program SIGPIPE ended, not 1, which says "parity failed"
    OUTPUT_CLOSED = 141
    TERMINATED = 143  # SIGTERM; finished cells are saved


def outcome(measured: int, parity_failed: int, errors: int) -> ExitCode:
    """Exit code of a sweep: a parity failure outranks a crash, a crash outranks success.

    `measured` counts cells that produced a result (passing or not); skipped cells count nowhere.
    """
    if parity_failed:
        return ExitCode.PARITY_FAILED
    if errors or measured == 0:
        return ExitCode.CELLS_FAILED
    return ExitCode.OK


def outcome_of(statuses: Iterable[str], passed: str, failed: str, error: str) -> ExitCode:
    """`outcome` over status strings (each command has its own status vocabulary)."""
    values = list(statuses)
    n_failed = sum(s == failed for s in values)
    n_error = sum(s == error for s in values)
    return outcome(sum(s == passed for s in values) + n_failed, n_failed, n_error)
