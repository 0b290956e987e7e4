import numpy as np

from alexbench.parity import compare
from alexbench.precision import Precision, spec


def test_identical_outputs_pass_with_zero_error():
    ref = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    r = compare(ref, ref.copy())
    assert r.passed and r.max_abs_err == 0 and r.top1_agreement == 1.0
    assert abs(r.min_cosine - 1.0) < 1e-12


def test_errors_beyond_tolerance_fail_and_are_measured_exactly():
    ref = np.array([[1.0, 2.0, 4.0], [0.0, -1.0, 3.0]])
    out = ref.copy()
    out[1, 0] += 0.01  # reference value 0: the relative floor (1% of max|ref| = 0.04) applies
    r = compare(ref, out)
    assert not r.passed and "max abs err" in r.reason
    assert np.isclose(r.max_abs_err, 0.01)
    assert np.isclose(r.max_rel_err, 0.01 / 0.04)
    t = spec(Precision.FP32).tolerance
    assert np.isclose(r.threshold, t.atol + t.rtol * 4.0)


def test_near_ties_are_forgiven_but_clear_flips_count():
    ref = np.array([[1.0, 1.0 + 1e-7, 0.0], [0.0, 5.0, 0.0]])
    out = np.array([[1.0 + 2e-7, 1.0, 0.0], [0.0, 5.0, 0.0]])  # sample 0 flips on a near tie
    r = compare(ref, out)
    assert r.top1_agreement == 0.5 and r.near_ties == 1 and r.top1_mismatches == 0
    assert r.passed
    clear = np.array([[0.0, 1.0, 0.0], [5.0, 0.0, 0.0]])
    flipped = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    r = compare(clear, flipped)
    assert r.top1_mismatches == 2 and not r.passed


def test_shape_mismatch_and_nan_fail():
    ref = np.ones((2, 3))
    assert not compare(ref, np.ones((2, 4))).passed
    bad = ref.copy()
    bad[0, 0] = np.nan
    r = compare(ref, bad)
    assert not r.passed and "non-finite" in r.reason


def test_int8_top1_flips_past_its_typical_error_fail_though_within_its_wide_tolerance():
    # Every row's top two logits (10 and 8) swapped: an error of 2 is inside int8's 0.25 x 10
    # threshold and the cosine stays 0.976, so only the top-1 gate can catch it. Judged by the
    # error threshold itself, a counted flip implied a failed error check: the gate was dead.
    ref = np.zeros((16, 10))
    ref[:, 0], ref[:, 1] = 10, 8
    out = ref.copy()
    out[:, 0], out[:, 1] = 8, 10
    result = compare(ref, out, Precision.INT8)
    assert not result.passed and result.reason == "16 top-1 mismatches"
    assert result.max_abs_err <= result.threshold  # the error check alone would have passed
    near = ref.copy()
    near[:, 1] = 9.5  # a 5% gap: a near tie for int8, forgiven when it flips...
    flipped = near.copy()
    flipped[:5, 0], flipped[:5, 1] = 9.5, 10
    assert compare(near, flipped, Precision.INT8).passed
    flipped[:, 0], flipped[:, 1] = 9.5, 10  # ...but not on every sample (see the cap below)
    assert not compare(near, flipped, Precision.INT8).passed


def _rows(n: int, top: list[float], classes: int = 10) -> np.ndarray:
    ref = np.zeros((n, classes))
    ref[:, : len(top)] = top
    return ref


def test_a_flip_to_a_class_far_below_the_top_counts_though_the_top_two_are_close():
    """With the top two close, a flip to any class at all was forgiven as a tie."""
    ref = _rows(20, [1.0, 0.99, 0.8])
    out = ref.copy()
    out[:, 2] += 0.21  # within int8's 25% error threshold; class 2 was 0.2 below the top
    r = compare(ref, out, Precision.INT8)
    assert r.top1_mismatches == 20 and r.near_ties == 0 and not r.passed
    assert "20 top-1 mismatches" in r.reason


def test_int8_caps_every_top1_flip_ties_included_with_one_sample_of_grace():
    """Where every logit lies close together each flip is a near tie: one class's bias raised
    a little passed int8 at 3% agreement."""
    ref = _rows(20, [1.0, 0.99, 0.98])
    out = ref.copy()
    out[:, 2] += 0.03
    r = compare(ref, out, Precision.INT8)
    assert r.near_ties == 20 and r.top1_mismatches == 0 and not r.passed
    assert "top-1 changed on 20 of 20 samples (20 near ties), more than 25%" in r.reason
    assert compare(ref[:1], out[:1], Precision.INT8).passed  # one sample: its tie is allowed
    partly = ref.copy()
    partly[:6, 2] += 0.03  # 6 of 20 <= 25% + 1
    assert compare(ref, partly, Precision.INT8).passed
    partly[6, 2] += 0.03
    assert not compare(ref, partly, Precision.INT8).passed


def test_float_precisions_cap_every_top1_flip_too():
    """An outside audit raised one class's fp16 bias by 4.5% of the largest logit on a
    near-chance model: 7 of 8 top-1 answers changed, every flip a near tie under fp16's old
    2% threshold, and verify passed at 12.5% agreement. bf16's threshold (8%) is wider still:
    there only the cap on flips catches such a file."""
    ref = _rows(8, [1.0, 0.99, 0.975])
    out = ref.copy()
    out[:, 2] += 0.03  # class 2 now tops every row, 2.5% of the largest logit above it
    r = compare(ref, out, Precision.BF16)
    assert r.max_abs_err <= r.threshold and r.top1_mismatches == 0 and r.near_ties == 8
    assert not r.passed and "top-1 changed on 8 of 8 samples (8 near ties)" in r.reason
    one = ref.copy()
    one[0, 2] += 0.03  # one flip in 8 (<= 10% + 1): a near tie, allowed
    assert compare(ref, one, Precision.BF16).passed
    for precision in (Precision.FP32, Precision.TF32, Precision.FP16):
        assert spec(precision).tolerance.max_top1_changed == 0.1


def test_fp16_threshold_is_ten_times_its_typical_error():
    assert spec(Precision.FP16).tolerance.threshold(2.5) == 1e-4 + 1e-2 * 2.5
    ref = _rows(4, [2.5, 0.5])
    out = ref.copy()
    out[:, 3] += 0.045  # the audit's bias change: within the old 0.0501, not the new 0.0251
    r = compare(ref, out, Precision.FP16)
    assert not r.passed and "max abs err 0.045 > 0.0251" in r.reason
