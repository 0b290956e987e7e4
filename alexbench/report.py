"""The one place that renders: rich tables for info, export, verify and bench results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from alexbench.precision import PRECISIONS
from alexbench.verify import Status, VerifyReport

STATUS_STYLE = {
    Status.PASS: "bold green",
    Status.FAIL: "bold red",
    Status.ERROR: "bold red",
    Status.UNSUPPORTED: "dim",
}


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render_info(console: Console, env: dict[str, Any]) -> None:
    table = Table(title="alexbench environment", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for name, version in env["versions"].items():
        table.add_row(name, str(version or "not installed"))
    cpu = env["cpu"]
    table.add_row("cpu", f"{cpu['model']} ({cpu['logical_cores']} logical cores)")
    table.add_row("cpu flags", ", ".join(cpu["flags"]) or "-")
    table.add_row("torch threads", str(env["torch_threads"]))
    gpu = env["gpu"]
    if gpu:
        gpu_desc = f"{gpu['name']} ({gpu['memory_gib']} GiB, sm {gpu['capability']})"
        table.add_row("gpu", gpu_desc)
        table.add_row("cuda / cudnn / driver", f"{gpu['cuda']} / {gpu['cudnn']} / {gpu['driver']}")
    else:
        table.add_row("gpu", "none (torch.cuda.is_available() is False)")
    table.add_row("devices", ", ".join(env["devices"]))
    table.add_row("onnxruntime providers", ", ".join(env["onnxruntime_providers"]) or "-")
    table.add_row("git commit", str(env["git_commit"] or "-"))
    console.print(table)


def render_export(console: Console, directory: str, outcomes: Sequence[tuple]) -> None:
    table = Table(title=f"Artifacts in {directory}", title_justify="left")
    for col in ("format", "file", "size", "sha256", "exporter", "status"):
        table.add_column(col)
    for fmt, rec, state in outcomes:
        if state == "exported":
            status = Text(f"exported in {rec.export_seconds:.1f}s", "green")
        else:
            status = Text("reused (sha256 match)", "cyan")
        table.add_row(
            fmt.value, rec.path, fmt_bytes(rec.size_bytes), rec.sha256[:12], rec.exporter, status
        )
    console.print(table)


def render_tolerances(console: Console, precisions: Sequence) -> None:
    parts = []
    for p in precisions:
        t = PRECISIONS[p].tolerance
        parts.append(
            f"{p.value}: |err| <= {t.atol:g} + {t.rtol:g}*max|ref|, cos >= {t.min_cosine:g}"
        )
    console.print("Tolerances  " + "  |  ".join(parts), style="dim")


def render_verify(console: Console, report: VerifyReport, precisions: Sequence) -> None:
    table = Table(
        title=f"Parity vs eager fp32 on cpu — inputs: {report.inputs.description}",
        title_justify="left",
    )
    for col, justify in (
        ("runtime", "left"),
        ("device", "left"),
        ("precision", "left"),
        ("max abs err", "right"),
        ("max rel err", "right"),
        ("min cosine", "right"),
        ("top-1 agree", "right"),
        ("dyn. batch", "left"),
        ("result", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in report.cells:
        status = Text(c.status.value, STATUS_STYLE[c.status])
        if c.parity is None:
            dash = "-"
            status.append(f"  {c.message}", "dim" if c.status is Status.UNSUPPORTED else "red")
            table.add_row(c.backend.value, c.device.value, c.precision.value, *[dash] * 5, status)
            continue
        p = c.parity
        agree = f"{p.top1_agreement:.1%}" + (f" ({p.near_ties} ties)" if p.near_ties else "")
        dyn = " ".join(f"[{'green' if b.passed else 'red'}]{b.batch}[/]" for b in c.batches)
        if c.status is not Status.PASS and c.message:
            status.append(f"  {c.message}", "red")
        table.add_row(
            c.backend.value,
            c.device.value,
            c.precision.value,
            f"{p.max_abs_err:.2e}",
            f"{p.max_rel_err:.2e}",
            f"{p.min_cosine:.7f}",
            agree,
            dyn,
            status,
        )
    console.print(table)
    render_tolerances(console, precisions)
