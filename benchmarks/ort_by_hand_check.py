"""ONNX Runtime on CPU, alexbench's session against the same model run by hand, in one process
with alternating rounds so every variant sees the same machine state.

    python benchmarks/ort_by_hand_check.py --artifacts /tmp/ortwork/art --rounds 5 --seconds 1.5

Two checks (--check, both by default):

- `cache`: the optimised-model cache (alexbench/runtimes/ort_cache.py). Session creation
  uncached (the source model, ORT_ENABLE_ALL), first session (optimises, writes the entry and
  loads it back; its source hashed as in a new process) and cached (the entry loaded with
  ORT_DISABLE_ALL), per round in alternating order; then the steady-state latency of the
  three sessions at batch 1 and 64 (rotated order per round) and whether their outputs are
  identical.
- `by-hand`: batch 1, alexbench's OnnxRuntimeSession (what a bench cell times) against
  `ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})` with
  ORT's defaults, plus variants that each change one thing: the thread count, one input buffer
  against three rotated ones, the output name list, and a torch eager call just before the
  timed loop (the sweep runs an eager reference first; torch's OpenMP workers may still spin).

Each line: the median per-call latency of each variant and the median over rounds of its ratio
to the first variant (> 1: slower). --out writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from alexbench.artifacts import ArtifactFormat, ModelBundle
from alexbench.bench.timer import RunLength, time_session
from alexbench.checkpoint import load_model
from alexbench.devices import Device
from alexbench.environment import capture, load_average
from alexbench.exporters.manifest import Manifest
from alexbench.precision import Precision
from alexbench.runtimes import onnxruntime as ortmod
from alexbench.runtimes.onnxruntime import OnnxRuntime

FILES = {Precision.FP32: "alexnet.onnx", Precision.INT8: "alexnet.int8.onnx"}
FORMATS = {Precision.FP32: ArtifactFormat.ONNX, Precision.INT8: ArtifactFormat.ONNX_INT8}


def timed(call: Callable[[Any], Any], inputs: list[Any], seconds: float) -> float:
    """Median per-call latency in ms over `seconds` of back-to-back calls (after 3 warm-ups),
    the inputs rotated: the loop of alexbench.bench.timer.time_latency."""
    k = len(inputs)
    for i in range(max(3, k)):
        call(inputs[i % k])
    samples: list[int] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or len(samples) < 10:
        x = inputs[i % k]
        t0 = time.perf_counter_ns()
        call(x)
        samples.append(time.perf_counter_ns() - t0)
        i += 1
    return statistics.median(samples) / 1e6


def alternate(
    variants: dict[str, Callable[[], float]], rounds: int, rotate: bool = True
) -> dict[str, Any]:
    """Run every variant once per round, the order rotated each round; ratios to the first."""
    names = list(variants)
    got: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)] if rotate else names
        if not rotate and r % 2:
            order = order[::-1]
        for n in order:
            got[n].append(variants[n]())
    base = names[0]
    return {
        n: {
            "median": statistics.median(v),
            "values": v,
            "ratio_to_" + base: statistics.median(a / b for a, b in zip(v, got[base], strict=True)),
            "ratios": [a / b for a, b in zip(v, got[base], strict=True)],
        }
        for n, v in got.items()
    }


def show(title: str, res: dict[str, Any], unit: str) -> None:
    base = next(iter(res))
    parts = []
    for n, r in res.items():
        ratio = r[f"ratio_to_{base}"]
        spread = ", ".join(f"{x:.3f}" for x in r["ratios"])
        tail = "" if n == base else f" x{ratio:.3f} [{spread}]"
        parts.append(f"{n} {r['median']:.3f} {unit}{tail}")
    print(f"{title}: " + "; ".join(parts), flush=True)


def bundle_for(art: Path) -> ModelBundle:
    manifest = Manifest.load(art)
    meta = manifest.model if manifest else {}
    loaded = load_model(
        seed=0, num_classes=meta.get("num_classes", 10), image_size=meta.get("image_size", 224)
    )
    paths = {FORMATS[p]: art / f for p, f in FILES.items() if (art / f).is_file()}
    return ModelBundle(loaded, paths, {}, art)


def cache_check(bundle: ModelBundle, precision: Precision, args: argparse.Namespace) -> dict:
    size = bundle.loaded.meta.image_size
    source = bundle.artifacts[FORMATS[precision]]

    def entry() -> Path:
        cache = ortmod.OptimizedModelCache(ort, source, bundle.directory / ortmod.CACHE_DIR, None)
        return cache.entry(cache.fields())

    def create(kind: str) -> float:
        ortmod._HASHES.clear()  # as in a new process: the source is hashed unless its stat is known
        if kind == "write":
            shutil.rmtree(entry(), ignore_errors=True)
        t0 = time.perf_counter()
        s = OnnxRuntime(cache=kind != "uncached").load(bundle, Device.CPU, precision)
        dt = time.perf_counter() - t0
        state = s.info()["optimized_model_cache"]
        assert kind == "uncached" or state["hit"] is (kind == "cached"), state
        s.close()
        return dt

    create("write")  # an entry for the first "cached" round
    creation = alternate(
        {k: (lambda k=k: create(k)) for k in ("uncached", "write", "cached")},
        args.rounds,
        rotate=False,
    )
    show(f"{precision.value} session creation", creation, "s")

    ortmod._HASHES.clear()
    shutil.rmtree(entry(), ignore_errors=True)
    sessions = {
        "uncached": OnnxRuntime(cache=False).load(bundle, Device.CPU, precision),
        "first": OnnxRuntime().load(bundle, Device.CPU, precision),
        "cached": OnnxRuntime().load(bundle, Device.CPU, precision),
    }
    assert sessions["first"].info()["optimized_model_cache"]["written"]
    assert sessions["cached"].info()["optimized_model_cache"]["hit"]
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((64, 3, size, size), dtype=np.float32) for _ in range(3)]
    outs = {n: [s(x) for x in pool] for n, s in sessions.items()}
    identical = {
        n: all(np.array_equal(a, b) for a, b in zip(o, outs["uncached"], strict=True))
        for n, o in outs.items()
    }
    print(f"{precision.value} outputs identical to uncached: {identical}", flush=True)
    steady = {}
    for batch in args.batch:
        prepared = {n: [s.prepare(x[:batch]) for x in pool] for n, s in sessions.items()}
        variants = {
            n: (lambda n=n, p=prepared: timed(sessions[n].run, p[n], args.seconds))
            for n in sessions
        }
        steady[batch] = alternate(variants, args.rounds)
        show(f"{precision.value} b{batch} steady state", steady[batch], "ms")
    for s in sessions.values():
        s.close()
    return {"creation_s": creation, "steady_ms": steady, "identical": identical}


def by_hand_check(bundle: ModelBundle, precision: Precision, args: argparse.Namespace) -> dict:
    size = bundle.loaded.meta.image_size
    path = str(bundle.artifacts[FORMATS[precision]])
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((1, 3, size, size), dtype=np.float32) for _ in range(3)]
    threads = torch.get_num_threads()

    def by_hand(**options: Any) -> Any:
        so = ort.SessionOptions()
        for k, v in options.items():
            setattr(so, k, v)
        return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])

    uncached = OnnxRuntime(cache=False).load(bundle, Device.CPU, precision)
    cached = OnnxRuntime().load(bundle, Device.CPU, precision)  # makes or loads the entry
    plain = by_hand()
    pinned = by_hand(intra_op_num_threads=threads)
    eager = bundle.loaded.model.eval()
    eager_x = torch.from_numpy(pool[0])

    def after_torch(fn: Callable[[], float]) -> float:
        with torch.inference_mode():
            eager(eager_x)  # torch's OpenMP workers are busy (or spinning) right now
        return fn()

    ab_inputs = [uncached.prepare(x) for x in pool]
    hand_one = [{"input": pool[0]}]
    hand_three = [{"input": x} for x in pool]
    run_length = RunLength(min_seconds=args.seconds)

    def bench_timer(session: Any) -> float:
        prepared = [session.prepare(x) for x in pool]
        return float(np.median(time_session(session, prepared, run_length).latencies_ns)) / 1e6

    variants = {
        "by_hand": lambda: timed(lambda f: plain.run(None, f), hand_one, args.seconds),
        "by_hand_3_inputs": lambda: timed(lambda f: plain.run(None, f), hand_three, args.seconds),
        "by_hand_names": lambda: timed(lambda f: plain.run(["logits"], f), hand_one, args.seconds),
        f"by_hand_{threads}_threads": lambda: timed(
            lambda f: pinned.run(None, f), hand_one, args.seconds
        ),
        "by_hand_after_torch": lambda: after_torch(
            lambda: timed(lambda f: plain.run(None, f), hand_one, args.seconds)
        ),
        "alexbench": lambda: timed(uncached.run, ab_inputs, args.seconds),
        "alexbench_1_input": lambda: timed(uncached.run, ab_inputs[:1], args.seconds),
        "alexbench_bench_timer": lambda: bench_timer(uncached),
        "alexbench_cached_bench_timer": lambda: bench_timer(cached),
        "alexbench_after_torch": lambda: after_torch(
            lambda: timed(uncached.run, ab_inputs, args.seconds)
        ),
    }
    info = {
        "alexbench": uncached.info(),
        "by_hand_intra_op_num_threads": plain.get_session_options().intra_op_num_threads,
    }
    res = alternate(variants, args.rounds)
    show(f"{precision.value} b1", res, "ms")
    return {"variants": res, "info": info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--precision", default="fp32,int8")
    parser.add_argument("--check", default="cache,by-hand")
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.batch = [int(b) for b in args.batch.split(",")]
    bundle = bundle_for(args.artifacts)
    checks = args.check.split(",")
    doc: dict[str, Any] = {
        "machine": capture()["cpu"],
        "platform": platform.platform(),
        "onnxruntime": ort.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m_start": load_average(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "results": {},
    }
    print(f"load average at start: {doc['load_average_1m_start']}", flush=True)
    for name in args.precision.split(","):
        precision = Precision(name)
        if FORMATS[precision] not in bundle.artifacts:
            print(f"{name}: no {FILES[precision]} in {args.artifacts}, skipped")
            continue
        got = doc["results"].setdefault(name, {})
        if "cache" in checks:
            got["cache"] = cache_check(bundle, precision, args)
        if "by-hand" in checks:
            got["by_hand"] = by_hand_check(bundle, precision, args)
    doc["load_average_1m_end"] = load_average()
    print(f"load average at end: {doc['load_average_1m_end']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
