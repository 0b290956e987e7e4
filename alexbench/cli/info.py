"""`alexbench info`: versions, devices, ONNX Runtime providers, CPU and GPU."""

from __future__ import annotations

import json

import typer

from alexbench import environment, report
from alexbench.cli.common import console, handle_errors
from alexbench.devices import available_devices


@handle_errors
def info_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print as JSON instead of a table."),
) -> None:
    """Show versions, devices, ONNX Runtime providers, CPU model and flags, and the GPU if any.

    Example: alexbench info --json
    """
    env = environment.capture()
    env["devices"] = [d.value for d in available_devices()]
    if as_json:
        typer.echo(json.dumps(env, indent=2))
    else:
        report.render_info(console, env)


def register(app: typer.Typer) -> None:
    app.command("info")(info_cmd)
