"""Sketch-based image retrieval (SBIR) baseline: a two-branch triplet embedding.

The paper's SBIR baseline (Bui et al.) uses pretrained weights that cannot be had here, so the
same idea is trained from scratch on the pretrain data: a sketch encoder and an image encoder
map (sketch_net(image), image) pairs close together and other scenes apart (triplet margin
loss). Retrieval then ranks samples of the *original* generator by the embedding distance of
their images (not their sketches) to the user sketches, as an SBIR system would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchgan.checkpoints import load_config_model, save_config_model
from sketchgan.errors import SketchganError
from sketchgan.evaluation.chamfer import reduce_scores, top_indices
from sketchgan.training import loop

Reduce = Literal["min", "mean"]

LOSS_WINDOW = 20  # iterations per loss mean; first_loss is the first window's, final_loss the last


def _encoder(in_channels: int, width: int, dim: int) -> nn.Sequential:
    """Three stride-2 stages, then a 4x4 map flattened: small enough to train in a minute on a CPU.

    The map is pooled to 4x4, not to 1x1, because where the object sits is part of the pose a
    sketch asks for; global pooling would throw that away.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for mult in (1, 2, 4):
        layers += [
            nn.Conv2d(channels, width * mult, 3, stride=2, padding=1),
            nn.GroupNorm(4, width * mult),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width * mult, width * mult, 3, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = width * mult
    layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(channels * 16, dim)]
    return nn.Sequential(*layers)


class SBIRNet(nn.Module):
    """Sketch branch (1 channel) and image branch (3 channels) into one unit-norm space."""

    def __init__(self, width: int = 16, dim: int = 64) -> None:
        super().__init__()
        self.config = {"width": width, "dim": dim}
        self.sketch_encoder = _encoder(1, width, dim)
        self.image_encoder = _encoder(3, width, dim)

    def embed_sketches(self, sketches: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.sketch_encoder(sketches), dim=1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=1)


def _as_batch(x: torch.Tensor | np.ndarray, channels: int, name: str) -> torch.Tensor:
    """Float NCHW in [-1, 1]; uint8 NHWC / NHW arrays (PNG-like) are converted."""
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise SketchganError(f"{name}: numpy input must be uint8 images")
        x = torch.from_numpy(x[..., None] if x.ndim == 3 else x).permute(0, 3, 1, 2)
        x = x.float() / 127.5 - 1.0
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != channels:
        raise SketchganError(f"{name}: expected (N, {channels}, H, W), got {tuple(x.shape)}")
    return x.float()


def _active_mean(losses: torch.Tensor) -> torch.Tensor:
    """Mean over the triplets that still violate the margin (zero when none do)."""
    active = losses > 0
    return losses.sum() / active.sum().clamp(min=1)


def _triplet_loss(sketch_emb: torch.Tensor, image_emb: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-all triplet margin loss in both directions (sketch->image and image->sketch).

    Every other scene in the batch is a negative. Averaging only over triplets that still
    violate the margin (Hermans et al. 2017) keeps the hard ones (same place, other shape)
    driving the gradient once the easy ones are solved, without the instability of mining
    only the single hardest negative.
    """
    dist = torch.cdist(sketch_emb, image_emb)  # (B, B); the diagonal pairs are the positives
    pos = dist.diagonal()
    off = ~torch.eye(len(dist), dtype=torch.bool, device=dist.device)
    s2i = F.relu(pos[:, None] - dist + margin)[off]
    i2s = F.relu(pos[None, :] - dist + margin)[off]
    return 0.5 * (_active_mean(s2i) + _active_mean(i2s))


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """One random integer translation per batch (same for sketch and image) as augmentation."""
    if max_shift == 0:
        return x
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_sbir(
    images: torch.Tensor | np.ndarray,
    sketches: torch.Tensor | np.ndarray,
    *,
    iters: int,
    batch: int,
    seed: int,
    device: torch.device | str,
    lr: float,
    margin: float,
    width: int,
    dim: int,
) -> SBIRNet:
    """Train the embedding on paired (image, sketch) scenes; returns the model in eval mode.
    The settings are the ``baselines.sbir_*`` fields of params.yaml.

    ``images`` (N, 3, H, W) and ``sketches`` (N, 1, H, W) are in [-1, 1] (or uint8 arrays);
    row i of both is the same scene. ``model.info`` holds the last losses.
    """
    images = _as_batch(images, 3, "sbir images")
    sketches = _as_batch(sketches, 1, "sbir sketches")
    if len(images) != len(sketches) or len(images) < 2:
        raise SketchganError(
            f"sbir: need >= 2 paired scenes, got {len(images)} images and {len(sketches)} sketches"
        )
    if iters < 1 or batch < 2:
        raise SketchganError(f"sbir: iters must be >= 1 and batch >= 2, got {iters}, {batch}")
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SBIRNet(width, dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batch = min(batch, len(images))
    max_shift = images.shape[-1] // 16
    meter = loop.Meter(["loss"], dtype=torch.float64)
    windows: list[float] = []  # the mean loss of each window of iterations

    def draw(_step: int) -> torch.Tensor:
        idx = torch.randperm(len(images), generator=gen)[:batch]
        return _shift(torch.cat([images[idx], sketches[idx]], 1), max_shift, gen).to(device)

    def triplet_phase(pair: torch.Tensor) -> dict[str, float]:
        loss = _triplet_loss(
            model.embed_sketches(pair[:, 3:]), model.embed_images(pair[:, :3]), margin
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    loop.TrainingLoop(
        draw,
        [loop.Phase("triplet", 1, triplet_phase)],
        [loop.Periodic(LOSS_WINDOW, lambda _step: windows.append(meter.take()["loss"]), True)],
        meter=meter,
        on_nonfinite=lambda step, _bad: SketchganError(
            f"sbir: non-finite loss at step {step}; lower baselines.sbir_lr"
        ),
    ).run(0, iters)
    model.info = {
        "first_loss": windows[0],
        "final_loss": windows[-1],
        "iters": iters,
    }
    return model.eval()


@torch.no_grad()
def _embed(fn: Any, x: torch.Tensor, device: torch.device, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


def sbir_distances(
    model: SBIRNet,
    pool_images: torch.Tensor | np.ndarray,
    user_sketches: torch.Tensor | np.ndarray,
    batch: int = 256,
) -> np.ndarray:
    """Embedding distances (N_pool, N_user) between pool images and user sketches."""
    device = next(model.parameters()).device
    model.eval()
    img = _embed(model.embed_images, _as_batch(pool_images, 3, "pool_images"), device, batch)
    sk = _embed(model.embed_sketches, _as_batch(user_sketches, 1, "user_sketches"), device, batch)
    return torch.cdist(img, sk).numpy()


def rank_by_sbir(
    model: SBIRNet,
    pool_images: torch.Tensor | np.ndarray,
    user_sketches: torch.Tensor | np.ndarray,
    top_n: int,
    reduce: Reduce = "min",
) -> np.ndarray:
    """Indices of the ``top_n`` pool images closest to the user sketches, best first.

    ``min`` (default, as for Chamfer): a pool image scores by its nearest user sketch, so the
    retrieved set spreads over all the user's examples instead of their average.
    """
    dist = sbir_distances(model, pool_images, user_sketches)
    return top_indices(reduce_scores(dist, reduce), top_n)


def save_sbir(model: SBIRNet, path: str | Path) -> None:
    save_config_model(model, path)


def load_sbir(path: str | Path, device: torch.device | str = "cpu") -> SBIRNet:
    """Load a checkpoint written by :func:`save_sbir` (``weights_only=True``)."""
    return load_config_model(path, lambda cfg: SBIRNet(**cfg), "an SBIR", device)
