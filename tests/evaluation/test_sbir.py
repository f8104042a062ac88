"""SBIR baseline: a tiny triplet embedding learns to find the image drawn by a sketch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sketchgan.errors import SketchganError
from sketchgan.evaluation import sbir

SIZE = 16
SBIR = dict(seed=0, device="cpu", lr=2e-3, margin=0.2)  # the settings these tests fix


def _rect_scenes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright rectangles on dark ground (uint8 NHWC) and their outlines (uint8 NHW, dark ink)."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    sketches = np.full((n, SIZE, SIZE), 255, np.uint8)
    for i in range(n):
        images[i] = rng.integers(0, 60, 3)
        w, h = rng.integers(3, SIZE * 3 // 4, 2)
        x0, y0 = rng.integers(0, SIZE - w + 1), rng.integers(0, SIZE - h + 1)
        images[i, y0 : y0 + h, x0 : x0 + w] = rng.integers(120, 256, 3)
        sketches[i, y0 : y0 + h, [x0, x0 + w - 1]] = 0
        sketches[i, [y0, y0 + h - 1], x0 : x0 + w] = 0
    return images, sketches


@pytest.fixture(scope="module")
def trained(one_thread) -> sbir.SBIRNet:
    images, sketches = _rect_scenes(512, seed=0)
    return sbir.train_sbir(images, sketches, **SBIR, iters=150, batch=32, width=8, dim=32)


def test_training_reduces_loss_and_matches_pairs_better_than_chance(trained):
    images, sketches = _rect_scenes(100, seed=1)
    dist = sbir.sbir_distances(trained, images, sketches)  # (pool images, user sketches)
    ranks = (dist < dist[np.arange(100), np.arange(100)][None, :]).sum(axis=0)
    assert trained.info["final_loss"] < 0.9 * trained.info["first_loss"]
    assert np.median(ranks) < 10  # chance would be ~50 of 100


def test_rank_by_sbir_returns_planted_matches(trained):
    pool_images, _ = _rect_scenes(200, seed=2)
    user_images, user_sketches = _rect_scenes(3, seed=3)
    planted = np.array([5, 77, 150])
    pool_images[planted] = user_images
    # top 10 % of the pool: at random, all three would be found with probability ~1e-3
    top = sbir.rank_by_sbir(trained, pool_images, user_sketches, top_n=20)
    assert set(planted.tolist()) <= set(top.tolist())


def test_save_load_roundtrip(trained, tmp_path):
    path = tmp_path / "sbir.pt"
    sbir.save_sbir(trained, path)
    loaded = sbir.load_sbir(path)
    images, sketches = _rect_scenes(8, seed=4)
    np.testing.assert_allclose(
        sbir.sbir_distances(loaded, images, sketches),
        sbir.sbir_distances(trained, images, sketches),
        atol=1e-6,
    )


def test_bad_inputs_are_user_errors(tmp_path):
    images, sketches = _rect_scenes(4, seed=5)
    with pytest.raises(SketchganError, match="paired scenes"):
        sbir.train_sbir(images, sketches[:3], **SBIR, iters=1, batch=2, width=8, dim=32)
    with pytest.raises(SketchganError, match="not found"):
        sbir.load_sbir(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"nothing": 1}, bad)
    with pytest.raises(SketchganError, match="not an SBIR checkpoint"):
        sbir.load_sbir(bad)
