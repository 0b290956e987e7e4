"""ONNX Runtime's optimised-model cache (CPU): the first session of a model saves ORT's optimised
graph with its pre-packed weights; later sessions load that instead of optimising again."""

from __future__ import annotations

import contextlib
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

from alexbench.artifacts import ORT_CACHE_DIR
from alexbench.environment import cpuinfo
from alexbench.exporters.manifest import config_key
from alexbench.fileio import read_json

CPU_EP = "CPUExecutionProvider"
# # A CPU session's creation is mostly spent outside the graph optimiser: reading the initializers
# and pre-packing the weights into the layout the CPU's MLAS kernels read (AlexNet's fully
# connected weights are 200 MiB). So the first CPU session of a model saves ORT's ORT_ENABLE_ALL
# graph (`optimized_model_filepath`: NCHWc blocked convolutions, fused QLinear int8 ops) together
# with its pre-packed weights (an external-data file ORT maps back in), and later sessions load
# that with graph optimisations off. Both are specific to the CPU's instruction set and to the ORT
# build, hence the key; the thread count changes neither (checked: byte-identical files at 1 and
# 2 threads), so it is not part of it. `benchmarks/ort_by_hand_check.py --check cache` measures
# what it saves and checks the cached model runs as fast and gives identical outputs.

CACHE_DIR = ORT_CACHE_DIR  # inside the model's artifact folder
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
    model, flags = cpuinfo() or ("", frozenset())
    if not flags:
        return None
    return {
        "machine": platform.machine(),
        "model": model,
        "flags": [f for f in CACHE_CPU_FLAGS if f in flags],
    }


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
        return self.directory / f"{self.source.name}-{config_key(env)[:16]}"

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
        out.key, out.reason = config_key(out.fields), why
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
            record = read_json(path)
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
        if record["key"] != config_key(record["fields"]):
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
            with contextlib.suppress(OSError):  # only when empty: a failed or interrupted first
                self.directory.rmdir()  # build leaves no empty cache folder beside the models
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
