"""pytest-benchmark suites: `pytest benchmarks/ --benchmark-only` (not part of the CI tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexbench.artifacts import ArtifactFormat, ModelBundle
from alexbench.checkpoint import load_model
from alexbench.exporters import prepare_bundle


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    out: Path = tmp_path_factory.mktemp("exports")
    return prepare_bundle(load_model(), out, list(ArtifactFormat))


@pytest.fixture(scope="session")
def batch() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
