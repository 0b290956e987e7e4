"""The `alexbench` command: a thin Typer layer. Each command module registers itself here."""

from __future__ import annotations

import typer

from alexbench import __version__
from alexbench.cli.common import Group, state

app = typer.Typer(
    name="alexbench",
    cls=Group,
    help="Export AlexNet, prove the exports compute what PyTorch computes, and benchmark them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alexbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback before the one-line error (same exit code)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    state.debug = debug


def _register() -> None:
    # Imported here so each command module can import `app`-free helpers without cycles.
    from alexbench.cli import (
        bench,
        compare,
        evaluate,
        export,
        info,
        report,
        results,
        train,
        tune,
        verify,
    )

    for module in (info, export, verify, bench, report, results, compare, train, evaluate, tune):
        module.register(app)


_register()


def main() -> None:
    app()
