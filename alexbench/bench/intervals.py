"""Intervals for the ratio of two runs' medians that honour how timing noise really behaves.

`welch_ratio_interval`: a Welch t-interval on log per-repeat medians (run-to-run noise measured by
repeats). `bootstrap_ratio_interval`: a circular block bootstrap over raw latencies, for runs with
one repeat (autocorrelation within a run honoured, run-to-run shifts not seen). The t
distribution is computed here because scipy is not a dependency. `alexbench.bench.compare`
explains why these and not the medians' order-statistic CIs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000  # resampled latencies held at once (16 MB of float64)


# ------------------------------------------------------------------------- t distribution


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
        + b * math.log1p(-x)
    )  # fmt: skip
    front = math.exp(ln_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t with (possibly fractional) `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` (bisection; numpy has no t distribution and scipy is not a dependency)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 2.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------- intervals


def _positive_finite(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """`values` as float64, refused unless every one is a finite time > 0: a zero, negative, NaN
    or infinite latency would come out as a NaN or infinite interval, not as an error (the
    results loaders keep such files away; a caller of this module may not)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{what}: need a non-empty 1-D sequence of times, got shape {x.shape}")
    bad = ~(np.isfinite(x) & (x > 0))
    if bad.any():
        raise ValueError(f"{what}: every time must be finite and > 0, got {x[bad][0]!r}")
    return x


@dataclass(frozen=True)
class RatioInterval:
    ratio: float  # B/A throughput
    low: float
    high: float
    method: str


def welch_ratio_interval(
    a_medians_ms: Sequence[float], b_medians_ms: Sequence[float], confidence: float = CONFIDENCE
) -> RatioInterval:
    """Interval for B/A throughput from per-repeat median latencies (>= 2 per side).

    Model: log(median of a repeat) = log(true median) + run-level noise, the repeats of a run
    independent (they are interleaved over the whole sweep, each a separate pass). Throughput is
    batch / median, so log(B/A throughput) = mean(log a_i) - mean(log b_j). With 2-5 repeats per
    side nothing distribution-free (a bootstrap over 3 numbers, a rank test: Mann-Whitney with
    3+3 cannot reach p < 0.05 two-sided) has any power, so this is the classic small-sample
    choice: a t-interval, on logs because run-level noise is multiplicative. Welch's version
    (unequal variances, Welch-Satterthwaite df) because a changed runtime may well be jitterier
    than the baseline; with equal repeat counts its t statistic equals Student's and only the df
    is smaller, i.e. more conservative.

    At N=3 per side: df lies between 2 and 4, so the half-width is 2.78-4.30 standard errors of
    the log ratio (sqrt(s_a^2/3 + s_b^2/3)). At N=2 per side df lies between 1 and 2 (t = 4.30 to
    12.7): the interval is honest but wide, and only large changes come out significant; use
    `--repeat 3` or more. If every repeat median is identical (zero spread) the interval is the
    point itself and the threshold alone decides.
    """
    la = np.log(_positive_finite(a_medians_ms, "A's repeat medians"))
    lb = np.log(_positive_finite(b_medians_ms, "B's repeat medians"))
    na, nb = len(la), len(lb)
    if na < 2 or nb < 2:
        raise ValueError("welch_ratio_interval needs >= 2 repeats per side")
    diff = float(la.mean() - lb.mean())  # log(B/A throughput)
    va, vb = float(la.var(ddof=1)) / na, float(lb.var(ddof=1)) / nb
    se = math.sqrt(va + vb)
    if se == 0.0:
        ratio = math.exp(diff)
        return RatioInterval(ratio, ratio, ratio, f"Welch t on {na}+{nb} repeat medians")
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    return RatioInterval(
        math.exp(diff),
        math.exp(diff - half),
        math.exp(diff + half),
        f"Welch t on {na}+{nb} repeat medians (df {df:.1f})",
    )


def block_length(x: np.ndarray) -> int:
    """Block length for the circular block bootstrap of a latency series.

    Politis & White (2004), with the correction of Patton, Politis & White (2009) for the
    circular bootstrap: b = (2 G^2 / D)^(1/3) n^(1/3), where G and D come from the
    autocovariances up to an automatically chosen lag, smoothed by a flat-top window. They are
    taken of the ranks (robust to latency spikes, close to what drives a median's variance). At
    least n^(1/3), the usual rate, and at most n/10 so that a resample still holds >= 10 blocks.
    Independent samples get ~n^(1/3); AR(1) noise with phi = 0.9 gets ~50 at n = 1000.
    """
    n = len(x)
    cap = max(1, n // 10)
    if cap == 1:
        return 1
    base = math.ceil(n ** (1.0 / 3.0))
    r = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)
    r -= r.mean()
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(r, size)
    acov = np.fft.irfft(spec * np.conj(spec), size)[:n] / n
    if acov[0] <= 0:
        return min(base, cap)
    rho = np.abs(acov / acov[0])
    kn = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = min(math.ceil(math.sqrt(n)) + kn, n - kn - 1)
    crit = 2.0 * math.sqrt(math.log10(n) / n)
    # m: the last lag before the first run of kn insignificant autocorrelations.
    m = next((k - 1 for k in range(1, m_max + 1) if np.all(rho[k : k + kn] < crit)), m_max)
    if m < 1:
        return min(base, cap)
    lags = np.arange(-2 * m, 2 * m + 1)
    t = np.abs(lags) / (2 * m)
    window = np.where(t <= 0.5, 1.0, 2.0 * (1.0 - t))  # flat-top lag window
    g = acov[np.abs(lags)]
    big_g = float(np.sum(window * np.abs(lags) * g))
    d = 4.0 / 3.0 * float(np.sum(window * g)) ** 2
    opt = (2.0 * big_g**2 / d) ** (1.0 / 3.0) * n ** (1.0 / 3.0) if d > 0 else 0.0
    return int(min(max(base, round(opt)), cap))


def bootstrap_medians(
    x: np.ndarray, block: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Medians of `resamples` circular-block-bootstrap resamples of `x` (vectorised, chunked)."""
    n = len(x)
    block = max(1, min(block, n))
    nblocks = -(-n // block)
    ext = np.concatenate([x, x[: block - 1]])  # circular: a block may wrap around the end
    offsets = np.arange(block)
    rows = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // (nblocks * block))
    out = np.empty(resamples)
    for start in range(0, resamples, rows):
        r = min(rows, resamples - start)
        starts = rng.integers(0, n, size=(r, nblocks))
        idx = (starts[:, :, None] + offsets).reshape(r, nblocks * block)[:, :n]
        out[start : start + r] = np.median(ext[idx], axis=1)
    return out


def bootstrap_ratio_interval(
    a_latencies: np.ndarray,
    b_latencies: np.ndarray,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> RatioInterval:
    """Percentile interval for B/A throughput (= median A latency / median B latency) from
    independent circular block bootstraps of each run's raw latencies.

    Blocks keep the autocorrelation inside a run (an iid bootstrap treats 10,000 correlated
    samples as 10,000 independent ones and gives an interval several times too narrow). It still
    sees only the noise inside the run, not the level shift between runs, so verdicts built on it
    are weak. The RNG is seeded: the same files always give the same interval.
    """
    a = _positive_finite(a_latencies, "A's latencies")
    b = _positive_finite(b_latencies, "B's latencies")
    rng = np.random.default_rng(seed)
    la, lb = block_length(a), block_length(b)
    ma = bootstrap_medians(a, la, resamples, rng)
    mb = bootstrap_medians(b, lb, resamples, rng)
    ratios = ma / mb
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    blocks = str(la) if la == lb else f"{la}/{lb}"
    return RatioInterval(
        float(np.median(a) / np.median(b)),
        float(low),
        float(high),
        f"block bootstrap over raw latencies (block {blocks}, {resamples} resamples)",
    )
