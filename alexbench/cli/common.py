"""Shared CLI plumbing: the --debug state, one-line errors, comma-separated list parsing."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any, TypeVar

import typer
from rich.console import Console

from alexbench.errors import AlexbenchError, InputError, Interrupted
from alexbench.exit_codes import ExitCode

E = TypeVar("E", bound=Enum)
F = TypeVar("F", bound=Callable[..., Any])

# Piped or captured output gets a fixed, wide layout so tables are not squeezed to 80 columns,
# unless COLUMNS says how wide the reader is (rich reads it when width is None).
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 150)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    debug: bool = False


state = State()


def handle_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and a non-zero exit (traceback: --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (AlexbenchError, Interrupted) as e:
            if state.debug:
                raise
            err_console.print(f"error: {e}", markup=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            if state.debug:
                raise
            err_console.print("error: interrupted", markup=False)
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Exception as e:
            if state.debug:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            err_console.print(
                f"error: unexpected {type(e).__name__}: {first} "
                "(rerun with --debug for the traceback)",
                markup=False,
            )
            raise typer.Exit(ExitCode.UNEXPECTED) from None

    return wrapper  # type: ignore[return-value]


_SIGNAL_EXIT = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED}


def _interrupted(signum: int) -> Interrupted:
    sig = signal.Signals(signum)
    return Interrupted(sig.name, int(_SIGNAL_EXIT[sig]))


@contextlib.contextmanager
def _signal_handler(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Inside: SIGINT and SIGTERM go to `handler`; the previous handlers come back after."""
    previous = {s: signal.signal(s, handler) for s in _SIGNAL_EXIT}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise `Interrupted`, so a long command can save its finished
    work before exiting 130 or 143 (SIGTERM would otherwise kill the process on the spot)."""

    def raise_interrupted(signum: int, _frame: Any) -> None:
        raise _interrupted(signum)

    with _signal_handler(raise_interrupted):
        yield


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM wait until the block ends, so a results file being written
    after an interrupt is not itself cut short; a signal that arrived is re-raised after."""
    pending: list[int] = []
    with _signal_handler(lambda n, _f: pending.append(n)):
        yield
    if pending:
        raise _interrupted(pending[0])


def split_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise InputError(f"{option}: expected a comma-separated list, got '{value}'")
    return list(dict.fromkeys(items))  # de-duplicate, keep order


def parse_enum_list(value: str, enum: type[E], option: str) -> list[E]:
    out = []
    for item in split_list(value, option):
        try:
            out.append(enum(item.lower()))
        except ValueError:
            choices = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
            raise InputError(f"{option}: unknown value '{item}' (choose from {choices})") from None
    return out


def parse_int_list(value: str, option: str, minimum: int = 1) -> list[int]:
    out = []
    for item in split_list(value, option):
        try:
            n = int(item)
        except ValueError:
            raise InputError(f"{option}: '{item}' is not an integer") from None
        if n < minimum:
            raise InputError(f"{option}: {n} is below the minimum of {minimum}")
        out.append(n)
    return out
