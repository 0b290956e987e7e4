"""torch.compile sessions: isolated from other sessions' variants, and never timed running eager."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from alexbench.bench.sweep import BenchSpec, CellStatus, run_sweep
from alexbench.bench.timer import RunLength, time_session
from alexbench.checkpoint import LoadedModel
from alexbench.devices import Device
from alexbench.precision import Precision
from alexbench.runtimes import Backend, ModelBundle, SessionOptions, get_runtime
from alexbench.runtimes import compile as compile_rt
from alexbench.runtimes.base import CompileMode

SHORT = RunLength(warmup=1, min_seconds=0.0, min_iters=3, max_iters=5)


@pytest.fixture(scope="module")
def bundle(small_model: LoadedModel) -> ModelBundle:
    """The conftest's small model (10 classes, 64 px); compile needs no exported artifact."""
    return ModelBundle(small_model)


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Sessions set threads and TF32 process-wide; give the next test what this one found."""
    threads = torch.get_num_threads()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _batch(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, 64, 64), dtype=np.float32)


def _load(bundle: ModelBundle, precision: Precision = Precision.FP32, **options):
    return get_runtime(Backend.COMPILE).load(
        bundle, Device.CPU, precision, SessionOptions(**options)
    )


def test_session_runs_compiled_after_many_variants(bundle: ModelBundle) -> None:
    # Nine variants, all held open: batch sizes, precisions, a thread count and a TF32 flag (both
    # dynamo guards, so recompiles). Before sessions were isolated, these all landed on the shared
    # AlexNet.forward and the ninth pushed it past dynamo's limit of 8 into eager.
    threads = torch.get_num_threads()
    held = []
    variants = [  # (precision, session options, TF32 flag while compiling, batch sizes)
        (Precision.FP32, {}, False, 3),
        (Precision.BF16, {}, False, 2),
        (Precision.FP32, {"threads": 1}, False, 2),
        (Precision.FP32, {}, True, 2),
    ]
    for precision, opts, tf32, batches in variants:
        session = _load(bundle, precision, **opts)
        torch.backends.cuda.matmul.allow_tf32 = tf32  # as a later TF32 session would leave it
        for n in range(1, batches + 1):
            session(_batch(n))
        held.append(session)
    assert sum(s.info()["compiled_variants"] for s in held) == 9

    session = _load(bundle, threads=threads)
    x = _batch(2)
    timing = time_session(session, [session.prepare(x)], SHORT)
    assert timing.problem is None
    ev = session.evidence
    assert ev is not None and ev["compiles"] == 0
    assert ev["compiled_calls"] == ev["calls"] == len(timing.latencies_ns) >= 3
    info = session.info()
    assert info["compiled_variants"] == 1 and info["compile_s"] > 0
    assert info["timing_evidence"] == ev
    eager = get_runtime(Backend.EAGER).load(bundle, Device.CPU, Precision.FP32)
    np.testing.assert_allclose(session(x), eager(x), rtol=1e-4, atol=1e-5)

    # A held session whose thread count changed underneath recompiles in warm-up, not timing.
    one_thread = held[2]
    timing = time_session(one_thread, [one_thread.prepare(_batch(1))], SHORT)
    assert timing.problem is None
    assert one_thread.info()["compiled_variants"] == 3
    assert one_thread.evidence["compiled_calls"] == one_thread.evidence["calls"] >= 3
    for s in [*held, session]:
        s.close()


def test_compiling_during_timing_is_a_problem(bundle: ModelBundle) -> None:
    session = _load(bundle)
    session.run(session.prepare(_batch(1)))
    # The timer warms up every input it is given, so drive the window by hand: a new batch size
    # inside it compiles, as a shape the warm-up never saw would.
    session.timing_started()
    session.run(session.prepare(_batch(2)))
    problem = session.timing_problem()
    assert problem is not None
    assert "compiled 1 time(s) during timing" in problem
    assert "size mismatch" in problem  # dynamo's own guard-failure reason
    assert session.evidence["compiles"] == 1
    session.close()


def test_eager_fallback_is_a_problem(bundle: ModelBundle) -> None:
    session = _load(bundle)
    prepared = [session.prepare(_batch(1))]
    session.run(prepared[0])  # compiled, but dynamo is then told to run eager
    with torch.compiler.set_stance("force_eager"):
        timing = time_session(session, prepared, SHORT)
    n = len(timing.latencies_ns)
    assert timing.problem == (
        f"torch.compile ran eager in {n} of {n} timed calls "
        "(dynamo fell back to eager: torch.compiler stance 'force_eager')"
    )
    assert session.evidence == {"calls": n, "compiled_calls": 0, "compiles": 0}
    session.close()


@pytest.fixture
def set_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """Sets sessions' recompile limit, restored after the test. Where torch.compile has no
    per-call limit (torch 2.11) sessions raise the process-wide one and never lower it, so the
    test sets that too (restored by hand: monkeypatch's undo deletes dynamo config entries)."""
    cfg = torch._dynamo.config
    name = compile_rt._global_limit_name()
    before = getattr(cfg, name)

    def set_to(n: int) -> None:
        monkeypatch.setattr(compile_rt, "RECOMPILE_LIMIT", n)
        if not compile_rt._PER_CALL_LIMIT:
            setattr(cfg, name, n)

    yield set_to
    setattr(cfg, name, before)


def test_recompile_limit_raises_instead_of_running_eager(
    bundle: ModelBundle, set_limit: Callable[[int], None]
) -> None:
    set_limit(1)
    session = _load(bundle)
    session(_batch(1))
    with pytest.raises(RuntimeError, match=r"recompile limit \(1 variants.*size mismatch"):
        time_session(session, [session.prepare(_batch(2))], SHORT)
    session.close()


def test_sweep_cells_that_would_run_eager_are_errors(
    bundle: ModelBundle, set_limit: Callable[[int], None]
) -> None:
    spec = BenchSpec([Backend.COMPILE], [Device.CPU], [Precision.FP32], [1, 2], run_length=SHORT)
    set_limit(1)
    ok, over = run_sweep(bundle, spec, {Device.CPU: None})
    assert ok.status is CellStatus.OK, ok.reason
    assert ok.session_info["timing_evidence"]["compiled_calls"] >= 3
    assert over.status is CellStatus.ERROR and over.stats is None
    assert "recompile limit (1 variants" in over.reason

    set_limit(64)
    with torch.compiler.set_stance("force_eager"):
        (cell,) = run_sweep(bundle, dataclasses.replace(spec, batches=[1]), {Device.CPU: None})
    assert cell.status is CellStatus.ERROR
    assert cell.reason.startswith("torch.compile ran eager in")
    assert cell.parity is not None and cell.parity.passed  # eager is right: parity cannot tell


@pytest.mark.parametrize(
    ("device", "mode", "graphs", "applied"),
    [
        (Device.CPU, CompileMode.DEFAULT, False, "default"),
        (Device.CPU, CompileMode.REDUCE_OVERHEAD, False, "default"),
        (Device.CPU, CompileMode.MAX_AUTOTUNE, True, "max-autotune-no-cudagraphs"),
        (Device.CUDA, CompileMode.DEFAULT, False, "default"),
        (Device.CUDA, CompileMode.DEFAULT, True, "reduce-overhead"),
        (Device.CUDA, CompileMode.REDUCE_OVERHEAD, False, "reduce-overhead"),
        (Device.CUDA, CompileMode.MAX_AUTOTUNE, False, "max-autotune"),
    ],
)
def test_applied_mode(device: Device, mode: CompileMode, graphs: bool, applied: str) -> None:
    assert compile_rt.applied_mode(device, mode, graphs) == applied


def test_only_the_no_cuda_runtime_line_of_cpp_extension_is_dropped() -> None:
    log = logging.getLogger("torch.utils.cpp_extension")

    def passes(message: str) -> bool:
        return log.filter(logging.LogRecord(log.name, logging.WARNING, "f", 1, message, (), None))

    assert not passes("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
    assert passes("Error building extension 'x'")


def test_a_cuda_graph_inductor_skips_is_an_error_not_a_silent_fallback() -> None:
    # Inductor only logs when it cannot capture a CUDA graph; the cell would still say graphs.
    graphs = compile_rt.inductor_patches("reduce-overhead")
    assert graphs["triton.cudagraphs"] and graphs["triton.cudagraph_or_error"]
    for mode in ("default", "max-autotune-no-cudagraphs"):
        assert "triton.cudagraph_or_error" not in compile_rt.inductor_patches(mode)


def test_a_cuda_graph_inductor_skips_at_run_time_is_a_problem(bundle: ModelBundle) -> None:
    """Skips decided at run time (a mutated input, re-recording) only log and count, whatever
    cudagraph_or_error says: the session reads Inductor's counter. No compile needed here."""
    from torch._dynamo.utils import counters

    session = _load(bundle)
    session.timing_started()
    assert session.timing_problem() is None
    counters["inductor"]["cudagraph_skips"] += 1  # as Inductor's skip on a GPU does
    assert session.timing_problem() is None  # a CPU session asked for no graphs
    session._cuda_graphs = True  # what reduce-overhead on CUDA sets
    assert "Inductor skipped CUDA graphs 1 time(s)" in session.timing_problem()
    session.close()


def test_info_records_requested_and_applied_mode(bundle: ModelBundle) -> None:
    session = _load(bundle, compile_mode=CompileMode.REDUCE_OVERHEAD)
    info = session.info()  # before any call: nothing compiled yet
    assert info["compile_mode_requested"] == "reduce-overhead"
    assert info["compile_mode"] == "default" and info["cuda_graphs"] is False
    assert info["compile_s"] is None and info["compiled_variants"] == 0
    session.close()


def test_close_releases_compiled_variants(bundle: ModelBundle) -> None:
    session = _load(bundle)
    session(_batch(1))
    code = session._code
    assert torch._dynamo.eval_frame._debug_get_cache_entry_list(code)
    session.close()
    assert not torch._dynamo.eval_frame._debug_get_cache_entry_list(code)


@pytest.mark.cuda
def test_cuda_reduce_overhead_times_compiled_graphs(bundle: ModelBundle) -> None:
    opts = SessionOptions(compile_mode=CompileMode.REDUCE_OVERHEAD)
    session = get_runtime(Backend.COMPILE).load(bundle, Device.CUDA, Precision.FP32, opts)
    prepared = [session.prepare(_batch(2))]
    timing = time_session(session, prepared, RunLength(3, 0.0, 5, 10))
    assert timing.problem is None
    assert session.evidence["compiled_calls"] == session.evidence["calls"] >= 5
    assert session.info()["compile_mode"] == "reduce-overhead" and session.info()["cuda_graphs"]
    session.close()
