"""TorchScript: torch.jit.trace, then freeze (weights inlined as constants, no Python needed)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from alexbench.errors import ExportError
from alexbench.exporters.base import WORK_PREFIX, ExportRequest, Interface, torch_metadata
from alexbench.fileio import signals_held

suffix = ".pt"
# The traced forward's argument keeps the model's name for it, so it is also taken by keyword.
interface = Interface("x", None, "torch.jit.load(path)(x) or torch.jit.load(path)(x=...)")


def trace_and_freeze(
    model: torch.nn.Module, example: torch.Tensor, check: bool = True
) -> torch.jit.ScriptModule:
    """The exporter's recipe (trace, check, freeze), shared so both paths build the same thing."""
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated upstream (hence the .pt2 artifact); silence the reminders.
        warnings.simplefilter("ignore", FutureWarning)
        # check_trace re-runs the trace on the example and compares: a cheap sanity check.
        traced = torch.jit.trace(model.eval(), example, check_trace=check)
        return torch.jit.freeze(traced)


def _without_debug_records(saved: Path, path: Path) -> None:
    """The archive again, less its `*.debug_pkl` entries: they hold the traced code's source
    paths (this machine's install folder, torch's site-packages) for error messages only, and
    TorchScript has no switch to leave them out. Copied with torch's own zip writer, which keeps
    each entry's alignment and writes a new `.data/serialization_id`; torch.jit.load reads the
    copy and computes the same outputs (tested in a fresh process). Read from a file, a record
    at a time: the whole archive in memory would double the export's peak (228 MB at 224 px)."""
    reader = torch._C.PyTorchFileReader(str(saved))
    with open(path, "wb") as f:
        writer = torch._C.PyTorchFileWriter(f)
        for name in reader.get_all_records():
            if name.endswith(".debug_pkl") or name == ".data/serialization_id":
                continue  # the writer makes its own serialization id
            data = reader.get_record(name)
            writer.write_record(name, data, len(data))
        writer.write_end_of_file()


def export(request: ExportRequest, path: Path) -> dict[str, Any]:
    # A trace keeps each convolution's cuDNN switches as constants (runtimes/torchscript.py):
    # the file is made with TF32 off so that it computes fp32 convolutions for any consumer on
    # CUDA, not just for alexbench's runtime, which sets them per session.
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, allow_tf32=False):
        frozen = trace_and_freeze(request.model, request.example_input())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
        # Through a file object the archive's folder is "archive", not the temporary's name
        # (with a process id): the same model gives the same bytes. Named so that a later
        # export in this folder removes it if this process is killed.
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=WORK_PREFIX) as tmp:
            saved = Path(tmp) / "with-debug-records.pt"
            with signals_held(), open(saved, "wb") as f:
                torch.jit.save(frozen, f, _extra_files=torch_metadata(request.metadata))
            _without_debug_records(saved, path)
    args = [a.name for a in frozen.forward.schema.arguments[1:]]
    if args != [interface.input_name]:  # the manifest would name an argument the file lacks
        raise ExportError(f"the traced forward takes {args}, not [{interface.input_name!r}]")
    return {"exporter": "torch.jit.trace + torch.jit.freeze"}
