"""`alexbench info`: versions, devices, ONNX Runtime providers, CPU and GPU."""

from __future__ import annotations

import typer

from alexbench import environment, report
from alexbench.cli.common import (
    JSON_OPTION,
    Command,
    console,
    emit_json,
    handle_errors,
    json_output,
)
from alexbench.devices import available_devices


@handle_errors
@json_output
def info_cmd(as_json: bool = JSON_OPTION) -> None:
    """Show versions, devices, ONNX Runtime providers, CPU model and flags, and the GPU if any.

    Example: alexbench info --json
    """
    env = environment.capture()
    env["devices"] = [d.value for d in available_devices()]
    if as_json:
        emit_json(env)
    else:
        report.render_info(console, env)


def register(app: typer.Typer) -> None:
    app.command("info", cls=Command)(info_cmd)
