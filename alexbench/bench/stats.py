"""Statistics derived from raw per-iteration latencies; every printed figure comes from here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# A cell whose 95% CI of the median is wider than this (relative to the median) is flagged:
# its median moves too much between runs to quote without a caveat.
UNSTABLE_CI_REL_WIDTH = 0.05


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics in milliseconds for one cell (batch = images per iteration)."""

    iterations: int
    batch: int
    min_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    p50_ci_low_ms: float
    p50_ci_high_ms: float
    throughput: float  # images/s = batch / median latency
    wall_throughput: float  # images/s = batch * iterations / wall time of the throughput loop
    unstable: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based order-statistic ranks (lo, hi) bracketing the median with >= `confidence`.

    Distribution-free: the number of samples below the true median is Binomial(n, 1/2), so
    [x_(lo), x_(hi)] covers it with probability P(lo < B <= hi). Uses the exact binomial CDF.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    log_half_n = n * math.log(0.5)
    cdf, pmf_cache = [], 0.0
    total = 0.0
    for k in range(n + 1):
        pmf_cache = math.exp(
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half_n
        )
        total += pmf_cache
        cdf.append(total)
    alpha = (1 - confidence) / 2
    # Largest lo with P(B <= lo) <= alpha (the CI excludes at most alpha in each tail).
    lo = max((k for k in range(n + 1) if cdf[k] <= alpha), default=-1)
    lo_rank = max(lo, 0)
    hi_rank = min(n - 1 - lo_rank, n - 1)
    return lo_rank, hi_rank


def compute_stats(
    latencies_ns: np.ndarray | list[int],
    batch: int,
    wall_ns: int,
    wall_iterations: int | None = None,
) -> LatencyStats:
    """Statistics of the latency samples; `wall_ns` over `wall_iterations` (default: as many as
    latencies) is the throughput loop's wall clock."""
    lat = np.sort(np.asarray(latencies_ns, dtype=np.float64)) / 1e6  # ms
    n = len(lat)
    if n == 0:
        raise ValueError("no latencies recorded")
    p50, p90, p95, p99 = np.percentile(lat, [50, 90, 95, 99])  # linear interpolation
    lo, hi = median_ci_ranks(n)
    ci_low, ci_high = float(lat[lo]), float(lat[hi])
    unstable = n < 10 or (ci_high - ci_low) / p50 > UNSTABLE_CI_REL_WIDTH
    return LatencyStats(
        iterations=n,
        batch=batch,
        min_ms=float(lat[0]),
        mean_ms=float(lat.mean()),
        std_ms=float(lat.std(ddof=1)) if n > 1 else 0.0,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(lat[-1]),
        p50_ci_low_ms=ci_low,
        p50_ci_high_ms=ci_high,
        throughput=batch / (p50 / 1e3),
        wall_throughput=batch * (wall_iterations or n) / (wall_ns / 1e9)
        if wall_ns > 0
        else float("nan"),
        unstable=bool(unstable),
    )
