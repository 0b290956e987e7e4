"""Shared fixtures: a small exported model (10 classes, 64 px) built once per session, the
`cuda` marker skipped automatically without a GPU, and torch's RNG restored after every test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from alexbench.bench.memory import glibc
from alexbench.checkpoint import LoadedModel, load_model
from alexbench.exporters import ensure_artifacts
from alexbench.runtimes import ArtifactFormat, ModelBundle

SMALL_CLASSES = 10
SMALL_SIZE = 64


def _find_shared_tarball() -> Path:
    """The shared CIFAR-10 JPEG tarball: $ALEXBENCH_SHARED_DATA, else ../shared/data beside the
    checkout, else the workplace's /work/shared/data (CI may clone the repo elsewhere)."""
    name = "cifar10-train-jpg.tar.gz"
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / name]
    if os.environ.get("ALEXBENCH_SHARED_DATA"):
        candidates.insert(0, Path(os.environ["ALEXBENCH_SHARED_DATA"]) / name)
    candidates.append(Path("/work/shared/data") / name)
    return next((c for c in candidates if c.is_file()), candidates[0])


SHARED_TARBALL = _find_shared_tarball()


# glibc hands every freed block above its mmap threshold (at most 32 MiB, adjusted on the fly)
# back to the kernel, so each model build, export and large forward faults its memory in again
# page by page. On the 2-core CI machine (AMD EPYC, family 25 model 1) kernel time was 513 s of
# an 18 min 11 s suite, nearly all minor page faults; keeping freed memory in the heap
# (thresholds far above any allocation the suite makes) took it to 14 min 00 s, 250 s of kernel
# time. Test-only: what `alexbench bench` measures is left to the user's own allocator (its
# results record these variables, and `compare` names a difference).
_KEEP_BYTES = 2**31 - 1  # the largest value mallopt's int accepts
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _keep_freed_memory() -> dict[str, str | None]:
    """Keep freed memory in the heap, in this process (mallopt) and in every command a test
    starts (the environment, which glibc reads at start-up). Returns the variables' old values."""
    before = {k: os.environ.get(k) for k in _MALLOC_ENV}
    os.environ.update(dict.fromkeys(_MALLOC_ENV, str(_KEEP_BYTES)))
    libc = glibc()
    if libc is not None:  # elsewhere (macOS, musl) the environment is inert
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        libc.mallopt(m_mmap_threshold, _KEEP_BYTES)
        libc.mallopt(m_trim_threshold, _KEEP_BYTES)
    return before


@pytest.fixture(autouse=True, scope="module")
def _return_freed_memory():
    """Give the heap's free pages back after each test file, so that holes left between live
    blocks do not add up over the session: with it, the pytest process peaked at 10.4 GB, as it
    did with glibc's defaults (10.5 GB); within one file, freed memory is reused."""
    yield
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _restore_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_configure(config: pytest.Config) -> None:
    """Machine caches (the measured ceilings) go to a folder of the session's, inherited by the
    commands tests run: a quick measurement taken while the suite loads the machine must never
    become the user's cached ceilings (it did: the next `bench` scored against it)."""
    cache = tempfile.mkdtemp(prefix="alexbench-test-cache-")
    config.stash[_CACHE_KEY] = (cache, os.environ.get("XDG_CACHE_HOME"))
    os.environ["XDG_CACHE_HOME"] = cache
    config.stash[_MALLOC_KEY] = _keep_freed_memory()


def pytest_unconfigure(config: pytest.Config) -> None:
    _restore_env(config.stash.get(_MALLOC_KEY, {}))
    cache, before = config.stash.get(_CACHE_KEY, (None, None))
    if cache is None:
        return
    shutil.rmtree(cache, ignore_errors=True)
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


_CACHE_KEY = pytest.StashKey[tuple]()
_MALLOC_KEY = pytest.StashKey[dict]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _rng_guard():
    """Restore torch's global RNG and thread count after each test, so that test order cannot
    change results (a command run in-process with `--threads 1` left every later test on one
    thread)."""
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    yield
    torch.set_rng_state(state)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_model() -> LoadedModel:
    return load_model(seed=0, num_classes=SMALL_CLASSES, image_size=SMALL_SIZE)


@pytest.fixture(scope="session")
def small_artifacts(tmp_path_factory: pytest.TempPathFactory, small_model: LoadedModel) -> Path:
    out = tmp_path_factory.mktemp("exports")
    ensure_artifacts(small_model, out)
    return out


@pytest.fixture
def corrupt_artifacts(small_artifacts: Path, tmp_path: Path) -> Path:
    """A copy of the small exports whose ONNX file computes something else (its first conv's
    weights scaled by 1.1): the ONNX Runtime cells fail parity."""
    import onnx
    from onnx import numpy_helper

    corrupt = tmp_path / "corrupt-exports"
    shutil.copytree(small_artifacts, corrupt)
    model = onnx.load(str(corrupt / "alexnet.onnx"))
    init = next(t for t in model.graph.initializer if len(t.dims) == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.1, init.name))
    onnx.save(model, str(corrupt / "alexnet.onnx"))
    return corrupt


@pytest.fixture(scope="session")
def small_bundle(small_model: LoadedModel, small_artifacts: Path) -> ModelBundle:
    names = {ArtifactFormat.TORCHSCRIPT: "alexnet.pt", ArtifactFormat.ONNX: "alexnet.onnx"}
    names[ArtifactFormat.PT2] = "alexnet.pt2"
    return ModelBundle(small_model, {f: small_artifacts / n for f, n in names.items()})


@pytest.fixture
def small_batch() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.standard_normal((5, 3, SMALL_SIZE, SMALL_SIZE), dtype=np.float32)


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few real CIFAR-10 JPEGs (3 per class) extracted from the shared tarball."""
    import tarfile

    if not SHARED_TARBALL.is_file():
        pytest.skip(f"shared data not found at {SHARED_TARBALL}")
    out = tmp_path_factory.mktemp("cifar")
    wanted = {f"{i:04d}.jpg" for i in range(3)}
    with tarfile.open(SHARED_TARBALL) as tar:
        members = [m for m in tar if m.isfile() and m.name.rsplit("/", 1)[-1] in wanted]
        tar.extractall(out, members=members, filter="data")
    return out / "train"


@pytest.fixture(autouse=True)
def _reset_cli_state():
    """`--debug` sets a process-wide flag; keep it from leaking into later CLI tests."""
    from alexbench.cli.common import state

    yield
    state.debug = False
