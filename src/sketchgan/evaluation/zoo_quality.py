"""How well a generator covers the embedded world: the score the shipped zoo is held to.

A converged generator is what the paper's mapping-only method presupposes, so the embedded
generator is judged against fresh renders of the world it was trained on, in the world
evaluator's feature space (the declared stand-in for Inception): efid, precision/recall (k=3),
the predicted shape histogram and the share of samples in the embedded target pose, each next
to the same figure for real renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from sketchgan.data import world
from sketchgan.evaluation.evaluator import WorldEvaluator, predict_attributes
from sketchgan.evaluation.metrics import fid_from_features, precision_recall

#: The embedded default's target pose (params.yaml ``prepare.target``).
DEFAULT_TARGET = {"shape": "star", "cx": [0.35, 0.5], "cy": [0.35, 0.5], "scale": [0.5, 0.65]}
#: Seed offset of the real reference renders: never the pretraining data's seed (0).
REAL_SEED_OFFSET = 1_000_003


@torch.no_grad()
def _features(evaluator: WorldEvaluator, images: torch.Tensor, batch: int = 500) -> np.ndarray:
    evaluator.eval()
    return torch.cat(
        [evaluator.features(images[i : i + batch]) for i in range(0, len(images), batch)]
    ).numpy()


@torch.no_grad()
def _samples(g: nn.Module, n: int, seed: int, batch: int = 250) -> torch.Tensor:
    """Seeded z and seeded per-layer noise: the same generator always gets the same score."""
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        out = [g([z[i : i + batch]])[0].clamp(-1, 1) for i in range(0, n, batch)]
    return torch.cat(out)


def _renders(n: int, seed: int) -> torch.Tensor:
    images = world.render_scenes(n, 32, seed)[0]
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def _shape_and_target(
    evaluator: WorldEvaluator, images: torch.Tensor, target: world.TargetSpec
) -> dict[str, float]:
    pred = predict_attributes(evaluator, images)
    hist = pred["shape"].value_counts(normalize=True)
    out = {f"shape_{s}": float(hist.get(s, 0.0)) for s in world.SHAPES}
    out["target_share"] = float(world.matches_target(pred, target).mean())
    return out


def generator_quality(
    g: nn.Module,
    evaluator: WorldEvaluator,
    n: int = 10000,
    seed: int = 0,
    k: int = 3,
    target: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Scores of ``n`` g samples (psi 1) against ``n`` fresh renders, plus the renders' own.

    ``real_*`` entries describe the reference renders (shape histogram, target share), so every
    figure of the generator has its data value beside it.
    """
    spec = world.TargetSpec.from_dict(dict(target or DEFAULT_TARGET))
    g = g.eval()
    real = _renders(n, REAL_SEED_OFFSET + seed)
    fake = _samples(g, n, seed)
    real_f, fake_f = _features(evaluator, real), _features(evaluator, fake)
    scores: dict[str, float] = {"n": float(n), "efid": fid_from_features(fake_f, real_f)}
    scores.update(precision_recall(real_f, fake_f, k=k))
    scores.update(_shape_and_target(evaluator, fake, spec))
    scores.update({f"real_{k}": v for k, v in _shape_and_target(evaluator, real, spec).items()})
    return scores


def real_vs_real_efid(evaluator: WorldEvaluator, n: int = 10000, seed: int = 0) -> float:
    """The floor of efid: two independent sets of renders of the same world."""
    a = _features(evaluator, _renders(n, REAL_SEED_OFFSET + seed))
    b = _features(evaluator, _renders(n, REAL_SEED_OFFSET + seed + 1))
    return fid_from_features(a, b)
