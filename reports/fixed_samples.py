"""The reports' common yardstick: the same 1,000 fixed-seed samples and the target pose of params.

The curve, mode, capacity and sketch-D reports compare their numbers with each other as numbers
of the *same* samples, so they draw them here, once: sample ``i`` is a pure function of
``(EVAL_SEED, i)`` (``generate_images``), drawn in chunks only to bound memory. The seed differs
from ``params.yaml``'s ``seed`` on purpose: these samples are not the pipeline's sample folder.
Scripts in ``reports/`` import this module as a sibling (``python reports/<script>.py`` puts the
folder on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from sketchgan.data import world
from sketchgan.evaluation.sampling import generate_images
from sketchgan.runtime import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")  # the only defaults
N_SAMPLES = 1000
EVAL_SEED = 12345
CHUNK = 250


@torch.no_grad()
def fixed_seed_chunks(g: torch.nn.Module, n: int) -> Iterator[torch.Tensor]:
    """Samples ``0..n-1`` of the reports' seeded sequence, ``CHUNK`` at a time (for callers
    that keep only what they measure of each sample, not the images)."""
    for i in range(0, n, CHUNK):
        yield generate_images(g, range(i, min(i + CHUNK, n)), EVAL_SEED)


def fixed_seed_samples(g: torch.nn.Module, n: int = N_SAMPLES) -> torch.Tensor:
    """Samples ``0..n-1`` of the reports' seeded sequence, in [-1, 1], (n, C, H, W) on the CPU."""
    return torch.cat(list(fixed_seed_chunks(g, n)))


def target_pose() -> world.TargetSpec:
    """The pose the user's sketches show (``prepare.target``): what "target match" counts."""
    return world.TargetSpec.from_dict(PARAMS["prepare"]["target"])


@torch.no_grad()
def w_move(mapping: torch.nn.Module, w0: torch.Tensor, z: torch.Tensor) -> float:
    """Mean distance a fixed z's w travelled (``mapping(z)`` against the original ``w0``), as a
    fraction of the original w's spread: the "w moved" of every report."""
    spread = (w0 - w0.mean(0, keepdim=True)).norm(dim=1).mean()
    return float((mapping(z) - w0).norm(dim=1).mean() / spread)
