"""The `alexbench` command: a thin Typer layer. Each command lives in its own module, imported
only when that command runs, so `alexbench --help`, `report`, `results` and `compare` start
without loading torch (seconds at every start)."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand

from alexbench import __version__
from alexbench.cli.common import Group, err_console, state
from alexbench.exit_codes import ExitCode
from alexbench.fileio import NO_SPACE


@dataclass(frozen=True)
class CommandEntry:
    module: str  # alexbench.cli.<module>, whose register(app) adds the command
    summary: str  # the command's first help line, for `alexbench --help` (a test holds it equal)


# In the order `alexbench --help` lists them.
COMMANDS: dict[str, CommandEntry] = {
    "info": CommandEntry(
        "info",
        "Show versions, devices, ONNX Runtime providers, CPU model and flags, and the GPU if any.",
    ),
    "export": CommandEntry(
        "export",
        "Export AlexNet to TorchScript (.pt), ONNX (.onnx) and a torch.export program (.pt2).",
    ),
    "verify": CommandEntry(
        "verify",
        "Prove the exported artifacts compute what PyTorch computes (exit 1: a cell failed "
        "parity).",
    ),
    "bench": CommandEntry(
        "bench",
        "Benchmark throughput and latency of every backend x device x precision x batch.",
    ),
    "ceilings": CommandEntry(
        "bench",
        "Measure (and cache) this machine's GEMM throughput per dtype and read bandwidth.",
    ),
    "report": CommandEntry(
        "report", "Show saved benchmark runs as tables, or write a report to share."
    ),
    "results": CommandEntry(
        "results",
        "List the stored benchmark runs, oldest first: date, host, device, versions, model, cells.",
    ),
    "compare": CommandEntry(
        "compare",
        "Compare two benchmark runs cell by cell: B/A throughput, a 95% interval and a verdict.",
    ),
    "train": CommandEntry(
        "train",
        "Train AlexNet; write last.pt/best.pt, history.json/csv and curves.png into --out.",
    ),
    "evaluate": CommandEntry(
        "evaluate",
        "Top-1/top-5, per-class accuracy and confusion matrix, per backend x precision.",
    ),
    "tune": CommandEntry(
        "tune",
        "Find the fastest configuration that passes parity, per batch size, within a time budget.",
    ),
}


class LazyGroup(Group):
    """Lists every command from COMMANDS and imports a command's module the first time that
    command is looked up to run (or to show its own --help)."""

    _listing = False  # while the group's own --help is drawn: the summaries suffice

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if self._listing:
            return TyperCommand(cmd_name, short_help=entry.summary)
        if cmd_name not in self.commands:
            try:
                module = importlib.import_module(f"alexbench.cli.{entry.module}")
            except KeyboardInterrupt:
                # A Ctrl-C in the seconds torch takes to import comes before the command's own
                # error handling, and Click would answer "Aborted!" and 1.
                err_console.print("error: interrupted", markup=False)
                raise typer.Exit(ExitCode.INTERRUPTED) from None
            holder = typer.Typer()
            module.register(holder)
            self.commands.update(typer.main.get_group(holder).commands)
        return self.commands[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="alexbench",
    cls=LazyGroup,
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


def main() -> None:
    try:
        app()
    except OSError as e:  # writing --help or --version (no command's handler around them)
        if e.errno not in NO_SPACE:
            raise
        sys.stderr.write(f"error: cannot write the output: {e.strerror}\n")
        raise SystemExit(int(ExitCode.BAD_INPUT)) from None
