"""Chamfer distance on hand-made sketches, and Chamfer retrieval of planted matches."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from sketchgan.errors import SketchganError
from sketchgan.evaluation import chamfer

WHITE = 255


def _blank(n: int = 1, size: int = 16) -> np.ndarray:
    return np.full((n, size, size), WHITE, np.uint8)


def _vline(x: int, size: int = 16) -> np.ndarray:
    img = _blank(1, size)
    img[0, :, x] = 0
    return img


def test_identical_sketches_have_zero_distance():
    a = _vline(5)
    assert chamfer.chamfer_matrix(a, a)[0, 0] == 0.0


def test_one_pixel_shift_of_a_line_is_one_pixel():
    assert chamfer.chamfer_matrix(_vline(5), _vline(6))[0, 0] == pytest.approx(1.0)


def test_single_dot_diagonal_shift_is_sqrt2():
    a, b = _blank(), _blank()
    a[0, 4, 4] = 0
    b[0, 5, 5] = 0
    assert chamfer.chamfer_matrix(a, b)[0, 0] == pytest.approx(np.sqrt(2))


def test_asymmetric_stroke_sets_use_both_directions():
    """A = one dot, B = that dot plus one 3 px away: A->B = 0, B->A = (0 + 3) / 2 -> 0.75."""
    a, b = _blank(), _blank()
    a[0, 8, 4] = 0
    b[0, 8, 4] = 0
    b[0, 8, 7] = 0
    assert chamfer.chamfer_matrix(a, b)[0, 0] == pytest.approx(0.5 * (0.0 + 1.5))


def test_matrix_is_symmetric_and_accepts_float_layouts():
    rng = np.random.default_rng(0)
    u8 = np.where(rng.random((6, 16, 16)) < 0.08, 0, WHITE).astype(np.uint8)
    as_float = torch.from_numpy(u8).float().div(127.5).sub(1.0)[:, None]  # (N, 1, H, W) in [-1, 1]
    m = chamfer.chamfer_matrix(u8, as_float)
    np.testing.assert_allclose(m, m.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(m), 0.0, atol=1e-12)
    assert (m[~np.eye(6, dtype=bool)] > 0).all()


def test_empty_sketches_get_the_defined_large_distance():
    empty, line = _blank(), _vline(3)
    m = chamfer.chamfer_matrix(np.concatenate([empty, line]), np.concatenate([empty, line]))
    diag = chamfer.empty_distance(16, 16)
    np.testing.assert_allclose(m, [[0.0, diag], [diag, 0.0]])
    far = _blank()
    far[0, 0, 0] = 0
    far2 = _blank()
    far2[0, 15, 15] = 0
    assert chamfer.chamfer_matrix(far, far2)[0, 0] < diag


def test_size_mismatch_is_user_error():
    with pytest.raises(SketchganError, match="sizes differ"):
        chamfer.chamfer_matrix(_blank(1, 16), _blank(1, 8))


def test_float_out_of_range_is_user_error():
    with pytest.raises(SketchganError, match=r"\[-1, 1\]"):
        chamfer.chamfer_matrix(np.full((1, 4, 4), 3.0), np.zeros((1, 4, 4)))


def _random_strokes(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random axis-aligned rectangle outlines: sketch-like, with controlled variety."""
    out = _blank(n, size)
    for i in range(n):
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(4, size // 2, 2)
        out[i, y0 : y0 + h, [x0, x0 + w - 1]] = 0
        out[i, [y0, y0 + h - 1], x0 : x0 + w] = 0
    return out


def test_rank_by_chamfer_returns_planted_matches():
    rng = np.random.default_rng(1)
    size = 32
    user = _random_strokes(4, size, rng)
    pool = _random_strokes(300, size, rng)
    planted = np.array([17, 101, 202, 250])
    pool[planted] = user[::-1]
    top = chamfer.rank_by_chamfer(pool, user, top_n=4)
    assert set(top.tolist()) == set(planted.tolist())
    scores = chamfer.chamfer_scores(pool, user)
    np.testing.assert_allclose(scores[planted], 0.0)
    assert np.delete(scores, planted).min() > 0


def test_min_and_mean_reductions_differ_as_documented():
    """'min' rewards matching one user sketch; 'mean' rewards the average of all of them."""
    user = np.concatenate([_vline(2), _vline(6), _vline(8), _vline(12)])
    # An exact copy of the outermost sketch (min 0, mean 5) vs. a line between the middle
    # two (min 1, mean 3).
    pool = np.concatenate([_vline(2), _vline(7)])
    assert chamfer.rank_by_chamfer(pool, user, 1, reduce="min")[0] == 0
    assert chamfer.rank_by_chamfer(pool, user, 1, reduce="mean")[0] == 1


def test_blank_user_sketch_and_bad_top_n_are_user_errors():
    with pytest.raises(SketchganError, match=r"user_sketches\[1\]"):
        chamfer.rank_by_chamfer(_vline(3), np.concatenate([_vline(3), _blank()]), 1)
    with pytest.raises(SketchganError, match="top_n"):
        chamfer.rank_by_chamfer(_vline(3), _vline(3), 2)


def test_pool_of_thousands_is_fast():
    rng = np.random.default_rng(2)
    pool = np.where(rng.random((2000, 32, 32)) < 0.05, 0, WHITE).astype(np.uint8)
    start = time.perf_counter()
    chamfer.rank_by_chamfer(pool, pool[:8], top_n=100)
    assert time.perf_counter() - start < 10.0  # ~0.2 s idle; generous for a shared 2-core box
