"""Chamfer matching baseline: keep the generator samples whose sketches look like the user's.

The paper's second baseline sketches many samples of the *original* generator and keeps those
whose sketches are closest (Chamfer distance) to the user sketches. Distances use Euclidean
distance transforms, so one (N_a, N_b) matrix is two matrix products over flattened pixels and
a pool of thousands of sketches against a handful of user sketches takes well under a second.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from sketchgan.errors import SketchganError

#: Strokes are pixels darker than this, in [0, 1] units (0 = black stroke, 1 = white paper).
DEFAULT_THRESHOLD = 0.5

Reduce = Literal["min", "mean"]


def _to_unit_gray(sketches: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Bring sketches of the usual layouts to (N, H, W) float in [0, 1].

    Accepted: uint8 0..255 or float in [-1, 1] (network/loader convention), shaped (N, H, W),
    (N, 1, H, W) or (N, H, W, 1).
    """
    if isinstance(sketches, torch.Tensor):
        sketches = sketches.detach().cpu().numpy()
    arr = np.asarray(sketches)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise SketchganError(
            f"{name}: expected sketches shaped (N, H, W) or (N, 1, H, W), got {arr.shape}"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if arr.size and (arr.min() < -1.001 or arr.max() > 1.001):
        raise SketchganError(f"{name}: float sketches must lie in [-1, 1] (dark strokes at -1)")
    return (arr + 1.0) / 2.0


def binarize(
    sketches: np.ndarray | torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    name: str = "sketches",
) -> np.ndarray:
    """Boolean stroke masks (N, H, W): True where the sketch is darker than ``threshold``."""
    return _to_unit_gray(sketches, name) < threshold


def _distance_maps(masks: np.ndarray) -> np.ndarray:
    """Per sketch, each pixel's Euclidean distance to the nearest stroke pixel (N, H*W).

    Empty sketches get zeros here; their rows are overridden by the empty-sketch rule.
    """
    n, h, w = masks.shape
    out = np.zeros((n, h * w), dtype=np.float64)
    for i in range(n):
        if masks[i].any():
            out[i] = distance_transform_edt(~masks[i]).ravel()
    return out


def empty_distance(height: int, width: int) -> float:
    """The distance given to a pair where exactly one sketch has no strokes: the image diagonal.

    It exceeds every Chamfer distance between two non-empty sketches of that size, so blank
    samples (a generator that lost its content) always rank last.
    """
    return float(np.hypot(height, width))


def chamfer_matrix(
    sketches_a: np.ndarray | torch.Tensor,
    sketches_b: np.ndarray | torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """Symmetric Chamfer distance for all pairs, in pixels: (N_a, N_b).

    ``d(A, B) = (mean_{a in A} dist(a, B) + mean_{b in B} dist(b, A)) / 2`` over stroke pixels.
    Identical sketches give 0; a one-pixel shift of a line gives 1. Two empty sketches give 0,
    one empty and one non-empty give ``empty_distance`` (the image diagonal).
    """
    masks_a = binarize(sketches_a, threshold, "sketches_a")
    masks_b = binarize(sketches_b, threshold, "sketches_b")
    if masks_a.shape[1:] != masks_b.shape[1:]:
        raise SketchganError(
            f"chamfer: sketch sizes differ ({masks_a.shape[1:]} vs {masks_b.shape[1:]})"
        )
    flat_a = masks_a.reshape(len(masks_a), -1).astype(np.float64)
    flat_b = masks_b.reshape(len(masks_b), -1).astype(np.float64)
    count_a, count_b = flat_a.sum(1), flat_b.sum(1)
    # Sum over A's strokes of B's distance map, and vice versa, for every pair at once.
    a_to_b = flat_a @ _distance_maps(masks_b).T
    b_to_a = (flat_b @ _distance_maps(masks_a).T).T
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = 0.5 * (a_to_b / count_a[:, None] + b_to_a / count_b[None, :])
    empty_a, empty_b = count_a == 0, count_b == 0
    one_empty = empty_a[:, None] ^ empty_b[None, :]
    dist[one_empty] = empty_distance(*masks_a.shape[1:])
    dist[empty_a[:, None] & empty_b[None, :]] = 0.0
    return dist


def reduce_scores(dist: np.ndarray, reduce: str) -> np.ndarray:
    """Per pool item, its distance to the nearest user sketch (``min``) or to all (``mean``)."""
    if reduce == "min":
        return dist.min(axis=1)
    if reduce == "mean":
        return dist.mean(axis=1)
    raise SketchganError(f"reduce: expected 'min' or 'mean', got {reduce!r}")


def top_indices(scores: np.ndarray, top_n: int, name: str = "top_n") -> np.ndarray:
    """Indices of the ``top_n`` smallest scores, best first; ties keep pool order (stable)."""
    if top_n < 1 or top_n > len(scores):
        raise SketchganError(f"{name}: must be in 1..{len(scores)} (pool size), got {top_n}")
    return np.argsort(scores, kind="stable")[:top_n]


def chamfer_scores(
    pool_sketches: np.ndarray | torch.Tensor,
    user_sketches: np.ndarray | torch.Tensor,
    reduce: Reduce = "min",
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """One score per pool sketch (lower = closer to the user's sketches).

    ``min`` (default): distance to the *nearest* user sketch. Each user sketch is one valid
    example of the wanted shape/pose, so a sample only needs to match one of them; with ``mean``
    a sample must resemble all sketches at once, which favours an "average" pose and collapses
    the retrieved set when the user sketches vary (the FID reference covers that variation).
    """
    user_masks = binarize(user_sketches, threshold, "user_sketches")
    blank = np.flatnonzero(~user_masks.reshape(len(user_masks), -1).any(1))
    if blank.size:
        raise SketchganError(f"user_sketches[{int(blank[0])}]: no dark strokes to match against")
    return reduce_scores(chamfer_matrix(pool_sketches, user_sketches, threshold), reduce)


def rank_by_chamfer(
    pool_sketches: np.ndarray | torch.Tensor,
    user_sketches: np.ndarray | torch.Tensor,
    top_n: int,
    reduce: Reduce = "min",
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """Indices into the pool of the ``top_n`` sketches closest to the user sketches, best first."""
    scores = chamfer_scores(pool_sketches, user_sketches, reduce, threshold)
    return top_indices(scores, top_n)
