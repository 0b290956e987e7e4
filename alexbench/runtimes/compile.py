"""torch.compile (Inductor) over the eager model, with proof that the timed calls ran compiled code.

Dynamo caches compiled variants per *code object* and falls back to eager, logging once, when a
code object has more than `recompile_limit` variants. Compiling the module itself shares
`AlexNet.forward` between every session of the process, so earlier batch sizes, precisions,
thread counts or TF32 settings could push a later session into eager while its cells still said
"compile". So each session compiles its own copy of a one-line forwarding function: a fresh code
object whose cache holds this session's variants only. Two sessions held at once never share or
evict each other's variants; a global change (threads, TF32) made by one makes the other recompile
on its next call (its warm-up), counted against its own limit. `fullgraph=True` makes a graph
break or an exceeded limit an exception instead of a silent eager fallback, and a counting
Inductor backend lets `timing_problem` check that every timed call ran the compiled graph.
"""

from __future__ import annotations

import builtins
import inspect
import itertools
import logging
import time
import types
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch._dynamo import exc as dynamo_exc
from torch._inductor import list_mode_options

from alexbench import pt2e
from alexbench.devices import Device
from alexbench.precision import Precision
from alexbench.runtimes.base import (
    ArtifactFormat,
    Backend,
    CompileMode,
    ModelBundle,
    SessionOptions,
)
from alexbench.runtimes.torch_common import (
    TorchModuleSession,
    TorchRuntime,
    cast_copy,
    load_program,
)

# Variants one session may compile: one per batch size, plus one per thread-count/TF32 change.
# Dynamo's default (8) would fail a sweep of nine batch sizes; past this, `run` raises.
RECOMPILE_LIMIT = 64
# torch.compile takes a per-call limit only in recent releases (2.14 has it); older ones read the
# process-wide dynamo setting, which is raised instead. Either way the proof below still holds.
_PER_CALL_LIMIT = "recompile_limit" in inspect.signature(torch.compile).parameters


def _global_limit_name() -> str:
    """The process-wide dynamo setting that older torch releases read instead."""
    cfg = torch._dynamo.config
    return "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"


class _NoCudaRuntimeLine(logging.Filter):
    """Inductor's first compile looks for a CUDA toolkit; on a machine that has one but no GPU,
    torch logs "No CUDA runtime is found" in the middle of a CPU sweep. It says nothing about the
    cell, so this one line is dropped (every other cpp_extension message passes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


logging.getLogger("torch.utils.cpp_extension").addFilter(_NoCudaRuntimeLine())


class _NeverRaised(Exception):
    """Stands in for FailOnRecompileLimitHit where torch lacks it (the counts still catch it)."""


_LimitHit: type[Exception] = getattr(dynamo_exc, "FailOnRecompileLimitHit", _NeverRaised)
_session_ids = itertools.count()


def applied_mode(device: Device, requested: CompileMode, cuda_graphs: bool = False) -> str:
    """The Inductor mode really used for `requested` on `device` (recorded with results)."""
    if device is not Device.CUDA:
        # CUDA graphs exist on CUDA only: reduce-overhead adds nothing to the default mode, and
        # max-autotune is max-autotune-no-cudagraphs.
        return {
            CompileMode.DEFAULT: "default",
            CompileMode.REDUCE_OVERHEAD: "default",
            CompileMode.MAX_AUTOTUNE: "max-autotune-no-cudagraphs",
        }[requested]
    if requested is CompileMode.DEFAULT:
        # torch's own default: autotuning (max-autotune) costs minutes per shape on a GPU and is
        # asked for explicitly. --cuda-graphs becomes Inductor's own CUDA graphs
        # (reduce-overhead), which still call the counted graph.
        return "reduce-overhead" if cuda_graphs else "default"
    return requested.value


def inductor_patches(mode: str) -> dict[str, Any]:
    """Inductor's options for `mode`. Where the mode asks for CUDA graphs, a graph Inductor
    decides not to capture is an error: by default it only logs a line and runs without graphs,
    while the cell would still say `cuda_graphs`."""
    patches = dict(list_mode_options(mode))
    if patches.get("triton.cudagraphs") and hasattr(
        torch._inductor.config.triton, "cudagraph_or_error"
    ):
        patches["triton.cudagraph_or_error"] = True
    return patches


def _cudagraph_skips() -> int:
    """Inductor's process-wide count of CUDA graphs it declined to capture or replay."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


class _CountingInductor:
    """A torch.compile backend: Inductor with `patches`; its compiled graphs count their calls
    (one attribute increment per call, nothing measurable next to a forward pass)."""

    def __init__(self, patches: dict[str, Any]) -> None:
        self.patches = patches
        self.compiles = 0
        self.calls = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        compiled = torch._dynamo.lookup_backend("inductor")(
            gm, example_inputs, config_patches=self.patches
        )
        self.compiles += 1

        def counted(*args: Any) -> Any:  # dynamo calls a backend's result with positional args
            self.calls += 1
            return compiled(*args)

        return counted


def _forward(x: torch.Tensor) -> torch.Tensor:
    # `module` is a global of the session's own scope, not an argument: dynamo then treats its
    # weights as constants, which Inductor's freezing needs (weights passed as an argument
    # become graph inputs, and a quantized convolution's weight prepacking fails on them).
    return module(x)  # type: ignore[name-defined]  # noqa: F821


def _release(code: types.CodeType, scope: dict[str, Any]) -> None:
    """Drop this session's compiled variants and the graphs dynamo installed in its globals."""
    torch._dynamo.eval_frame.remove_from_cache(code)
    scope.clear()


class CompileSession(TorchModuleSession):
    """A compiled module that proves, after timing, that the timed calls ran compiled code."""

    compiled = True

    def __init__(
        self,
        module: torch.nn.Module,
        device: Device,
        precision: Precision,
        settings: dict[str, Any],
        options: SessionOptions,
    ) -> None:
        settings["compile_mode_requested"] = options.compile_mode.value
        self.mode_applied = applied_mode(device, options.compile_mode, options.cuda_graphs)
        if device is Device.CPU:
            # Inductor's pool of compile worker processes stays alive after compiling and, on a
            # small machine, competes with the timed calls: measured here (2 cores), the first
            # compile session in a process ran at 32-36 ms p50 instead of 14 ms at batch 1.
            # Compiling in-process costs a slower compile, never a slower steady state.
            torch._inductor.config.compile_threads = 1
        # Freezing (CPU) folds the weights into the graph as constants: the int8 program's
        # quantize/dequantize patterns then become oneDNN int8 kernels (without it they run as
        # fp32 math, or fail to compile), and convolutions get prepacked weights. Dynamo reads
        # the flag while tracing, before a backend's config patches apply, so `run` sets it
        # around each call (4.6 us, measured) instead of for the whole process.
        self._freezing = device is Device.CPU
        self._backend = _CountingInductor(inductor_patches(self.mode_applied))
        self._cuda_graphs = bool(self._backend.patches.get("triton.cudagraphs"))
        # A fresh code object and globals: dynamo's cache (and what it installs) is this session's.
        self._code = _forward.__code__.replace(co_name=f"compiled_forward_{next(_session_ids)}")
        scope: dict[str, Any] = {"__builtins__": builtins, "module": module}
        fn = types.FunctionType(self._code, scope, self._code.co_name)
        self._limit = RECOMPILE_LIMIT
        # dynamic=False: each batch size compiles its own specialised kernels (the fastest case)
        # on its first call, which the sweep reports as first inference, not steady state.
        limit: dict[str, Any] = {}
        if _PER_CALL_LIMIT:
            limit["recompile_limit"] = self._limit
        else:
            cfg = torch._dynamo.config
            name = _global_limit_name()
            setattr(cfg, name, max(getattr(cfg, name), self._limit))
            self._limit = getattr(cfg, name)  # the limit that applies, for the error message
        compiled = torch.compile(fn, fullgraph=True, dynamic=False, backend=self._backend, **limit)
        # Inductor applies CUDA graphs itself (`compiled`): a manual capture would hide the
        # calls we count.
        super().__init__(compiled, device, precision, settings, options)
        self._release = weakref.finalize(self, _release, self._code, scope)
        self._calls = 0
        self._compile_s: float | None = None
        self._mark = (0, 0, 0)
        self.evidence: dict[str, int] | None = None  # the last timed loop's counts
        # int8: oneDNN int8 kernels Inductor made for this session (counted around its compiles)
        self._int8 = precision is Precision.INT8
        self._int8_kernels = {"conv": 0, "linear": 0}
        # Inductor's counters when the last input was prepared (the baseline of its compile)
        self._counts = pt2e.int8_kernel_counts() if self._int8 else {}
        self._skips = _cudagraph_skips()  # Inductor's count when the last input was prepared

    def prepare(self, batch: Any) -> torch.Tensor:
        if self._int8:  # read here, untimed: a new batch size compiles on its first call
            self._counts = pt2e.int8_kernel_counts()
        self._skips = _cudagraph_skips()  # a skip is then this batch size's, not an earlier one's
        return super().prepare(batch)

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        self._calls += 1
        compiles = self._backend.compiles
        start = time.perf_counter()
        config = torch._inductor.config
        frozen = config.freezing
        config.freezing = self._freezing
        try:
            out = super().run(inputs)
        except _LimitHit as e:
            raise RuntimeError(
                f"torch.compile hit its recompile limit ({self._limit} variants in this session; "
                f"last guard failure: {self._last_guard_failure()}); it would run eager"
            ) from e
        finally:
            config.freezing = frozen
        if self._backend.compiles != compiles:  # this call compiled: tracing + Inductor + 1 run
            self._compile_s = time.perf_counter() - start
            if self._int8:
                after = pt2e.int8_kernel_counts()
                self._int8_kernels = {k: after[k] - self._counts[k] for k in after}
        return out

    def timing_started(self) -> None:
        self._mark = (self._calls, self._backend.calls, self._backend.compiles)

    def timing_problem(self) -> str | None:
        calls = self._calls - self._mark[0]
        graph_calls = self._backend.calls - self._mark[1]
        compiles = self._backend.compiles - self._mark[2]
        self.evidence = {"calls": calls, "compiled_calls": graph_calls, "compiles": compiles}
        if compiles:
            return (
                f"torch.compile compiled {compiles} time(s) during timing (last guard failure: "
                f"{self._last_guard_failure()}): the timed calls include compilation"
            )
        if graph_calls < calls:
            return (
                f"torch.compile ran eager in {calls - graph_calls} of {calls} timed calls "
                f"({self._eager_cause()})"
            )
        if graph_calls > calls:
            return f"{graph_calls} compiled graphs ran in {calls} calls: a graph break ran eager"
        skips = _cudagraph_skips() - self._skips
        if self._cuda_graphs and skips:
            # cudagraph_or_error covers the skips Inductor decides while compiling; those it
            # decides at run time (an input mutated, too many re-recordings) read the global
            # config, and only log and count.
            return (
                f"Inductor skipped CUDA graphs {skips} time(s) in this session (its log says "
                "why): the cell would run without graphs"
            )
        if self._int8 and not any(self._int8_kernels.values()):
            return (
                "the int8 program compiled without oneDNN int8 kernels (freezing or torchao's "
                "lowering passes did not apply): its quantize/dequantize ops ran as fp32 math"
            )
        return None

    def _last_guard_failure(self) -> str:
        failures = torch._dynamo.utils.guard_failures.get(self._code)
        return failures[-1] if failures else "none recorded"

    @staticmethod
    def _eager_cause() -> str:
        stance = getattr(getattr(torch._dynamo.eval_frame, "_stance", None), "stance", "default")
        if stance != "default":
            return f"dynamo fell back to eager: torch.compiler stance {stance!r}"
        if torch._dynamo.config.disable:
            return "dynamo fell back to eager: dynamo is disabled (TORCHDYNAMO_DISABLE)"
        return "dynamo fell back to eager: recompile limit or a skipped frame"

    def info(self) -> dict[str, Any]:
        return dict(
            super().info(),
            compile_mode=self.mode_applied,
            freezing=self._freezing,
            compile_threads=torch._inductor.config.compile_threads,
            cuda_graphs=self._cuda_graphs,
            compile_s=None if self._compile_s is None else round(self._compile_s, 3),
            compiled_variants=self._backend.compiles,
            **({"int8_kernels": self._int8_kernels} if self._int8 else {}),
            recompile_limit=self._limit,
            timing_evidence=self.evidence,
        )

    def close(self) -> None:
        self._release()
        super().close()


class CompileRuntime(TorchRuntime):
    """Inductor over the eager model cast to the precision; at int8, over the PT2E-quantised
    program (exported with real-image calibration), which Inductor's freezing turns into oneDNN
    int8 kernels. The x86 quantizer targets CPUs only."""

    backend = Backend.COMPILE
    session_class = CompileSession

    def artifact_for(self, precision: Precision) -> ArtifactFormat | None:
        return ArtifactFormat.PT2_INT8 if precision is Precision.INT8 else None

    def supports(self, device: Device, precision: Precision) -> str | None:
        if precision is not Precision.INT8:
            return super().supports(device, precision)
        if device is not Device.CPU:
            return "PT2E int8 uses the x86 Inductor quantizer: CPU only"
        return pt2e.unavailable()

    def make_module(
        self, bundle: ModelBundle, device: Device, precision: Precision
    ) -> torch.nn.Module:
        if precision is Precision.INT8:
            pt2e.quantizer_module()  # registers the int8 lowering passes before compiling
            path = self.artifact_path(bundle, ArtifactFormat.PT2_INT8)
            return load_program(path).module()
        return cast_copy(bundle.loaded.model, device, precision)
