"""The one Runtime interface every backend implements.

A Runtime says which (device, precision) pairs it supports and loads a Session; a Session
prepares inputs (untimed: device copy, dtype/layout conversion) and runs one forward pass
(timed). Benchmarks and parity checks only ever talk to this interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from alexbench.artifacts import ArtifactFormat, ModelBundle
from alexbench.devices import Device
from alexbench.precision import Precision


class Backend(StrEnum):
    EAGER = "eager"
    TORCHSCRIPT = "torchscript"
    PT2 = "pt2"  # a torch.export program; "export" is accepted as an alias on the command line
    ONNXRUNTIME = "onnxruntime"
    COMPILE = "compile"
    OPENVINO = "openvino"  # optional: `pip install 'alexbench[openvino]'`


class CompileMode(StrEnum):
    """torch.compile's modes (CUDA graphs are applied by `reduce-overhead` on CUDA only)."""

    DEFAULT = "default"
    REDUCE_OVERHEAD = "reduce-overhead"
    MAX_AUTOTUNE = "max-autotune"


BACKEND_ALIASES = {
    "export": Backend.PT2,
    "ort": Backend.ONNXRUNTIME,
    "ts": Backend.TORCHSCRIPT,
    "ov": Backend.OPENVINO,
}


@dataclass(frozen=True)
class SessionOptions:
    """Settings applied explicitly (never left to library defaults) and recorded with results."""

    threads: int | None = None  # intra-op threads; None = the library's choice (recorded)
    cudnn_benchmark: bool = False
    cuda_graphs: bool = False
    # CUDA only: time host->device copy, compute and device->host copy together (end to end)
    # instead of compute on device-resident inputs.
    include_transfers: bool = False
    compile_mode: CompileMode = CompileMode.DEFAULT  # torch.compile only


def compile_mode_not_applied(options: SessionOptions, compiles: bool) -> dict[str, str]:
    """--compile-mode for a cell that torch.compile does not make (recorded with the cell)."""
    if compiles or options.compile_mode is CompileMode.DEFAULT:
        return {}
    return {"compile_mode_not_applied": "only torch.compile has modes"}


class Session(abc.ABC):
    """One loaded model on one device at one precision."""

    device: Device
    precision: Precision
    # CUDA: True when this session's kernels run on a stream that CUDA events can be recorded
    # on (device time): `event_stream`, or torch's current stream when that is None.
    device_time_measurable: bool = False
    event_stream: Any = None

    @abc.abstractmethod
    def prepare(self, batch: np.ndarray) -> Any:
        """Untimed: turn an fp32 NCHW numpy batch into this session's input (device, dtype)."""

    @abc.abstractmethod
    def run(self, inputs: Any) -> Any:
        """Timed: one forward pass, submitted. On CUDA it may return before the device is done
        (the latency loop calls `synchronize` inside the timed region)."""

    def synchronize(self) -> None:  # noqa: B027 - a no-op where `run` already waits
        """Wait until the device has finished everything this session submitted."""

    @abc.abstractmethod
    def to_numpy(self, outputs: Any) -> np.ndarray:
        """Untimed: outputs as an fp32 numpy array of shape (N, num_classes)."""

    def timing_started(self) -> None:  # noqa: B027 - optional hook
        """Called after warm-up, just before the timed loop. A session that must prove what the
        timed calls ran (torch.compile: compiled code, no recompiles) snapshots its state here."""

    def timing_problem(self) -> str | None:
        """Called after the timed loop: why the timed calls did not run what this cell claims
        (for example, torch.compile fell back to eager), or None. A reason makes the cell an
        ERROR: a speed is never quoted for the wrong code."""
        return None

    def info(self) -> dict[str, Any]:
        """What the session actually uses (providers, threads, flags), for the results file."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device memory early (sessions are also released when garbage collected)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.to_numpy(self.run(self.prepare(batch)))


class Runtime(abc.ABC):
    backend: ClassVar[Backend]
    artifact: ClassVar[ArtifactFormat | None] = None  # which exported file it needs, if any

    def artifact_for(self, precision: Precision) -> ArtifactFormat | None:
        """The exported file this runtime loads at `precision` (None: the eager model)."""
        return self.artifact

    @abc.abstractmethod
    def supports(self, device: Device, precision: Precision) -> str | None:
        """None when supported, else the reason it is not (shown as 'unsupported: <reason>')."""

    def checks_only(self, device: Device, precision: Precision) -> str | None:
        """Why a pair `supports` refuses can still be run for its numbers (verify's parity: the
        artifact's outputs are right even where timing them would mislead), else None."""
        return None

    @abc.abstractmethod
    def load(
        self,
        bundle: ModelBundle,
        device: Device,
        precision: Precision,
        options: SessionOptions | None = None,
    ) -> Session:
        """Create a session. Call only for a supported pair (see `check_supported`)."""

    def available(self) -> str | None:
        """None when the runtime's library is importable here, else why not."""
        return None
