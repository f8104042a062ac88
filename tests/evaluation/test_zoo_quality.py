"""The zoo's quality score: generated samples against fresh renders, with the data's figures."""

from __future__ import annotations

import math

import pytest
import torch

from sketchgan.checkpoints import resolve_checkpoint
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator
from sketchgan.evaluation.zoo_quality import generator_quality, real_vs_real_efid
from sketchgan.models.stylegan2 import Generator


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    return load_evaluator(resolve_checkpoint("world32-evaluator", tmp_path_factory.mktemp("c")))


def test_generator_quality_reports_every_figure_beside_the_data(evaluator, one_thread):
    torch.manual_seed(0)
    g = Generator(32, 16, 1, channel_multiplier=1, channel_max=8)
    q = generator_quality(g, evaluator, n=60, seed=3)
    assert q["n"] == 60
    assert math.isfinite(q["efid"]) and q["efid"] > 0
    assert 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1
    shares = [q[f"shape_{s}"] for s in world.SHAPES]
    real = [q[f"real_shape_{s}"] for s in world.SHAPES]
    assert sum(shares) == pytest.approx(1.0) and sum(real) == pytest.approx(1.0)
    assert 0 <= q["target_share"] <= 1 and 0 <= q["real_target_share"] <= 1
    # an untrained generator is far from the world; two sets of renders are close
    assert real_vs_real_efid(evaluator, n=60) < q["efid"]
    assert generator_quality(g, evaluator, n=60, seed=3) == q  # seeded: same numbers again
