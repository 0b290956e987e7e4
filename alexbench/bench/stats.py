"""Statistics derived from raw per-iteration latencies; every printed figure comes from here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alexbench.bench.intervals import CONFIDENCE, t_quantile

# A cell whose 95% CI of the median (over its samples, or over its repeats' medians) is wider
# than this, relative to the median, is flagged: its median is not pinned down well enough to
# quote without a caveat.
UNSTABLE_CI_REL_WIDTH = 0.05
# Order statistics need enough samples: below these counts a p90/p99 is only the maximum, so
# tables and plots leave them out (the JSON and CSV keep them, beside the sample count).
MIN_ITERS_FOR_PERCENTILE = {90: 10, 99: 100}


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
    # The median's 95% CI; None when the samples are too few for one (5 or fewer).
    p50_ci_low_ms: float | None
    p50_ci_high_ms: float | None
    throughput: float  # images/s = batch / median latency
    wall_throughput: float  # images/s = batch * iterations / wall time of the throughput loop
    unstable: bool
    # With several repeats, p50 and its CI are over the repeats' medians (`compute_stats`);
    # the other figures are over every latency of every repeat.
    repeats: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based order-statistic ranks (lo, hi) bracketing the median with >= `confidence`, or
    None when no pair of samples does (n <= 5 at 95%: even [min, max] covers the median with
    only 1 - 2 / 2**n, 0.94 for 5 samples, 0.75 for 3).

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
    if lo < 0:
        return None
    return lo, n - 1 - lo


def geometric_mean(values: Sequence[float]) -> float:
    """The centre of several repeats' medians (timing noise is multiplicative)."""
    return math.exp(float(np.mean(np.log(np.asarray(values, dtype=np.float64)))))


def repeats_interval(
    medians_ms: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(centre, low, high) of several repeats' medians: the geometric mean and a t interval on
    their logarithms (k - 1 degrees of freedom). Run-to-run noise is multiplicative and what
    repeats measure; pooling the repeats' samples instead would weight a fast repeat (more
    samples in the same --min-time) above a slow one and take the pool for independent draws,
    which the repeats' spread contradicts. `compare` centres runs the same way."""
    logs = np.log(np.asarray(medians_ms, dtype=np.float64))
    k = len(logs)
    if k < 2:
        raise ValueError("need at least two repeats")
    mean = float(logs.mean())
    half = t_quantile(0.5 + confidence / 2, k - 1) * float(logs.std(ddof=1)) / math.sqrt(k)
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def is_unstable(samples: int, p50: float, ci_low: float | None, ci_high: float | None) -> bool:
    """The `~` rule: a median whose 95% CI is wider than 5% of it, or has none, or rests on
    fewer than 10 samples."""
    return (
        samples < 10
        or ci_low is None
        or ci_high is None
        or (ci_high - ci_low) / p50 > UNSTABLE_CI_REL_WIDTH
    )


def compute_stats(
    latencies_ns: np.ndarray | list[int],
    batch: int,
    wall_ns: int,
    wall_iterations: int | None = None,
    repeat_medians_ms: Sequence[float] = (),
) -> LatencyStats:
    """Statistics of the latency samples; `wall_ns` over `wall_iterations` (default: as many as
    latencies) is the throughput loop's wall clock.

    With two or more `repeat_medians_ms` (the samples are those repeats' pooled), the median
    and its CI are those of the repeats (`repeats_interval`); the other percentiles, the mean
    and the extremes stay over every sample (so when the repeats disagree the centre may lie
    above the pooled p90). Else the median's CI is from order statistics. Either way a cell is
    unstable when its CI is wider than 5% of the median, or missing, or from under 10 samples."""
    lat = np.sort(np.asarray(latencies_ns, dtype=np.float64)) / 1e6  # ms
    n = len(lat)
    if n == 0:
        raise ValueError("no latencies recorded")
    p50, p90, p95, p99 = np.percentile(lat, [50, 90, 95, 99])  # linear interpolation
    ci_low: float | None
    ci_high: float | None
    if len(repeat_medians_ms) >= 2:
        p50, ci_low, ci_high = repeats_interval(repeat_medians_ms)
    else:
        ranks = median_ci_ranks(n)
        ci_low, ci_high = (float(lat[ranks[0]]), float(lat[ranks[1]])) if ranks else (None, None)
    unstable = is_unstable(n, float(p50), ci_low, ci_high)
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
        repeats=max(1, len(repeat_medians_ms)),
    )
