"""ONNX Runtime: the `.onnx` artifact on the CPU provider, or the CUDA provider with IO binding."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from alexbench.devices import Device
from alexbench.errors import DeviceUnavailableError, ExportError
from alexbench.precision import Precision
from alexbench.runtimes.base import (
    ArtifactFormat,
    Backend,
    ModelBundle,
    Runtime,
    Session,
    SessionOptions,
)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Which ONNX file serves each precision. Every variant keeps fp32 inputs and outputs, so sessions
# are fed identically.
VARIANTS = {
    Precision.FP32: ArtifactFormat.ONNX,
    Precision.TF32: ArtifactFormat.ONNX,  # the fp32 model with the CUDA provider's use_tf32
    Precision.FP16: ArtifactFormat.ONNX_FP16,
    Precision.INT8: ArtifactFormat.ONNX_INT8,
}

SPIN_KEY = "session.intra_op.allow_spinning"


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def _default_threads() -> int:
    import torch

    return torch.get_num_threads()


def _own_stream() -> Any:
    """A torch CUDA stream of this session's own, handed to ORT as its compute stream, so the
    timer's CUDA events can be recorded on the stream ORT's kernels run on (device time).
    Not torch's default stream: its handle is 0, which ORT reads as "no stream given"."""
    import torch

    return torch.cuda.Stream()


# -- The optimised-model cache (CPU) -------------------------------------------------------------
#
# A CPU session's creation is mostly spent outside the graph optimiser: reading the initializers
# and pre-packing the weights into the layout the CPU's MLAS kernels read (AlexNet's fully
# connected weights are 200 MiB). So the first CPU session of a model saves ORT's ORT_ENABLE_ALL
# graph (`optimized_model_filepath`: NCHWc blocked convolutions, fused QLinear int8 ops) together
# with its pre-packed weights (an external-data file ORT maps back in), and later sessions load
# that with graph optimisations off. Both are specific to the CPU's instruction set and to the ORT
# build, hence the key; the thread count changes neither (checked: byte-identical files at 1 and
# 2 threads), so it is not part of it. `benchmarks/ort_by_hand_check.py --check cache` measures
# what it saves and checks the cached model runs as fast and gives identical outputs.

CACHE_DIR = "ort-cache"  # inside the model's artifact folder
CACHE_SCHEMA = "alexbench-ort-cache/1"
CACHE_LEVEL = "ORT_ENABLE_ALL"  # the level the cached graph was optimised at
ENTRY_MODEL, ENTRY_DATA, ENTRY_RECORD = "model.onnx", "model.onnx.data", "entry.json"
EXTERNAL_DATA_KEY = "session.optimized_model_external_initializers_file_name"
PREPACKED_KEY = "session.save_external_prepacked_constant_initializers"
# The instruction-set extensions MLAS chooses kernels and pre-packed weight layouts by.
CACHE_CPU_FLAGS = (
    "ssse3", "sse4_1", "sse4_2", "avx", "f16c", "fma", "avx2", "avx_vnni",
    "avx_vnni_int8", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
)  # fmt: skip
STALE_TMP_S = 3600.0  # a temporary folder this old was left by a killed process
# A source file changed within this long before its entry was recorded may keep the time stamps
# the record holds (coarse file-system clocks): its hash is checked instead of its stat.
RACY_NS = 2_000_000_000


def cpu_signature() -> dict[str, Any] | None:
    """The CPU as ORT's CPU kernels see it: model name and instruction-set flags (None where
    the flags cannot be read: then nothing is cached, since nothing could tell CPUs apart)."""
    model, flags = "", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and flags is None:
                flags = set(value.split())
    except OSError:
        return None
    if not flags:
        return None
    return {
        "machine": platform.machine(),
        "model": model,
        "flags": [f for f in CACHE_CPU_FLAGS if f in flags],
    }


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _stat(path: Path) -> dict[str, int]:
    """What changes when a file's bytes change (ctime cannot be set back, unlike mtime)."""
    st = os.stat(path)
    return {
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


_HASHES: dict[tuple[Any, ...], str] = {}


def _source_sha256(path: Path, stat: dict[str, int]) -> str:
    """The file's sha256, hashed once per process per version of the file."""
    from alexbench.checkpoint import file_sha256

    memo = (str(path.resolve()), *stat.values())
    if memo not in _HASHES:
        _HASHES[memo] = file_sha256(path)
    return _HASHES[memo]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


@dataclass
class CacheOutcome:
    """What the optimised-model cache did for one session (recorded in `info()`)."""

    hit: bool = False  # a valid entry was there and this session loaded it
    key: str | None = None  # sha256 of the key fields (source file, ORT, CPU, level)
    entry: str | None = None  # the cache entry's folder
    written: bool = False  # this session's optimised model was saved as the entry
    # The session runs the entry (its graph optimised at CACHE_LEVEL, loaded with
    # ORT_DISABLE_ALL): after a hit, and after a write too, so the first session times the same
    # model as the later ones.
    runs_entry: bool = False
    reason: str | None = None  # why it was not a hit, or not written
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hit": self.hit,
            "key": self.key,
            "entry": self.entry,
            "written": self.written,
            "runs_cached_model": self.runs_entry,
            "reason": self.reason,
            "source_sha256": self.fields.get("source_sha256"),
            # The cached graph was optimised at CACHE_LEVEL and is loaded with ORT_DISABLE_ALL.
            "session_level": "ORT_DISABLE_ALL" if self.runs_entry else CACHE_LEVEL,
        }


class OptimizedModelCache:
    """`<artifacts>/ort-cache/<source file>-<key of the ORT build and CPU>/`: the optimised model,
    its pre-packed external data, and entry.json (the key's fields, the source file's sha256 and
    stat, the files' sizes). An entry appears whole (a folder renamed into place) or not at all;
    one that does not match, is incomplete or does not load is rebuilt."""

    def __init__(self, ort: Any, source: Path, directory: Path, make_options: Any) -> None:
        self.ort, self.source, self.directory = ort, source, directory
        self.make_options = make_options  # level -> a fresh ort.SessionOptions
        self._warned = False  # one warning line per session at most

    def fields(self) -> dict[str, Any] | None:
        """The key's fields other than the source file's sha256 (None: the CPU is unknown)."""
        cpu = cpu_signature()
        if cpu is None:
            return None
        return {
            "schema": CACHE_SCHEMA,
            "onnxruntime": self.ort.__version__,
            "providers": [CPU_EP],
            "level": CACHE_LEVEL,
            "prepacked_weights": True,
            "cpu": cpu,
        }

    def entry(self, env: dict[str, Any]) -> Path:
        """One entry per source file and ORT build + CPU: a new model replaces its entry."""
        return self.directory / f"{self.source.name}-{_digest(env)[:16]}"

    def session(self) -> tuple[Any, CacheOutcome]:
        out = CacheOutcome()
        env = self.fields()
        if env is None:
            out.reason = "the CPU's instruction-set flags are unknown here: nothing is cached"
            return self._plain(), out
        entry = self.entry(env)
        stat = _stat(self.source)
        record, why = self._read(entry, env)
        sha = None
        if record is not None:
            sha = self._trusted_sha(record, stat) or _source_sha256(self.source, stat)
            why = self._problem(entry, record, sha)
        if record is not None and why is None:
            try:
                sess = self._load(entry)
            except Exception as e:  # a damaged entry is rebuilt, never fatal
                why = f"the cached model did not load ({_first_line(e)}); rebuilt"
                self._warn(f"{entry}: {why}")
            else:
                out.hit = out.runs_entry = True
                out.key, out.entry, out.fields = record["key"], str(entry), record["fields"]
                if record["source"] != stat:  # same bytes (hashed): remember the new stat
                    self._refresh(entry, record, stat)
                return sess, out
        out.fields = env | {"source_sha256": sha or _source_sha256(self.source, stat)}
        out.key, out.reason = _digest(out.fields), why
        sess = self._build(entry, out, stat)
        return sess, out

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def _load(self, entry: Path) -> Any:
        opts = self.make_options(self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        return self.ort.InferenceSession(
            str(entry / ENTRY_MODEL), sess_options=opts, providers=[CPU_EP]
        )

    def _plain(self) -> Any:
        opts = self.make_options(self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        return self.ort.InferenceSession(str(self.source), sess_options=opts, providers=[CPU_EP])

    @staticmethod
    def _read(entry: Path, env: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        path = entry / ENTRY_RECORD
        if not path.is_file():
            return None, "no cached model yet"
        try:
            record = json.loads(path.read_text())
            fields = dict(record["fields"])
            fields.pop("source_sha256")
            if not {"key", "source", "files", "recorded_ns"} <= record.keys():
                raise KeyError("a field is missing")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None, "unreadable cache entry record"
        if fields != env:
            return None, "the cache entry was made for another key"
        return record, None

    @staticmethod
    def _trusted_sha(record: dict[str, Any], stat: dict[str, int]) -> str | None:
        """The recorded sha256 when the source file is the very file the record describes (same
        inode, size and time stamps, changed well before the record was written)."""
        if record["source"] != stat or stat["mtime_ns"] > record["recorded_ns"] - RACY_NS:
            return None
        return record["fields"]["source_sha256"]

    @staticmethod
    def _problem(entry: Path, record: dict[str, Any], sha: str) -> str | None:
        if record["fields"]["source_sha256"] != sha:
            return "the source model changed since it was cached"
        if record["key"] != _digest(record["fields"]):
            return "the cache entry's key does not match its fields"
        for name, size in record["files"].items():
            path = entry / name
            if not path.is_file() or path.stat().st_size != size:
                return "the cached files are incomplete or were modified"
        return None

    @staticmethod
    def _refresh(entry: Path, record: dict[str, Any], stat: dict[str, int]) -> None:
        from alexbench.fileio import write_json

        record = record | {"source": stat, "recorded_ns": time.time_ns()}
        with contextlib.suppress(Exception):  # only spares the next lookup a hash
            write_json(entry / ENTRY_RECORD, record)

    def _build(self, entry: Path, out: CacheOutcome, stat: dict[str, int]) -> Any:
        """Create this session from the source, saving its optimised model as the entry."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._sweep()
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}.", dir=self.directory))
        except OSError as e:
            out.reason = f"the cache folder is not writable ({e.strerror or e}): not cached"
            return self._plain()
        try:
            opts = self.make_options(self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
            opts.optimized_model_filepath = str(tmp / ENTRY_MODEL)
            opts.add_session_config_entry(EXTERNAL_DATA_KEY, ENTRY_DATA)
            opts.add_session_config_entry(PREPACKED_KEY, "1")
            try:
                sess = self.ort.InferenceSession(
                    str(self.source), sess_options=opts, providers=[CPU_EP]
                )
            except Exception as e:
                sess = self._plain()  # raises the same error if the model itself is at fault
                out.reason = f"the optimised model could not be saved ({_first_line(e)})"
                return sess
            try:
                files = {n: (tmp / n).stat().st_size for n in (ENTRY_MODEL, ENTRY_DATA)}
                record = {
                    "schema": CACHE_SCHEMA,
                    "key": out.key,
                    "fields": out.fields,
                    "source": stat,
                    "source_name": self.source.name,
                    "files": files,
                    "recorded_ns": time.time_ns(),
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                (tmp / ENTRY_RECORD).write_text(json.dumps(record, indent=2) + "\n")
                os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
                self._install(tmp, entry)
            except OSError as e:
                out.reason = f"the optimised model could not be cached ({e.strerror or e})"
                return sess
            out.written, out.entry = True, str(entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        del sess  # this session ran the optimiser; the entry is what later sessions run
        try:
            sess, out.runs_entry = self._load(entry), True
        except Exception as e:
            out.reason = f"the cached model just written did not load ({_first_line(e)}); removed"
            self._warn(f"{entry}: {out.reason}")
            shutil.rmtree(entry, ignore_errors=True)
            out.written = False
            sess = self._plain()
        return sess

    @staticmethod
    def _install(tmp: Path, entry: Path) -> None:
        """Rename the finished folder into place. An older entry is moved aside first (a
        folder can only replace an empty one); if another process installed its own meanwhile,
        that one (made from the same key) stays."""
        try:
            os.rename(tmp, entry)
            return
        except OSError:
            if not entry.exists():
                raise
        aside = Path(tempfile.mkdtemp(prefix=f".old-{entry.name}.", dir=entry.parent))
        try:
            os.rename(entry, aside)
            os.rename(tmp, entry)
        except OSError:
            if not entry.exists():
                raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove temporary folders that killed processes left behind."""
        now = time.time()
        for p in self.directory.glob(".*-*"):
            if p.name.startswith((".tmp-", ".old-")) and p.is_dir():
                try:
                    if now - p.stat().st_mtime > STALE_TMP_S:
                        shutil.rmtree(p, ignore_errors=True)
                except OSError:
                    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class OnnxRuntimeSession(Session):
    """CPU: plain `run` on numpy feeds. CUDA: IO binding, on a torch stream of the session's
    own when ORT accepted it as its compute stream (so CUDA events bracket ORT's kernels)."""

    def __init__(
        self,
        sess: Any,
        device: Device,
        precision: Precision,
        opts: SessionOptions,
        stream: Any = None,
        stream_accepted: bool = False,
        cache: CacheOutcome | None = None,
    ) -> None:
        self.sess = sess
        self.cache = cache  # CPU: what the optimised-model cache did (None: not used)
        self.device = device
        self.precision = precision
        self._opts = opts
        cuda = device is Device.CUDA
        self._transfers = cuda and opts.include_transfers
        self._bound = cuda  # IO binding on CUDA: device-resident, or pinned host with transfers
        # `stream`: the torch stream offered to ORT as its compute stream (held here for as
        # long as ORT may use it); device time only where ORT reports it took it.
        self.event_stream = stream if stream_accepted else None
        self._stream = stream
        self.device_time_measurable = stream_accepted

    def prepare(self, batch: np.ndarray) -> Any:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not self._bound:
            return {INPUT_NAME: x}  # the feed dict is built here, not in the timed `run`
        import torch

        binding = self.sess.io_binding()
        if self._transfers:
            # The same bytes torch moves: fp32 from pinned host memory in, fp32 logits out.
            host = torch.from_numpy(x).pin_memory()
            binding.bind_input(INPUT_NAME, "cpu", 0, np.float32, list(host.shape), host.data_ptr())
            binding.bind_output(OUTPUT_NAME, "cpu")
            return (binding, host)
        ort = _ort()
        value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        binding.bind_ortvalue_input(INPUT_NAME, value)
        out = self._output_value(x.shape[0])
        if out is None:
            binding.bind_output(OUTPUT_NAME, "cuda", 0)
        else:  # preallocated: no allocation inside the timed call
            binding.bind_ortvalue_output(OUTPUT_NAME, out)
        return (binding, value, out)  # keep the OrtValues alive as long as the binding

    def _output_value(self, batch: int) -> Any:
        classes = self.sess.get_outputs()[0].shape[-1]
        if not isinstance(classes, int):
            return None
        return _ort().OrtValue.ortvalue_from_shape_and_type([batch, classes], np.float32, "cuda", 0)

    def synchronize(self) -> None:
        if self.event_stream is not None:
            self.event_stream.synchronize()

    def run(self, inputs: Any) -> Any:
        if self._bound:
            binding = inputs[0]
            # Returns after ORT synchronised its stream (bound outputs are ready).
            self.sess.run_with_iobinding(binding)
            return binding
        return self.sess.run([OUTPUT_NAME], inputs)[0]

    def to_numpy(self, outputs: Any) -> np.ndarray:
        if self._bound:
            return np.asarray(outputs.copy_outputs_to_cpu()[0], dtype=np.float32)
        return np.asarray(outputs, dtype=np.float32)

    def info(self) -> dict[str, Any]:
        so = self.sess.get_session_options()
        level = str(so.graph_optimization_level).split(".")[-1]
        if self.cache is not None and self.cache.runs_entry:
            level = CACHE_LEVEL  # optimised when the entry was made, loaded as it is
        out: dict[str, Any] = {
            "providers": self.sess.get_providers(),
            "intra_op_num_threads": so.intra_op_num_threads,
            "graph_optimization_level": level,
            "intra_op_allow_spinning": so.get_session_config_entry(SPIN_KEY) == "1",
            "io_binding": self._bound,
            "include_transfers": self._transfers,
            "cuda_graphs": False,
        }
        if self.device is not Device.CUDA:
            out["optimized_model_cache"] = None if self.cache is None else self.cache.to_dict()
        if self.device is Device.CUDA:
            out["device_time"] = self.device_time_measurable
            cuda_opts = self.sess.get_provider_options().get(CUDA_EP, {})
            out["use_tf32"] = cuda_opts.get("use_tf32")
        if self._opts.cuda_graphs:
            out["cuda_graphs_not_applied"] = "ONNX Runtime's sessions are not captured here"
        if self._opts.include_transfers and not self._transfers:
            out["include_transfers_not_applied"] = "CPU inputs already are in host memory"
        return out

    def close(self) -> None:
        self.sess = None  # before the stream it may run on
        self._stream = self.event_stream = None


class OnnxRuntime(Runtime):
    backend = Backend.ONNXRUNTIME
    artifact = ArtifactFormat.ONNX

    def __init__(self, cache: bool = True) -> None:
        # CPU sessions load the model's cached optimised graph (see OptimizedModelCache).
        self.cache = cache

    def available(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return None

    def artifact_for(self, precision: Precision) -> ArtifactFormat | None:
        return VARIANTS.get(precision)

    def supports(self, device: Device, precision: Precision) -> str | None:
        if precision is Precision.BF16:
            return "no bf16 ONNX variant (ORT's bf16 kernel coverage is partial)"
        if precision is Precision.FP16 and device is Device.CPU:
            return "the CPU provider has no fp16 convolution kernels (fp16 runs on CUDA)"
        if precision is Precision.INT8 and device is Device.CUDA:
            return "int8 QDQ models need the TensorRT provider on GPUs; int8 runs on CPU"
        if device is Device.CUDA and CUDA_EP not in _ort().get_available_providers():
            return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
        return None

    def load(
        self,
        bundle: ModelBundle,
        device: Device,
        precision: Precision,
        options: SessionOptions | None = None,
    ) -> Session:
        opts = options or SessionOptions()
        fmt = VARIANTS[precision]
        path = bundle.artifacts.get(fmt)
        if path is None:
            why = bundle.missing.get(fmt, "run `alexbench export`")
            raise ExportError(f"no {fmt.value} artifact: {why}")
        ort = _ort()
        threads = opts.threads or _default_threads()

        def session_options(level: Any) -> Any:
            so = ort.SessionOptions()
            so.graph_optimization_level = level
            # Set explicitly (0 would leave ORT's own default, one per physical core,
            # unrecorded): torch's default is also one per physical core, so both runtimes get
            # the same count.
            so.intra_op_num_threads = threads
            # ORT's default, set so it is on record: intra-op workers spin between calls (lower
            # latency back to back, a busy core between calls).
            so.add_session_config_entry(SPIN_KEY, "1")
            so.log_severity_level = 3  # errors only; the CPU fallback is detected, not logged
            return so

        if device is not Device.CUDA and self.cache:
            folder = (bundle.directory or Path(path).parent) / CACHE_DIR
            cached = OptimizedModelCache(ort, Path(path), folder, session_options)
            sess, outcome = cached.session()
            return OnnxRuntimeSession(sess, device, precision, opts, cache=outcome)
        so = session_options(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if device is Device.CUDA:
            if hasattr(ort, "preload_dlls"):
                # Finds the CUDA/cuDNN libraries shipped in the torch (nvidia-*) wheels.
                ort.preload_dlls()
            search = "EXHAUSTIVE" if opts.cudnn_benchmark else "HEURISTIC"
            cuda_options = {
                "device_id": "0",
                "cudnn_conv_algo_search": search,
                # Explicit: ORT enables TF32 by default, which would make "fp32" differ from
                # torch's fp32 (where we disable it).
                "use_tf32": "1" if precision is Precision.TF32 else "0",
            }
            stream = _own_stream()
            cuda_options["user_compute_stream"] = str(stream.cuda_stream)
            providers: list[Any] = [(CUDA_EP, cuda_options), CPU_EP]
        else:
            providers = [CPU_EP]
        sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        if device is Device.CUDA and CUDA_EP not in sess.get_providers():
            raise DeviceUnavailableError(
                f"onnxruntime fell back to {sess.get_providers()} instead of CUDA "
                "(are the CUDA 13 / cuDNN 9 libraries loadable?)"
            )
        if device is not Device.CUDA:
            return OnnxRuntimeSession(sess, device, precision, opts)
        applied = sess.get_provider_options().get(CUDA_EP, {})
        # ORT derives has_user_compute_stream from a non-null user_compute_stream.
        accepted = applied.get("has_user_compute_stream") == "1"
        return OnnxRuntimeSession(sess, device, precision, opts, stream, accepted)
