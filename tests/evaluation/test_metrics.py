"""FID, KID and improved precision/recall against closed forms and limiting cases."""

from __future__ import annotations

import numpy as np
import pytest

from sketchgan.errors import SketchganError
from sketchgan.evaluation import metrics

# clean-fid's own frechet_distance passes an argument SciPy deprecates; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_frechet_distance_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_non_commuting_covariances_match_sqrtm():
    """General case against tr sqrtm(S1 S2) computed independently with scipy."""
    from scipy import linalg

    rng = _rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_set_with_itself_is_zero():
    feats = _rng().normal(size=(300, 16))
    assert metrics.fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_fid_rank_deficient_set_with_itself_is_zero():
    """Fewer samples than dimensions (singular covariance), as with small eval sets."""
    feats = _rng(2).normal(size=(20, 64))
    assert metrics.fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_shifted_gaussians_matches_closed_form():
    rng = _rng(3)
    d, n, shift, scale = 8, 20000, 0.5, 2.0
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) * scale + shift
    expected = d * shift**2 + d * (1.0 - scale) ** 2
    assert metrics.fid_from_features(a, b) == pytest.approx(expected, rel=0.05)


def test_fid_grows_with_shift():
    rng = _rng(4)
    a = rng.normal(size=(500, 4))
    small = metrics.fid_from_features(a, rng.normal(size=(500, 4)) + 0.2)
    large = metrics.fid_from_features(a, rng.normal(size=(500, 4)) + 1.0)
    assert large > small > 0


def test_fid_rejects_mismatched_dimensions():
    with pytest.raises(SketchganError, match="dimensions differ"):
        metrics.fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))


def test_kid_same_distribution_near_zero_and_different_positive():
    rng = _rng(5)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    c = rng.normal(size=(400, 16)) + 1.0
    same = metrics.kid_from_features(a, b, num_subsets=20, subset_size=200)
    diff = metrics.kid_from_features(a, c, num_subsets=20, subset_size=200)
    assert abs(same) < 0.02
    assert diff > 0.1
    assert diff > 10 * abs(same)


def test_kid_small_sets_shrink_subset_and_are_deterministic():
    rng = _rng(6)
    a, b = rng.normal(size=(12, 8)), rng.normal(size=(30, 8)) + 2.0
    first = metrics.kid_from_features(a, b, num_subsets=5, subset_size=1000, seed=3)
    assert first == metrics.kid_from_features(a, b, num_subsets=5, subset_size=1000, seed=3)
    assert first > 0


def test_kid_matches_direct_unbiased_mmd_when_using_all_rows():
    """With subset = whole (equal-size) sets, every subset is the full set: exact MMD^2."""
    rng = _rng(7)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 3)) + 0.5
    k = lambda p, q: (p @ q.T / 3 + 1) ** 3  # noqa: E731
    m = 10
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )
    assert metrics.kid_from_features(x, y, num_subsets=3, subset_size=10) == pytest.approx(expected)


def test_precision_recall_identical_sets_are_one():
    feats = _rng(8).normal(size=(200, 10))
    pr = metrics.precision_recall(feats, feats.copy(), k=3)
    assert pr == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_disjoint_sets_are_zero():
    rng = _rng(9)
    real = rng.normal(size=(200, 10))
    fake = rng.normal(size=(200, 10)) + 50.0
    pr = metrics.precision_recall(real, fake, k=3)
    assert pr["precision"] == pytest.approx(0.0, abs=1e-9)
    assert pr["recall"] == pytest.approx(0.0, abs=1e-9)


def test_precision_recall_mode_collapse_keeps_precision_loses_recall():
    """Fakes from one corner of the real distribution: faithful but not diverse."""
    rng = _rng(10)
    real = rng.normal(size=(500, 2))
    fake = rng.normal(size=(500, 2)) * 0.1 + np.array([0.5, 0.5])
    pr = metrics.precision_recall(real, fake, k=3)
    assert pr["precision"] > 0.9
    assert pr["recall"] < 0.2


def test_precision_recall_too_few_rows_is_user_error():
    with pytest.raises(SketchganError, match="at least 4"):
        metrics.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)


def test_cleanfid_numbers_agree_when_importable():
    """Our FID/KID equal clean-fid's own functions on the same features."""
    from sketchgan.evaluation.features import load_cleanfid

    fid_module = load_cleanfid()
    if fid_module is None:
        pytest.skip("clean-fid not importable here")
    rng = _rng(11)
    a, b = rng.normal(size=(300, 12)), rng.normal(size=(300, 12)) * 1.3 + 0.2
    assert metrics.fid_from_features(a, b) == pytest.approx(
        fid_module.fid_from_feats(a, b), rel=1e-6
    )
    np.random.seed(0)
    theirs = fid_module.kernel_distance(a, b, num_subsets=50, max_subset_size=100)
    ours = metrics.kid_from_features(a, b, num_subsets=50, subset_size=100)
    assert ours == pytest.approx(theirs, rel=0.15)  # different random subsets, same estimator


def test_colour_spread_measures_appearance_diversity():
    from sketchgan.evaluation.metrics import colour_spread

    rng = np.random.default_rng(0)
    varied = rng.uniform(-1, 1, (64, 3, 1, 1)) * np.ones((1, 1, 8, 8))
    one_tint = np.broadcast_to(varied[:1], varied.shape)
    assert colour_spread(one_tint) == pytest.approx(0.0, abs=1e-12)
    assert colour_spread(varied) == pytest.approx(float(varied[:, :, 0, 0].std(0).mean()))
    with pytest.raises(SketchganError, match="colour_spread"):
        colour_spread(varied[:1])
