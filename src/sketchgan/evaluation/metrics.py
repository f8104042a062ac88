"""Distribution metrics on feature arrays: FID, KID and improved precision/recall.

Written against the published definitions (Heusel et al. 2017; Binkowski et al. 2018 as used by
clean-fid; Kynkaanniemi et al. 2019) so that the numbers do not depend on which feature path
produced the arrays: the clean-fid Inception path and the world-evaluator fallback share them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sketchgan.errors import SketchganError

#: Rows of the pairwise-distance matrix computed at once in precision/recall; bounds memory at
#: about ``_ROW_CHUNK * n * 8`` bytes, so 2,500 vs 2,500 stays well under 100 MB.
_ROW_CHUNK = 1024


def _as_features(feats: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    """Feature arrays arrive from files and extractors; check them once, in float64."""
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise SketchganError(f"{name}: expected a 2-D feature array (N, D), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise SketchganError(f"{name}: need at least {min_rows} feature rows, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise SketchganError(f"{name}: feature array contains NaN or infinite values")
    return arr


def _check_same_dim(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise SketchganError(
            f"{what}: feature dimensions differ ({a.shape[1]} vs {b.shape[1]}); "
            "were the two sets extracted with the same network?"
        )


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance; tiny negative eigenvalues are rounding noise."""
    vals, vecs = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared 2-Wasserstein distance between two Gaussians (the quantity FID reports).

    ``tr sqrt(S1 S2)`` is taken as the trace of ``sqrt(A S2 A)`` with ``A = sqrt(S1)``: the matrix
    is symmetric PSD, so an eigendecomposition gives a real answer without the complex
    ``sqrtm`` output and the diagonal-offset retries that rank-deficient covariances
    (fewer samples than feature dimensions) otherwise need.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise SketchganError(
            f"frechet_distance: shapes do not match (mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {s1.shape} vs {s2.shape})"
        )
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # The exact value is >= 0; rounding can push identical sets a hair below.
    return max(value, 0.0)


def gaussian_stats(feats: np.ndarray, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set (what clean-fid stores as mu/sigma)."""
    arr = _as_features(feats, name)
    return arr.mean(axis=0), np.cov(arr, rowvar=False)


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between two feature sets (order does not matter)."""
    a = _as_features(feats1, "fid: first feature set")
    b = _as_features(feats2, "fid: second feature set")
    _check_same_dim(a, b, "fid")
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    return frechet_distance(mu1, s1, mu2, s2)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's cubic polynomial kernel ``(x.y / d + 1)^3``; d-scaling keeps it feature-size free."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate for two equal-size samples (diagonal terms dropped)."""
    m = x.shape[0]
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kid_from_features(
    feats1: np.ndarray,
    feats2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Kernel Inception Distance: mean unbiased MMD^2 over random equal-size subsets.

    The subset size shrinks to the smaller set when a set has fewer than ``subset_size`` rows,
    as clean-fid does, so small evaluation sets still give a (noisier) unbiased estimate. The
    subsets come from a seeded generator so the same features always give the same number.
    """
    a = _as_features(feats1, "kid: first feature set")
    b = _as_features(feats2, "kid: second feature set")
    _check_same_dim(a, b, "kid")
    if num_subsets < 1:
        raise SketchganError(f"kid: num_subsets must be >= 1, got {num_subsets}")
    if subset_size < 2:
        raise SketchganError(f"kid: subset_size must be >= 2, got {subset_size}")
    m = min(a.shape[0], b.shape[0], subset_size)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        total += _unbiased_mmd2(x, y)
    return total / num_subsets


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances via the Gram trick, clipped at 0 against rounding."""
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.clip(d, 0.0, None)


def _knn_radii(feats: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from each point to its k-th nearest neighbour in its own set.

    Column ``k`` of the sorted distances skips the point itself (distance 0 at column 0);
    duplicates in the set legitimately give radius 0.
    """
    radii = np.empty(feats.shape[0])
    for start in range(0, feats.shape[0], _ROW_CHUNK):
        block = _sq_dists(feats[start : start + _ROW_CHUNK], feats)
        radii[start : start + _ROW_CHUNK] = np.partition(block, k, axis=1)[:, k]
    return radii


def _coverage(manifold: np.ndarray, radii: np.ndarray, probes: np.ndarray) -> float:
    """Share of probes that fall inside at least one k-NN ball of the manifold's points."""
    inside = np.zeros(probes.shape[0], dtype=bool)
    for start in range(0, probes.shape[0], _ROW_CHUNK):
        block = _sq_dists(probes[start : start + _ROW_CHUNK], manifold)
        inside[start : start + _ROW_CHUNK] = (block <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(
    real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3
) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN ball manifolds.

    Precision: share of generated samples inside the real manifold (fidelity). Recall: share of
    real samples inside the generated manifold (coverage). Both are in [0, 1].
    """
    real = _as_features(real_feats, "precision_recall: real features", min_rows=k + 1)
    fake = _as_features(fake_feats, "precision_recall: generated features", min_rows=k + 1)
    _check_same_dim(real, fake, "precision_recall")
    if k < 1:
        raise SketchganError(f"precision_recall: k must be >= 1, got {k}")
    precision = _coverage(real, _knn_radii(real, k), fake)
    recall = _coverage(fake, _knn_radii(fake, k), real)
    return {"precision": precision, "recall": recall}


def colour_spread(images: Any) -> float:
    """Diversity of colour: std over samples of each image's mean colour, averaged over RGB.

    A model bent towards a few sketches can keep FID moderate while every sample drifts to one
    tint; this number shows that collapse directly (compare it with the original model's).
    ``images``: (N, 3, H, W) in [-1, 1], tensor or array.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] < 2:
        raise SketchganError(f"colour_spread: expected (N>=2, 3, H, W) images, got {x.shape}")
    return float(x.mean(axis=(2, 3)).std(axis=0).mean())
