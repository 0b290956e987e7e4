"""Shared CLI plumbing: the --debug state, one-line errors, comma-separated list parsing."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import typer
from rich.console import Console

from alexbench.errors import AlexbenchError, InputError

E = TypeVar("E", bound=Enum)
F = TypeVar("F", bound=Callable[..., Any])

# Piped or captured output gets a fixed, wide layout so tables are not squeezed to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 150)
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
        except AlexbenchError as e:
            if state.debug:
                raise
            err_console.print(f"error: {e}", markup=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            if state.debug:
                raise
            err_console.print("error: interrupted", markup=False)
            raise typer.Exit(130) from None
        except Exception as e:
            if state.debug:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            err_console.print(
                f"error: unexpected {type(e).__name__}: {first} "
                "(rerun with --debug for the traceback)",
                markup=False,
            )
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]


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
