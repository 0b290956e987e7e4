"""Parity metrics: how far a runtime's logits are from the fp32 eager reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alexbench.precision import Precision, Tolerance, spec

# Relative error divides by max(|ref|, REL_FLOOR * max|ref|): logits near zero would otherwise
# turn a harmless 1e-7 absolute difference into a huge relative one.
REL_FLOOR = 1e-2


@dataclass(frozen=True)
class ParityResult:
    max_abs_err: float
    max_rel_err: float
    min_cosine: float
    top1_agreement: float  # fraction of samples with the same top-1 class as the reference
    top1_mismatches: int  # disagreements that count: the reference's margin exceeded tolerance
    near_ties: int  # disagreements forgiven: the reference put the chosen class near its top
    threshold: float  # the absolute error allowed: atol + rtol * max|ref|
    passed: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    reference: np.ndarray,
    output: np.ndarray,
    precision: Precision = Precision.FP32,
    calls: int = 1,
) -> ParityResult:
    """Compare (N, C) logits against the reference under `precision`'s tolerance row. `calls`:
    how many calls the rows came from (each may hold one near tie beyond the flip cap)."""
    tol: Tolerance = spec(precision).tolerance
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        return ParityResult(
            np.inf, np.inf, -1.0, 0.0, len(ref), 0, 0.0, False,
            f"shape {out.shape} != reference {ref.shape}",
        )  # fmt: skip
    if not np.all(np.isfinite(out)):
        return ParityResult(np.inf, np.inf, -1.0, 0.0, len(ref), 0, 0.0, False, "non-finite output")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = np.abs(out - ref)
    max_abs = float(diff.max()) if diff.size else 0.0
    floor = max(REL_FLOOR * scale, np.finfo(np.float32).tiny)
    max_rel = float((diff / np.maximum(np.abs(ref), floor)).max()) if diff.size else 0.0
    num = np.sum(ref * out, axis=1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    min_cos = float(cos.min()) if cos.size else 1.0
    threshold = tol.threshold(scale)

    ref_top1, out_top1 = ref.argmax(axis=1), out.argmax(axis=1)
    disagree = ref_top1 != out_top1
    # How far below its top logit the reference put the class the output chose. A flip only
    # counts when that is beyond twice the tie threshold (the error expected on both logits);
    # otherwise it is a near tie. By the chosen class, not the runner-up: with the top two
    # close, a flip to any class at all was forgiven (int8 passed at 3% top-1 agreement).
    rows = np.arange(len(ref))
    margin = ref[rows, ref_top1] - ref[rows, out_top1]
    counted = disagree & (margin > 2 * tol.tie_threshold(scale))
    mismatches, ties = int(counted.sum()), int((disagree & ~counted).sum())
    agreement = float(1.0 - disagree.mean()) if len(ref) else 1.0

    reasons = []
    if max_abs > threshold:
        reasons.append(f"max abs err {max_abs:.3g} > {threshold:.3g}")
    if min_cos < tol.min_cosine:
        reasons.append(f"cosine {min_cos:.6f} < {tol.min_cosine}")
    changed = int(disagree.sum())
    if len(ref) and mismatches / len(ref) > tol.max_top1_mismatch:
        reasons.append(f"{mismatches} top-1 mismatches")
    elif tol.max_top1_changed is not None and changed > tol.max_top1_changed * len(ref) + calls:
        reasons.append(
            f"top-1 changed on {changed} of {len(ref)} samples ({ties} near ties), more than "
            f"{tol.max_top1_changed:.0%}"
        )
    return ParityResult(
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        min_cosine=min_cos,
        top1_agreement=agreement,
        top1_mismatches=mismatches,
        near_ties=ties,
        threshold=threshold,
        passed=not reasons,
        reason="; ".join(reasons),
    )
