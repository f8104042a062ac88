"""Pretraining on the embedded world: a small StyleGAN2 and a PhotoSketch-style contour network.

The embedded default has no downloadable LSUN StyleGAN2 or PhotoSketch weights, so the pipeline
trains its own on procedurally rendered scenes. Both trainers are sized for a CPU budget of a few
minutes and write checkpoints in the same layout the fine-tuning stage reads for real weights.

Generator recipe (StyleGAN2, Karras et al. 2020): non-saturating logistic loss, lazy R1 on reals
every ``d_reg_every`` iterations, optional lazy path-length regularisation, style mixing, Adam with
the lazy-regularisation correction of lr and betas, and an EMA generator whose decay follows a
half-life counted in images (``ema_kimg``), ramped up early (``ema_rampup``) as StyleGAN2-ADA does
so that the EMA is useful after only a few thousand images.

Path-length regularisation is implemented but off by default (``path_reg_weight: 0``): it costs
an extra double-backward pass through G every ``g_reg_every`` steps, and within a few CPU
minutes at 32 px it is not what limits sample quality. No augmentation (DiffAugment-free).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sketchgan.config import Section
from sketchgan.errors import SketchganError
from sketchgan.io import save_grid, save_torch
from sketchgan.runtime import pick_device, seed_everything
from sketchgan.training import loop, losses
from sketchgan.training.state import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    tensor_fingerprint,
)

LogFn = Callable[[int, dict[str, float]], None]
"""Called as ``log_fn(step, metrics)``, like the fine-tuning loop's callback."""

GENERATOR_FILE = "generator.pt"
GENERATOR_STATE_FILE = "pretrain_state.pt"
LOSSES_FILE = "losses.csv"
# what the D, R1, G and path-length phases return, logged as interval means
PRETRAIN_TERMS = ("d_loss", "real_score", "fake_score", "r1", "g_loss", "path_loss", "path_length")
SAMPLES_DIR = "samples"
SKETCH_NET_FILE = "photosketch.pt"
SKETCH_LOSSES_FILE = "photosketch_losses.csv"
SKETCH_SAMPLES_FILE = "photosketch_samples.png"


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


_BETA = 0.999999  # Adam's betas must stay below 1


@dataclass(frozen=True)
class GeneratorPretrainConfig(Section):
    """The ``pretrain`` section of params.yaml (StyleGAN2 pretraining; every field is documented
    there), plus the run's ``seed``/``device`` and the data's ``size``.

    The embedded default's values were chosen by the measurements in
    ``reports/bench_pretrain.md``: sample quality follows the number of images seen, and a
    2-layer mapping network learns faster than 8 at a CPU budget.
    """

    NAME: ClassVar[str] = "pretrain"
    MINIMUM: ClassVar[Mapping[str, float]] = {
        "size": 8,
        "style_dim": 1,
        "n_mlp": 1,
        "channel_multiplier": 1,
        "channel_max": 1,
        "iterations": 1,
        "batch_size": 1,
        "adam_beta1": 0,
        "adam_beta2": 0,
        "r1_gamma": 0,
        "d_reg_every": 1,
        "path_reg_weight": 0,
        "g_reg_every": 1,
        "path_batch_shrink": 1,
        "mixing_prob": 0,
        "ema_rampup": 0,
        "log_every": 1,
        "n_sample": 1,
        "sample_every": 0,
        "checkpoint_every": 0,
        "seed": 0,
        "time_limit_s": 0,
    }
    ABOVE: ClassVar[Mapping[str, float]] = {"lr": 0, "ema_kimg": 0}
    MAXIMUM: ClassVar[Mapping[str, float]] = {
        "adam_beta1": _BETA,
        "adam_beta2": _BETA,
        "mixing_prob": 1,
    }
    RUN_SETTINGS: ClassVar[tuple[str, ...]] = ("seed", "device")
    # may change between a run and its resumption without invalidating the state
    RESUME_FREE: ClassVar[tuple[str, ...]] = (
        "iterations",
        "sample_every",
        "checkpoint_every",
        "log_every",
        "n_sample",
        "device",
        "amp",
        "time_limit_s",
        "resume",
    )

    size: int
    style_dim: int
    n_mlp: int
    channel_multiplier: int
    channel_max: int
    iterations: int
    batch_size: int
    lr: float
    adam_beta1: float
    adam_beta2: float
    r1_gamma: float
    d_reg_every: int
    path_reg_weight: float
    g_reg_every: int
    path_batch_shrink: int
    mixing_prob: float
    reuse_fakes: bool
    ema_kimg: float
    ema_rampup: float
    xflip: bool
    log_every: int
    sample_every: int
    checkpoint_every: int
    n_sample: int
    amp: bool
    time_limit_s: float
    resume: bool
    seed: int
    device: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> GeneratorPretrainConfig:
        """The generator is trained at the data's resolution, ``prepare.size``."""
        prepare = params.get("prepare")
        if not isinstance(prepare, Mapping) or "size" not in prepare:
            raise SketchganError("params: 'prepare.size' is missing (pretraining reads it)")
        return super().from_params(params, **{"size": prepare["size"], **overrides})

    def check(self) -> None:
        if self.size & (self.size - 1):
            raise self.fail("size", f"must be a power of two, got {self.size}")
        if self.batch_size > 4 and self.batch_size % 4:
            # The discriminator's minibatch-stddev layer groups samples by 4.
            raise self.fail("batch_size", f"must be <= 4 or a multiple of 4, got {self.batch_size}")
        if self.path_reg_weight > 0 and self.batch_size // self.path_batch_shrink < 1:
            raise self.fail("path_batch_shrink", "leaves an empty path-length batch")

    def model_config(self) -> dict[str, int]:
        """The architecture block stored in ``generator.pt`` (what a loader needs to rebuild)."""
        return {
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "channel_multiplier": self.channel_multiplier,
            "channel_max": self.channel_max,
        }


@dataclass(frozen=True)
class SketchNetConfig(Section):
    """The ``pretrain_sketch`` section of params.yaml (the contour network), plus the run's
    ``seed``/``device``.

    ``stroke_weight`` > 1 up-weights the L1 error on stroke pixels of the target: contours cover a
    small fraction of the image, and plain L1 would otherwise be content with a white page early on.
    """

    NAME: ClassVar[str] = "pretrain_sketch"
    MINIMUM: ClassVar[Mapping[str, float]] = {
        "input_nc": 1,
        "output_nc": 1,
        "ngf": 1,
        "n_blocks": 0,
        "iterations": 1,
        # Batch statistics of a single image make BatchNorm a per-image normaliser, which is
        # not how the frozen net is used downstream (train mode, batches of several images).
        "batch_size": 2,
        "adam_beta1": 0,
        "adam_beta2": 0,
        "input_noise": 0,
        "n_val": 0,
        "log_every": 1,
        "seed": 0,
        "time_limit_s": 0,
    }
    ABOVE: ClassVar[Mapping[str, float]] = {"lr": 0, "stroke_weight": 0}
    MAXIMUM: ClassVar[Mapping[str, float]] = {"adam_beta1": _BETA, "adam_beta2": _BETA}
    RUN_SETTINGS: ClassVar[tuple[str, ...]] = ("seed", "device")

    input_nc: int
    output_nc: int
    ngf: int
    n_blocks: int
    iterations: int
    batch_size: int
    lr: float
    adam_beta1: float
    adam_beta2: float
    stroke_weight: float
    input_noise: float
    n_val: int
    log_every: int
    time_limit_s: float
    seed: int
    device: str

    def model_config(self) -> dict[str, int]:
        return {
            "input_nc": self.input_nc,
            "output_nc": self.output_nc,
            "ngf": self.ngf,
            "n_blocks": self.n_blocks,
        }


# --------------------------------------------------------------------------------------------
# building blocks (public so fine-tuning and tests can reuse them)
# --------------------------------------------------------------------------------------------


def r1_penalty(discriminator: nn.Module, real: Tensor) -> tuple[Tensor, Tensor]:
    """R1 at the reals (``losses.r1_penalty``), plus D's predictions for the caller's graph.

    The predictions must stay in the loss so that every parameter participates (DDP and some
    optimisers dislike parameters without gradient).
    """
    real = real.detach().requires_grad_(True)
    pred = discriminator(real)
    return losses.r1_penalty(pred, real), pred


def path_length_penalty(
    fake: Tensor, latents: Tensor, mean_path_length: float, decay: float = 0.01
) -> tuple[Tensor, float, float]:
    """StyleGAN2 path-length regulariser: keeps |J_w^T y| close to its running mean.

    Returns (penalty, updated running mean, mean path length of this batch).
    """
    noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
    (grad,) = torch.autograd.grad((fake * noise).sum(), latents, create_graph=True)
    lengths = grad.pow(2).sum(2).mean(1).sqrt()
    batch_mean = float(lengths.detach().mean())
    new_mean = mean_path_length + decay * (batch_mean - mean_path_length)
    return (lengths - new_mean).pow(2).mean(), new_mean, batch_mean


def ema_beta(batch_size: int, ema_kimg: float, ema_rampup: float, cur_nimg: int) -> float:
    """EMA decay per step from a half-life in images, ramped to a fraction of the images seen.

    Without the ramp, a 10-kimg half-life (StyleGAN2) averages in the random initialisation for
    most of a few-thousand-iteration CPU run.
    """
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup > 0:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


def mixing_noise(batch: int, style_dim: int, prob: float, device: torch.device) -> list[Tensor]:
    """One or two latent batches: with probability ``prob`` two, so G mixes styles at a random
    crossover layer (the generator picks the index), which decorrelates the per-layer styles."""
    if prob > 0 and torch.rand(()).item() < prob:
        return list(torch.randn(2, batch, style_dim, device=device).unbind(0))
    return [torch.randn(batch, style_dim, device=device)]


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Freeze the network not being updated: skips its weight gradients (about a third of the
    backward cost on CPU)."""
    for p in module.parameters():
        p.requires_grad_(flag)


def adam_for(
    params: Iterator[nn.Parameter] | list[nn.Parameter],
    lr: float,
    betas: tuple[float, float],
    reg_every: int | None,
) -> torch.optim.Adam:
    """Adam with the lazy-regularisation correction (StyleGAN2 appendix B).

    When a regulariser runs every k steps, c = k / (k + 1) of the optimiser steps are plain ones;
    lr and betas are rescaled (lr * c, beta ** c) so the effective schedule matches eager
    regularisation.
    """
    c = reg_every / (reg_every + 1) if reg_every else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c))


def amp_context(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA only: no loss scaler needed, and the CPU path stays exact."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _write_losses(path: Path, rows: list[dict[str, float]]) -> None:
    """Every column any row has; NaN where a row lacks one (optional terms such as the
    path length appear only on some rows)."""
    loop.write_rows(path, rows, columns=None, missing=float("nan"))


def _check_images(images: Tensor, channels: int, size: int | None, what: str) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != channels:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise SketchganError(f"{what}: expected a (N, {channels}, H, W) tensor, got {shape}")
    if size is not None and tuple(images.shape[2:]) != (size, size):
        raise SketchganError(
            f"{what}: images are {tuple(images.shape[2:])}, expected ({size}, {size}) "
            f"(pretrain.size)"
        )
    if images.shape[0] == 0:
        raise SketchganError(f"{what}: no images")
    if not torch.is_floating_point(images):
        raise SketchganError(f"{what}: expected floats in [-1, 1], got {images.dtype}")
    return images


# --------------------------------------------------------------------------------------------
# generator pretraining
# --------------------------------------------------------------------------------------------


@dataclass
class _GanState:
    """Everything that changes during generator training (what a resume needs)."""

    g: nn.Module
    d: nn.Module
    g_ema: nn.Module
    g_optim: torch.optim.Optimizer
    d_optim: torch.optim.Optimizer
    iteration: int = 0
    mean_path_length: float = 0.0
    rows: list[dict[str, float]] | None = None
    # the open logging interval's sums (interval means, as fine-tuning logs them)
    meter: loop.Meter = field(default_factory=lambda: loop.Meter(PRETRAIN_TERMS))


def _build_gan(cfg: GeneratorPretrainConfig, device: torch.device) -> _GanState:
    from sketchgan.models.stylegan2 import Discriminator, Generator

    m = cfg.model_config()
    g = Generator(
        m["size"],
        m["style_dim"],
        m["n_mlp"],
        m["channel_multiplier"],
        m["channel_max"],
    ).to(device)
    d = Discriminator(m["size"], m["channel_multiplier"], m["channel_max"]).to(device)
    g_ema = copy.deepcopy(g).eval()
    set_requires_grad(g_ema, False)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    g_reg = cfg.g_reg_every if cfg.path_reg_weight > 0 else None
    g_optim = adam_for(list(g.parameters()), cfg.lr, betas, g_reg)
    d_optim = adam_for(
        list(d.parameters()), cfg.lr, betas, cfg.d_reg_every if cfg.r1_gamma else None
    )
    return _GanState(g, d, g_ema, g_optim, d_optim, rows=[])


def _save_gan_state(
    state: _GanState,
    cfg: GeneratorPretrainConfig,
    path: Path,
    data_gen: torch.Generator,
    data_id: str,
) -> None:
    save_checkpoint(
        path,
        {
            "step": state.iteration,
            "g": state.g.state_dict(),
            "d": state.d.state_dict(),
            "g_ema": state.g_ema.state_dict(),
            "g_optim": state.g_optim.state_dict(),
            "d_optim": state.d_optim.state_dict(),
            "mean_path_length": state.mean_path_length,
            "rows": state.rows or [],
            "meter": state.meter.state(),
            "identity": cfg.identity(),
            "data": data_id,
            "rng": capture_rng({"data": data_gen}),
        },
    )


def _try_resume(
    state: _GanState,
    cfg: GeneratorPretrainConfig,
    path: Path,
    data_gen: torch.Generator,
    data_id: str,
) -> bool:
    """Continue from the periodic state: the same training settings (``iterations`` may grow,
    logging may change) and the same images continue bit for bit (every RNG stream is
    restored); anything else is an error (``loop.check_resume``), ``resume: false`` starts
    over."""
    if not cfg.resume:
        return False
    saved = load_checkpoint(path)
    if saved is None:
        return False
    fresh = "set pretrain.resume: false to start over"
    step = int(saved["step"])
    loop.check_resume(str(path), saved.get("identity", {}), cfg, step, "iterations", fresh)
    loop.check_same_inputs(str(path), {"images": saved.get("data")}, {"images": data_id}, fresh)
    state.g.load_state_dict(saved["g"])
    state.d.load_state_dict(saved["d"])
    state.g_ema.load_state_dict(saved["g_ema"])
    state.g_optim.load_state_dict(saved["g_optim"])
    state.d_optim.load_state_dict(saved["d_optim"])
    state.iteration = int(saved["step"])
    state.mean_path_length = float(saved["mean_path_length"])
    state.rows = [dict(r) for r in saved["rows"]]
    state.meter.load(saved.get("meter"), str(path), fresh)
    restore_rng(saved["rng"], {"data": data_gen})
    return True


def _sample_real(
    images: Tensor, batch: int, xflip: bool, gen: torch.Generator, device: torch.device
) -> Tensor:
    idx = torch.randint(images.shape[0], (batch,), generator=gen)
    real = images[idx.to(images.device)].to(device, non_blocking=True)
    if xflip:
        flip = (torch.rand(batch, generator=gen) < 0.5).to(device)
        real = torch.where(flip[:, None, None, None], real.flip(3), real)
    return real


def _generate(
    state: _GanState, cfg: GeneratorPretrainConfig, batch: int, device: torch.device, grad: bool
) -> Tensor:
    z = mixing_noise(batch, cfg.style_dim, cfg.mixing_prob, device)
    with torch.set_grad_enabled(grad), amp_context(device, cfg.amp):
        fake, _ = state.g(z)
    return fake


def _d_step(
    state: _GanState,
    cfg: GeneratorPretrainConfig,
    real: Tensor,
    fake: Tensor,
    device: torch.device,
) -> dict[str, float]:
    d = state.d
    set_requires_grad(d, True)
    with amp_context(device, cfg.amp):
        fake_pred = d(fake.detach())
        real_pred = d(real)
        loss = losses.d_real_loss(real_pred) + losses.d_fake_loss(fake_pred)
    state.d_optim.zero_grad(set_to_none=True)
    loss.backward()
    state.d_optim.step()
    return {
        "d_loss": float(loss.detach()),
        "real_score": float(real_pred.detach().float().mean()),
        "fake_score": float(fake_pred.detach().float().mean()),
    }


def _r1_step(state: _GanState, cfg: GeneratorPretrainConfig, real: Tensor) -> dict[str, float]:
    """Lazy R1 (a phase every ``d_reg_every`` iterations), scaled by that interval."""
    penalty, pred = r1_penalty(state.d, real)
    reg = cfg.r1_gamma / 2 * penalty * cfg.d_reg_every + 0 * pred[0].sum()
    state.d_optim.zero_grad(set_to_none=True)
    reg.backward()
    state.d_optim.step()
    return {"r1": float(penalty.detach())}


def _g_step(
    state: _GanState, cfg: GeneratorPretrainConfig, fake: Tensor, device: torch.device
) -> dict[str, float]:
    """G update on ``fake`` (with graph); D is frozen so only G's weights get gradients."""
    set_requires_grad(state.d, False)
    with amp_context(device, cfg.amp):
        loss = losses.g_nonsaturating_loss(state.d(fake))
    state.g_optim.zero_grad(set_to_none=True)
    loss.backward()
    state.g_optim.step()
    return {"g_loss": float(loss.detach())}


def _path_step(
    state: _GanState, cfg: GeneratorPretrainConfig, batch: int, device: torch.device
) -> dict[str, float]:
    """Lazy path-length regularisation (a phase every ``g_reg_every`` iterations)."""
    path_batch = max(1, batch // cfg.path_batch_shrink)
    z = mixing_noise(path_batch, cfg.style_dim, cfg.mixing_prob, device)
    fake, latents = state.g(z, return_latents=True)
    penalty, state.mean_path_length, length = path_length_penalty(
        fake, latents, state.mean_path_length
    )
    reg = cfg.path_reg_weight * cfg.g_reg_every * penalty
    state.g_optim.zero_grad(set_to_none=True)
    reg.backward()
    state.g_optim.step()
    return {"path_loss": float(penalty.detach()), "path_length": length}


def _phases(
    state: _GanState, cfg: GeneratorPretrainConfig, device: torch.device
) -> list[loop.Phase]:
    """D, lazy R1, G, lazy path length: NVlabs' four phases. The inputs hold the real batch;
    with ``reuse_fakes`` the G phase back-propagates through the batch the D phase saw
    (generated once, with graph: ~10% faster on CPU), without it draws a fresh one as the
    reference does."""

    def d_phase(batch: dict[str, Tensor]) -> dict[str, float]:
        n = batch["real"].shape[0]
        if cfg.reuse_fakes:
            batch["fake"] = _generate(state, cfg, n, device, grad=True)
            return _d_step(state, cfg, batch["real"], batch["fake"].detach(), device)
        return _d_step(state, cfg, batch["real"], _generate(state, cfg, n, device, False), device)

    def g_phase(batch: dict[str, Tensor]) -> dict[str, float]:
        fake = batch.get("fake")
        if fake is None:
            fake = _generate(state, cfg, batch["real"].shape[0], device, grad=True)
        return _g_step(state, cfg, fake, device)

    def path_phase(batch: dict[str, Tensor]) -> dict[str, float]:
        return _path_step(state, cfg, batch["real"].shape[0], device)

    phases = [loop.Phase("D", 1, d_phase)]
    if cfg.r1_gamma > 0:
        phases.append(loop.Phase("R1", cfg.d_reg_every, lambda b: _r1_step(state, cfg, b["real"])))
    phases.append(loop.Phase("G", 1, g_phase))
    if cfg.path_reg_weight > 0:
        phases.append(loop.Phase("path", cfg.g_reg_every, path_phase))
    return phases


def _train_step(
    state: _GanState, cfg: GeneratorPretrainConfig, real: Tensor, device: torch.device
) -> dict[str, float]:
    """One iteration's phases at ``state.iteration`` (for benchmarks; the loop runs the same)."""
    return loop.run_phases(_phases(state, cfg, device), state.iteration, {"real": real})


@torch.no_grad()
def _save_samples(g_ema: nn.Module, z: Tensor, path: Path) -> None:
    """Fixed z and the stored noise buffers, so successive grids differ only by training."""
    img, _ = g_ema([z], randomize_noise=False)
    save_grid(img.float().cpu(), path, nrow=8)


def _export_generator(state: _GanState, cfg: GeneratorPretrainConfig, path: Path) -> None:
    def cpu(sd: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in sd.items()}

    save_torch(
        {
            "g_ema": cpu(state.g_ema.state_dict()),
            "g": cpu(state.g.state_dict()),
            "d": cpu(state.d.state_dict()),
            "config": cfg.model_config(),
        },
        path,
    )


def train_generator(
    images: Tensor,
    cfg: GeneratorPretrainConfig,
    out_dir: str | Path,
    log_fn: LogFn | None = None,
) -> dict[str, Any]:
    """Train a small StyleGAN2 on ``images`` (N, 3, size, size) in [-1, 1].

    Writes into ``out_dir``: ``generator.pt`` (g_ema, g, d, config), ``losses.csv``,
    ``samples/iter_NNNNNN.png`` every ``sample_every`` iterations plus the final one, and
    ``pretrain_state.pt`` every ``checkpoint_every`` iterations; a later call with the same
    training settings (iterations may grow) resumes from that state. Stops early, still writing
    every output, once ``time_limit_s`` (if > 0) has passed. Returns a summary for tracking.
    """
    start = time.perf_counter()
    _check_images(images, 3, cfg.size, "pretrain images")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)
    sample_z = torch.randn(
        cfg.n_sample, cfg.style_dim, generator=torch.Generator().manual_seed(cfg.seed + 2)
    )
    sample_z = sample_z.to(device)
    images = images.float().to(device) if device.type == "cuda" else images.float()

    state = _build_gan(cfg, device)
    state_path = out_dir / GENERATOR_STATE_FILE
    data_id = tensor_fingerprint(images)
    meter = state.meter
    _try_resume(state, cfg, state_path, data_gen, data_id)
    resumed_from = state.iteration

    beta = {"now": float("nan")}

    def draw(_step: int) -> dict[str, Tensor]:
        state.g.train()
        state.d.train()
        return {"real": _sample_real(images, cfg.batch_size, cfg.xflip, data_gen, device)}

    def after(step: int, _batch: Any, _terms: Any) -> None:
        beta["now"] = ema_beta(cfg.batch_size, cfg.ema_kimg, cfg.ema_rampup, step * cfg.batch_size)
        update_ema(state.g_ema, state.g, beta["now"])
        state.iteration = step

    def log_row(step: int) -> None:
        ms = 1000.0 * (training.seconds - clock["logged"]) / meter.steps
        clock["logged"] = training.seconds
        row = {
            "iteration": step,
            "kimg": step * cfg.batch_size / 1000.0,
            "seconds": round(time.perf_counter() - start, 3),
            "ms_per_iter": round(ms, 2),
            "ema_beta": beta["now"],
            **meter.take(),
        }
        row.setdefault("r1", float("nan"))
        state.rows.append(row)
        if log_fn is not None:
            # r1 is NaN on iterations without the lazy R1 step: the CSV keeps it, MLflow not
            log_fn(step, loop.finite({k: v for k, v in row.items() if k != "iteration"}))

    def samples(step: int) -> None:
        _save_samples(state.g_ema, sample_z, out_dir / SAMPLES_DIR / f"iter_{step:06d}.png")
        _write_losses(out_dir / LOSSES_FILE, state.rows)

    clock = {"logged": 0.0}  # the loop's iteration seconds at the last row
    training = loop.TrainingLoop(
        draw,
        _phases(state, cfg, device),
        [
            loop.Periodic(cfg.log_every, log_row, True),
            loop.Periodic(cfg.sample_every, samples, False),
            loop.Periodic(
                cfg.checkpoint_every,
                lambda _s: _save_gan_state(state, cfg, state_path, data_gen, data_id),
                False,
            ),
        ],
        should_stop=loop.time_limit(start, cfg.time_limit_s),
        after_iteration=after,
        on_nonfinite=lambda step, bad: SketchganError(
            f"{out_dir}: non-finite loss ({', '.join(bad)}) at step {step}; the last "
            f"checkpoint ({state_path.name}, if any) is kept; lower pretrain.lr or check the data"
        ),
        meter=meter,
    )
    end = training.run(state.iteration, cfg.iterations)
    stopped_early, train_time, last = end.stopped, end.seconds, end.last

    _save_samples(state.g_ema, sample_z, out_dir / SAMPLES_DIR / f"iter_{state.iteration:06d}.png")
    _save_samples(state.g_ema, sample_z, out_dir / "samples.png")
    if cfg.checkpoint_every:
        _save_gan_state(state, cfg, state_path, data_gen, data_id)
    _write_losses(out_dir / LOSSES_FILE, state.rows)
    _export_generator(state, cfg, out_dir / GENERATOR_FILE)

    done = state.iteration - resumed_from
    return {
        "iterations": state.iteration,
        "iterations_this_run": done,
        "resumed_from": resumed_from,
        "stopped_early": stopped_early,
        "kimg": state.iteration * cfg.batch_size / 1000.0,
        "seconds": time.perf_counter() - start,
        "train_seconds": train_time,
        "ms_per_iter": 1000.0 * train_time / done if done else float("nan"),
        "device": str(device),
        "final": last,
        "generator_path": str(out_dir / GENERATOR_FILE),
    }


# --------------------------------------------------------------------------------------------
# sketch network
# --------------------------------------------------------------------------------------------


def contours_to_tensor(contours: Tensor | Any) -> Tensor:
    """uint8 (N, H, W) or float (N, 1, H, W) contours -> float (N, 1, H, W) in [-1, 1]."""
    x = torch.as_tensor(contours)
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype == torch.uint8:
        x = x.float().div(127.5).sub(1)
    return x.float()


def _stroke_weighted_l1(pred: Tensor, target: Tensor, stroke_weight: float) -> Tensor:
    """L1 with ``stroke_weight`` on target stroke pixels (target < 0, i.e. darker than mid-grey),
    normalised by the total weight so the loss scale does not depend on stroke density."""
    weight = 1.0 + (stroke_weight - 1.0) * (target < 0).float()
    return ((pred - target).abs() * weight).sum() / weight.sum()


@torch.no_grad()
def _eval_l1_train_mode(net: nn.Module, x: Tensor, y: Tensor, batch: int) -> float:
    """Validation the way the net is used downstream: train-mode BatchNorm, small batches.

    The BatchNorm running statistics are restored afterwards, so validation leaves no trace.
    """
    if x.shape[0] == 0:
        return float("nan")
    saved = copy.deepcopy(net.state_dict())
    net.train()
    total, count = 0.0, 0
    for i in range(0, x.shape[0] - batch + 1, batch):
        pred = net(x[i : i + batch])
        total += float((pred - y[i : i + batch]).abs().mean()) * pred.shape[0]
        count += pred.shape[0]
    net.load_state_dict(saved)
    return total / count if count else float("nan")


@torch.no_grad()
def _save_sketch_grid(net: nn.Module, x: Tensor, y: Tensor, batch: int, path: Path) -> None:
    """Rows of 8: inputs, targets, outputs (train mode, batches of ``batch``)."""
    saved = copy.deepcopy(net.state_dict())
    net.train()
    n = min(8, x.shape[0]) // batch * batch or min(8, x.shape[0])
    preds = torch.cat([net(x[i : i + batch]) for i in range(0, n, batch)])
    net.load_state_dict(saved)
    rows = [x[:n], y[:n].repeat(1, 3, 1, 1), preds.repeat(1, 3, 1, 1)]
    save_grid(torch.cat(rows).float().cpu(), path, nrow=n)


def train_sketch_net(
    images: Tensor,
    contours: Tensor | Any,
    cfg: SketchNetConfig,
    out_dir: str | Path,
    log_fn: LogFn | None = None,
) -> dict[str, Any]:
    """Train the PhotoSketch ResNet generator on (scene, exact contour) pairs with a pure L1 loss.

    ``images``: (N, 3, H, W) in [-1, 1]; ``contours``: uint8 (N, H, W) or float (N, 1, H, W),
    dark strokes on white. No cGAN term: the world's contours are a deterministic function of the
    scene (PhotoSketch needed the adversarial term for many diverging human drawings), and L1,
    being median-seeking, already keeps thin strokes crisp within a one-minute CPU budget.
    The last ``n_val`` pairs are held out and scored in train mode (BatchNorm batch statistics),
    as the frozen net is run downstream. Writes ``photosketch.pt`` ({"state", "config"}),
    ``photosketch_losses.csv`` and ``photosketch_samples.png``.
    """
    from sketchgan.models.photosketch import ResnetGenerator

    start = time.perf_counter()
    _check_images(images, cfg.input_nc, None, "sketch-net images")
    y_all = contours_to_tensor(contours)
    _check_images(y_all, cfg.output_nc, None, "sketch-net contours")
    if y_all.shape[0] != images.shape[0] or y_all.shape[2:] != images.shape[2:]:
        raise SketchganError(
            f"sketch-net contours: shape {tuple(y_all.shape)} does not pair with images "
            f"{tuple(images.shape)}"
        )
    n_val = min(cfg.n_val, images.shape[0] - cfg.batch_size)
    n_val = max(0, n_val) // cfg.batch_size * cfg.batch_size
    if images.shape[0] - n_val < cfg.batch_size:
        raise SketchganError(
            f"sketch-net images: {images.shape[0]} pairs, need at least pretrain_sketch.batch_size "
            f"({cfg.batch_size})"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)

    x_all = images.float().to(device)
    y_all = y_all.to(device)
    n_train = x_all.shape[0] - n_val
    x_train, y_train = x_all[:n_train], y_all[:n_train]
    x_val, y_val = x_all[n_train:], y_all[n_train:]

    net = ResnetGenerator(
        input_nc=cfg.input_nc, output_nc=cfg.output_nc, ngf=cfg.ngf, n_blocks=cfg.n_blocks
    ).to(device)
    optim = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
    val_before = _eval_l1_train_mode(net, x_val, y_val, cfg.batch_size)

    rows: list[dict[str, float]] = []

    def draw(_step: int) -> tuple[Tensor, Tensor]:
        net.train()
        idx = torch.randint(n_train, (cfg.batch_size,), generator=data_gen).to(device)
        x, y = x_train[idx], y_train[idx]
        if cfg.input_noise > 0:
            # Generated images are noisier than renders; a little noise keeps the net from
            # drawing contours on GAN speckle.
            x = x + cfg.input_noise * torch.randn_like(x)
        return x, y

    def l1_phase(batch: tuple[Tensor, Tensor]) -> dict[str, float]:
        x, y = batch
        loss = _stroke_weighted_l1(net(x), y, cfg.stroke_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return {"loss": float(loss.detach())}

    meter = loop.Meter(["loss"])

    def log_row(step: int) -> None:
        loss = meter.take()["loss"]
        seconds = round(time.perf_counter() - start, 3)
        rows.append({"iteration": step, "seconds": seconds, "loss": loss})
        if log_fn is not None:
            log_fn(step, {"sketch_loss": loss})

    training = loop.TrainingLoop(
        draw,
        [loop.Phase("L1", 1, l1_phase)],
        [loop.Periodic(cfg.log_every, log_row, True)],
        should_stop=loop.time_limit(start, cfg.time_limit_s),
        on_nonfinite=lambda step, bad: SketchganError(
            f"{out_dir}: non-finite sketch-net loss at step {step}; lower pretrain_sketch.lr "
            "or check the contours"
        ),
        meter=meter,
    )
    end = training.run(0, cfg.iterations)
    it, train_time, stopped_early = end.step, end.seconds, end.stopped
    loss_val = end.last.get("loss", float("nan"))

    val_after = _eval_l1_train_mode(net, x_val, y_val, cfg.batch_size)
    if rows:
        rows[-1]["val_l1"] = val_after
    _write_losses(out_dir / SKETCH_LOSSES_FILE, rows)
    shown_x, shown_y = (x_val, y_val) if n_val else (x_train, y_train)
    _save_sketch_grid(net, shown_x, shown_y, cfg.batch_size, out_dir / SKETCH_SAMPLES_FILE)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    save_torch({"state": state, "config": cfg.model_config()}, out_dir / SKETCH_NET_FILE)
    if log_fn is not None and n_val:
        log_fn(it, {"sketch_val_l1": val_after})
    return {
        "iterations": it,
        "stopped_early": stopped_early,
        "seconds": time.perf_counter() - start,
        "ms_per_iter": 1000.0 * train_time / it if it else float("nan"),
        "final_loss": loss_val,
        "val_l1_before": val_before,
        "val_l1_after": val_after,
        "n_val": n_val,
        "device": str(device),
        "sketch_net_path": str(out_dir / SKETCH_NET_FILE),
    }
