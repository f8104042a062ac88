"""GANSketching fine-tuning: bend a pretrained StyleGAN2 towards a handful of user sketches.

One iteration (method spec, "Losses"): a discriminator step on the sketch D (real user sketch
vs. PhotoSketch(G(z)), both repeated to 3 channels and augmented) and, when ``l_image > 0``,
on the image D (real regularisation image vs. G(z)); lazy R1 on both every ``d_reg_every``
iterations; then a generator step on the sketch adversarial loss + ``l_image`` x image
adversarial loss + ``l_weight`` x L1 weight pull. All loss terms live in ``losses.py``.

Robustness is part of the contract, because the real runs are 75k iterations long: the loop
checkpoints everything needed for a bit-identical continuation (``state.py``), resumes by
itself from ``out_dir``, refuses to resume against different data or settings, stops on a
non-finite loss without overwriting the last good checkpoint, and turns SIGTERM/Ctrl-C into
"save, then stop".
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from sketchgan.checkpoints import load_checkpoint, load_sketch_net
from sketchgan.config import Section
from sketchgan.errors import SketchganError
from sketchgan.io import save_grid, save_torch, sha256_file
from sketchgan.models.photosketch import to3ch
from sketchgan.models.stylegan2 import Discriminator, Generator
from sketchgan.runtime import pick_device, seed_everything
from sketchgan.training import augment, loop, losses, state

LogFn = Callable[[int, dict[str, float]], None]
EvalFn = Callable[[int, nn.Module], float]

SECTION = "train"
LAST_FILE = "generator_last.pt"
BEST_FILE = "generator_best.pt"
LOSSES_FILE = "losses.csv"
SAMPLES_DIR = "samples"
RANK_SEED_STRIDE = 10_000
METRIC_NAMES = (
    "d_sketch_real",
    "d_sketch_fake",
    "d_image_real",
    "d_image_fake",
    "g_sketch",
    "g_image",
    "g_weight",
)
R1_NAMES = ("r1_sketch", "r1_image")
# logged name -> the objective's (the reference's) name of the term
METRIC_TERMS = {
    "d_sketch_real": "D_real_sketch",
    "d_sketch_fake": "D_fake_sketch",
    "d_image_real": "D_real_image",
    "d_image_fake": "D_fake_image",
    "g_sketch": "G_sketch",
    "g_image": "G_image",
    "g_weight": "l_weight",
}
R1_TERMS = {"r1_sketch": "r1_penalty_sketch", "r1_image": "r1_penalty_image"}


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def _fail(name: str, message: str) -> SketchganError:
    return FinetuneConfig.fail(name, message)


@dataclass(frozen=True)
class FinetuneConfig(Section):
    """The ``train`` section of params.yaml (every field is documented there; the paper's
    values are in method_spec.md "Optimisation defaults"), plus the run's ``seed``/``device``.

    The interval fields count iterations; 0 disables the periodic action (the final state is
    always written). ``batch`` is per process (DDP multiplies it by the world size).
    ``eval_samples`` is read by the caller's ``eval_fn``; it is here so that one object holds
    the section.
    """

    NAME: ClassVar[str] = "train"
    MINIMUM: ClassVar[Mapping[str, float]] = {
        "iters": 1,
        "batch": 1,
        "l_image": 0,
        "l_weight": 0,
        "r1": 0,
        "d_reg_every": 1,
        "mixing": 0,
        "sketch_scale": 0,
        "checkpoint_every": 0,
        "sample_every": 0,
        "eval_every": 0,
        "eval_samples": 2,
        "log_every": 1,
        "n_sample": 1,
        "seed": 0,
    }
    ABOVE: ClassVar[Mapping[str, float]] = {"lr": 0, "g_lr": 0}
    MAXIMUM: ClassVar[Mapping[str, float]] = {"mixing": 1}
    RUN_SETTINGS: ClassVar[tuple[str, ...]] = ("seed", "device")
    # may differ between a run and its resumption without changing the trajectory
    RESUME_FREE: ClassVar[tuple[str, ...]] = (
        "iters",
        "checkpoint_every",
        "sample_every",
        "eval_every",
        "log_every",
        "n_sample",
        "device",
        "amp",
    )

    iters: int
    batch: int
    lr: float
    g_lr: float | None
    l_image: float
    l_weight: float
    r1: float
    d_reg_every: int
    augment: str | bool
    tune: Literal["mapping", "w_shift", "full"]
    sketch_d_init: Literal["pretrained", "random"]
    mixing: float
    sketch_scale: int
    checkpoint_every: int
    sample_every: int
    eval_every: int
    eval_samples: int
    log_every: int
    n_sample: int
    amp: Literal["auto", "off", "bf16", "fp16"]
    seed: int
    device: str

    def check(self) -> None:
        if self.batch > 4 and self.batch % 4:
            # The discriminator's minibatch-stddev layer splits the batch into groups of 4.
            raise _fail("batch", f"must be <= 4 or a multiple of 4, got {self.batch}")
        augment.parse_policy(self.augment, f"{SECTION}.augment")
        if self.sketch_scale & (self.sketch_scale - 1):
            raise _fail(
                "sketch_scale", f"must be 0 (auto) or a power of two, got {self.sketch_scale}"
            )


TUNE_MODES = typing.get_args(typing.get_type_hints(FinetuneConfig)["tune"])


# --------------------------------------------------------------------------------------------
# data-parallel hooks (single-process no-ops; ddp.py overrides them)
# --------------------------------------------------------------------------------------------


class Parallel:
    """What the loop needs from data parallelism; this base class is one process alone.

    Gradients are averaged explicitly after ``backward`` rather than by wrapping modules in
    DistributedDataParallel: R1 needs double backward, the G step freezes D mid-iteration
    and only part of G is trained, all of which DDP wrappers handle poorly.
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, params: list[Tensor]) -> None:
        """Average ``.grad`` of ``params`` over processes (nothing to do alone)."""

    def sum_tensor(self, tensor: Tensor) -> Tensor:
        return tensor

    def broadcast_module(self, module: nn.Module) -> None:
        """Make every process start from rank 0's weights."""

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        """Wait for all processes."""

    def verify_replicas(self, tensors: list[Tensor]) -> None:
        """Check that every process holds the same weights (trivially true alone)."""


# --------------------------------------------------------------------------------------------
# checkpoints of networks
# --------------------------------------------------------------------------------------------


def _load_weights_file(path: str | Path, what: str) -> dict[str, Any]:
    """``checkpoints.load_checkpoint`` (weights_only, one-line errors) plus a dict check."""
    data = load_checkpoint(path)
    if not isinstance(data, dict):
        raise SketchganError(f"{path}: {what} checkpoint is not a dict")
    return data


def _load_strict(module: nn.Module, sd: Mapping[str, Tensor], where: str) -> None:
    """Strict load; the models raise one-line errors, this prefixes the file they came from."""
    try:
        module.load_state_dict(sd, strict=True)
    except SketchganError as exc:
        raise SketchganError(f"{where}: {exc}") from exc
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SketchganError(f"{where}: weights do not fit the network ({first[:200]})") from exc


def generator_arch(config: Mapping[str, Any], path: str | Path) -> dict[str, int]:
    """The architecture block of a generator checkpoint, validated (errors name the file)."""
    keys = ("size", "style_dim", "n_mlp", "channel_multiplier")
    missing = [k for k in keys if k not in config]
    if missing:
        raise SketchganError(f"{path}: 'config' lacks {', '.join(missing)}")
    arch = {k: int(config[k]) for k in keys}
    arch["channel_max"] = int(config.get("channel_max", 512))
    return arch


def build_generator(arch: Mapping[str, int]) -> nn.Module:
    return Generator(
        arch["size"],
        arch["style_dim"],
        arch["n_mlp"],
        channel_multiplier=arch["channel_multiplier"],
        channel_max=arch["channel_max"],
    )


def build_discriminator(arch: Mapping[str, int]) -> nn.Module:
    return Discriminator(
        arch["size"], channel_multiplier=arch["channel_multiplier"], channel_max=arch["channel_max"]
    )


def load_photosketch(path: str | Path) -> nn.Module:
    """PhotoSketch from ``{"state", "config"}``; the caller decides train/eval mode."""
    if not Path(path).is_file():
        raise SketchganError(f"{path}: photosketch checkpoint not found")
    return load_sketch_net(path, "cpu")[0]


# --------------------------------------------------------------------------------------------
# data and randomness
# --------------------------------------------------------------------------------------------


class IndexStream:
    """Shuffled passes over a dataset, batch after batch, like a shuffling loader.

    Batches may straddle two passes, so a batch larger than the dataset (one sketch,
    batch 4) still works. The leftover of the current pass is part of the resumable state.
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n = n
        self.generator = generator
        self.buffer = torch.empty(0, dtype=torch.long)

    def next(self, batch: int) -> Tensor:
        while self.buffer.numel() < batch:
            perm = torch.randperm(self.n, generator=self.generator)
            self.buffer = torch.cat([self.buffer, perm])
        out, self.buffer = self.buffer[:batch], self.buffer[batch:]
        return out

    def state_dict(self) -> dict[str, Tensor]:
        return {"buffer": self.buffer.clone()}

    def load_state_dict(self, sd: Mapping[str, Tensor]) -> None:
        self.buffer = sd["buffer"].clone().long()


@dataclass
class _Rngs:
    """The loop's own random streams; global RNGs only feed G's per-layer noise."""

    host: torch.Generator  # CPU: data order, mixing coin, crossover index
    latent: torch.Generator  # device: z
    aug: torch.Generator  # device: augmentation shifts

    def named(self) -> dict[str, torch.Generator]:
        return {"host": self.host, "latent": self.latent, "aug": self.aug}


def _make_rngs(seed: int, device: torch.device) -> _Rngs:
    return _Rngs(
        host=torch.Generator().manual_seed(seed),
        latent=torch.Generator(device=device).manual_seed(seed + 1),
        aug=torch.Generator(device=device).manual_seed(seed + 2),
    )


def sample_styles(
    batch: int,
    style_dim: int,
    n_latent: int,
    mixing: float,
    rngs: _Rngs,
    device: torch.device,
) -> tuple[list[Tensor], int | None]:
    """z (or two z with a crossover index, with probability ``mixing``).

    The coin and the index are drawn on the CPU generator so no device sync is needed, and
    passing ``inject_index`` explicitly keeps G from drawing on Python's global RNG.
    """
    mix = mixing > 0 and float(torch.rand((), generator=rngs.host)) < mixing
    n = 2 if mix else 1
    z = torch.randn(n, batch, style_dim, generator=rngs.latent, device=device)
    if not mix:
        return [z[0]], None
    index = int(torch.randint(1, n_latent, (), generator=rngs.host))
    return [z[0], z[1]], index


def _check_images(x: Tensor | None, channels: int, size: int, what: str) -> Tensor | None:
    if x is None:
        return None
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise SketchganError(
            f"{what}: expected a (N, {channels}, {size}, {size}) tensor, got {shape}"
        )
    if x.shape[0] < 1 or x.shape[2:] != (size, size):
        raise SketchganError(
            f"{what}: expected (N, {channels}, {size}, {size}) to match the generator, "
            f"got {tuple(x.shape)}"
        )
    x = x.float()
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1.0001 or hi > 1.0001:
        raise SketchganError(f"{what}: values must be in [-1, 1], got [{lo:.3g}, {hi:.3g}]")
    return x


# --------------------------------------------------------------------------------------------
# the sketch branch
# --------------------------------------------------------------------------------------------


def _auto_sketch_scale(size: int, scale: int) -> int:
    if scale == 0:
        return 4 if size >= 1024 else 1
    if size % scale:
        raise _fail("sketch_scale", f"must divide the generator size {size}, got {scale}")
    return scale


SketchBranch = losses.SketchBranch  # re-exported: the branch belongs to the objective


@dataclass
class FakeDraws:
    """Every random value one fake batch consumes: one or two z per sample, the crossover
    index of a mixed batch, and one noise map per StyledConv (the reference draws these
    inside G, in forward order)."""

    z: list[Tensor]
    inject_index: int | None
    noise: list[Tensor]


@dataclass
class StepInputs:
    """Everything one iteration consumes. The loop draws it (``_Trainer.draw_inputs``); the
    step-parity test injects the reference's recorded draws through the same ``iteration``."""

    real_sketch: Tensor
    real_img: Tensor | None
    d_fake: FakeDraws
    d_shift_real: augment.Shift | None
    d_shift_fake: augment.Shift | None
    g_fake: FakeDraws
    g_shift_fake: augment.Shift | None
    step: int  # the iteration these draws are for (0-based): which phases run
    with_r1: bool = False  # the R1 phase is due at ``step`` (its shift is drawn then)
    r1_shift: augment.Shift | None = None


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------


@dataclass
class FinetuneResult:
    """What a run produced; paths are inside ``out_dir``."""

    steps: int
    last_path: Path
    best_path: Path | None
    best_step: int | None
    best_score: float | None
    resumed_from: int
    seconds: float
    ms_per_iter: float
    device: str
    amp: str
    metrics: dict[str, float] = field(default_factory=dict)
    stopped: bool = False  # ended early by ``stop_fn`` (the state at ``steps`` was exported)


class TrainingStopped(SketchganError):
    """Raised after SIGTERM/Ctrl-C once the checkpoint is on disk."""

    end_status = "KILLED"  # how tracking ends the run: stopped by the user, not failed


def set_requires_grad(params: list[Tensor], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def _adam(params: list[Tensor], lr: float, ratio: float) -> torch.optim.Adam:
    """Adam with the lazy-regularisation correction (ratio = k/(k+1), 1 for G)."""
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0**ratio, 0.99**ratio))


def _resolve_amp(mode: str, device: torch.device) -> str:
    if device.type != "cuda":
        return "off"
    if mode == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "off"
    return mode


class _Trainer:
    """Networks, optimisers and random streams of one fine-tuning process."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        generator_ckpt: str | Path,
        photosketch_ckpt: str | Path,
        sketches: Tensor,
        reg_images: Tensor | None,
        parallel: Parallel,
    ) -> None:
        self.cfg = cfg
        self.parallel = parallel
        self.device = pick_device(cfg.device)
        self.amp = _resolve_amp(cfg.amp, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes every iteration
        self.use_image = cfg.l_image > 0
        if self.use_image and reg_images is None:
            raise _fail("l_image", f"is {cfg.l_image} but no regularisation images were given")
        gdata = _load_weights_file(generator_ckpt, "generator")
        if "config" not in gdata or "d" not in gdata or not ("g_ema" in gdata or "g" in gdata):
            raise SketchganError(f"{generator_ckpt}: expected keys 'config', 'g_ema' (or 'g'), 'd'")
        self.arch = generator_arch(gdata["config"], generator_ckpt)
        size = self.arch["size"]
        sketches = _check_images(sketches, 1, size, "sketches")
        reg_images = _check_images(reg_images, 3, size, "reg_images") if self.use_image else None
        net = load_photosketch(photosketch_ckpt).to(self.device)
        self.fingerprints = {
            "generator": sha256_file(generator_ckpt),
            "photosketch": sha256_file(photosketch_ckpt),
            "sketches": state.tensor_fingerprint(sketches),
            "reg_images": state.tensor_fingerprint(reg_images),
        }

        self.g = build_generator(self.arch)
        _load_strict(self.g, gdata.get("g_ema", gdata.get("g")), f"{generator_ckpt} (g_ema)")
        self.g.to(self.device)
        self.d_sketch = self._make_d(gdata["d"], generator_ckpt, cfg.sketch_d_init == "random")
        self.d_image = self._make_d(gdata["d"], generator_ckpt, False) if self.use_image else None
        del gdata

        scale = _auto_sketch_scale(size, cfg.sketch_scale)
        self.branch = SketchBranch(
            net, scale, augment.parse_policy(cfg.augment), self.device.type == "cuda"
        )
        with torch.no_grad():
            self.sketches = self.branch.round_trip(sketches.to(self.device))
        self.reg_images = reg_images.to(self.device) if reg_images is not None else None

        self._select_trainable()
        self.objective = losses.GANSketchingObjective(
            self.branch,
            self.d_sketch,
            self.d_image,
            cfg.l_image,
            cfg.l_weight,
            cfg.r1,
            cfg.d_reg_every,
        )
        self.noise_sizes = [
            int(getattr(self.g.noises, f"noise_{i}").shape[-1]) for i in range(self.g.num_layers)
        ]
        self.d_params = [p for d in self._ds() for p in d.parameters()]
        k = cfg.d_reg_every
        self.g_optim = _adam(self.g_trained, cfg.lr if cfg.g_lr is None else cfg.g_lr, 1.0)
        self.d_optim = _adam(self.d_params, cfg.lr, k / (k + 1))
        fp16 = self.amp == "fp16"
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=fp16)

        for module in (self.g, *self._ds()):
            parallel.broadcast_module(module)
        self.rank_seed = cfg.seed + RANK_SEED_STRIDE * parallel.rank
        seed_everything(self.rank_seed)
        self.rngs = _make_rngs(self.rank_seed, self.device)
        self.sketch_stream = IndexStream(self.sketches.shape[0], self.rngs.host)
        self.image_stream = (
            IndexStream(self.reg_images.shape[0], self.rngs.host) if self.use_image else None
        )
        zgen = torch.Generator().manual_seed(cfg.seed + 7)
        self.sample_z = torch.randn(cfg.n_sample, self.arch["style_dim"], generator=zgen).to(
            self.device
        )

    # -- construction -------------------------------------------------------------------

    def _make_d(self, sd: Mapping[str, Tensor], path: str | Path, random_init: bool) -> nn.Module:
        if random_init:
            # Same seed on every process: the random sketch D must start identical everywhere.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed + 3)
                return build_discriminator(self.arch).to(self.device)
        d = build_discriminator(self.arch)
        _load_strict(d, sd, f"{path} (d)")
        return d.to(self.device)

    def _ds(self) -> list[nn.Module]:
        return [self.d_sketch] + ([self.d_image] if self.d_image is not None else [])

    def _select_trainable(self) -> None:
        """Freeze G except the tuned part, so backward skips the frozen weights' gradients."""
        tune = self.cfg.tune
        named = list(self.g.named_parameters())
        if tune == "mapping":
            chosen = [(n, p) for n, p in named if "style" in n]
            if not chosen:
                raise _fail("tune", "is 'mapping' but the generator has no 'style' parameters")
        elif tune == "full":
            chosen = named
        else:
            chosen = []
        keep = {id(p) for _, p in chosen}
        for _, p in named:
            p.requires_grad_(id(p) in keep)
        if tune == "w_shift":
            # the reference's layout: a WShift module appended to the mapping network
            chosen = [(self.g.w_shift_key, self.g.add_w_shift())]
        self.g_trained_names = [n for n, _ in chosen]
        self.g_trained = [p for _, p in chosen]
        self.anchors = [p.detach().clone() for p in self.g_trained]

    # -- one iteration --------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _draw_fake(self) -> FakeDraws:
        styles, index = sample_styles(
            self.cfg.batch,
            self.arch["style_dim"],
            self.g.n_latent,
            self.cfg.mixing,
            self.rngs,
            self.device,
        )
        # the global RNG, as G itself would draw them (per-layer maps, forward order)
        noise = [
            torch.empty(self.cfg.batch, 1, r, r, device=self.device).normal_()
            for r in self.noise_sizes
        ]
        return FakeDraws(styles, index, noise)

    def _draw_shift(self) -> augment.Shift | None:
        return self.branch.draw(self.cfg.batch, self.arch["size"], self.rngs.aug, self.device)

    def draw_inputs(self, step: int) -> StepInputs:
        """This iteration's data and random draws; each stream is drawn in a fixed order, so
        a resumed run (streams restored from the checkpoint) repeats them exactly."""
        real_sketch, real_img = self._real_batch()
        d_fake = self._draw_fake()
        d_shift_real, d_shift_fake = self._draw_shift(), self._draw_shift()
        with_r1 = loop.due(step, self.cfg.d_reg_every)
        r1_shift = self._draw_shift() if with_r1 else None
        g_fake = self._draw_fake()
        return StepInputs(
            real_sketch=real_sketch,
            real_img=real_img,
            d_fake=d_fake,
            d_shift_real=d_shift_real,
            d_shift_fake=d_shift_fake,
            g_fake=g_fake,
            g_shift_fake=self._draw_shift(),
            step=step,
            with_r1=with_r1,
            r1_shift=r1_shift,
        )

    def _fake(self, draws: FakeDraws) -> Tensor:
        img, _ = self.g(draws.z, inject_index=draws.inject_index, noise=draws.noise)
        return img

    def _real_batch(self) -> tuple[Tensor, Tensor | None]:
        idx = self.sketch_stream.next(self.cfg.batch).to(self.device, non_blocking=True)
        real_sketch = self.sketches.index_select(0, idx)
        real_img = None
        if self.image_stream is not None:
            jdx = self.image_stream.next(self.cfg.batch).to(self.device, non_blocking=True)
            real_img = self.reg_images.index_select(0, jdx)
        return real_sketch, real_img

    def _apply(self, loss: Tensor, optim: torch.optim.Optimizer, scaler: Any, params: list) -> None:
        optim.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self.parallel.average_gradients(params)
        scaler.step(optim)
        scaler.update()

    def d_step(self, inp: StepInputs) -> dict[str, Tensor]:
        """Both discriminators on one fake batch; fakes are made without any graph."""
        set_requires_grad(self.d_params, True)
        with torch.no_grad(), self.autocast():
            fake_img = self._fake(inp.d_fake)
        with self.autocast():
            terms = self.objective.d_terms(
                fake_img, inp.real_sketch, inp.real_img, inp.d_shift_real, inp.d_shift_fake
            )
        self._apply(losses.total(terms), self.d_optim, self.d_scaler, self.d_params)
        return terms

    def r1_step(self, inp: StepInputs) -> dict[str, Tensor]:
        """Lazy R1 on both Ds, in float32 (a gradient penalty is fragile in half precision)."""
        terms = self.objective.r1_terms(inp.real_sketch, inp.real_img, inp.r1_shift)
        self.d_optim.zero_grad(set_to_none=True)
        losses.total(terms).backward()
        self.parallel.average_gradients(self.d_params)
        self.d_optim.step()
        return terms

    def g_step(self, inp: StepInputs) -> dict[str, Tensor]:
        """Sketch adversarial + l_image x image adversarial + l_weight x L1 pull."""
        set_requires_grad(self.d_params, False)
        with self.autocast():
            fake_img = self._fake(inp.g_fake)
            terms = self.objective.g_terms(fake_img, inp.g_shift_fake, self.g_trained, self.anchors)
        self._apply(losses.total(terms), self.g_optim, self.g_scaler, self.g_trained)
        return terms

    @property
    def phases(self) -> tuple[loop.Phase, ...]:
        """D step, lazy R1 every ``d_reg_every`` iterations, G step (NVlabs' phases)."""
        return (
            loop.Phase("D", 1, self.d_step),
            loop.Phase("R1", self.cfg.d_reg_every, self.r1_step),
            loop.Phase("G", 1, self.g_step),
        )

    def iteration(self, inp: StepInputs) -> dict[str, Tensor]:
        """One training iteration on given draws: the phases due at ``inp.step``, their named
        terms (what the loop runs; the step-parity test injects the reference's draws here)."""
        return loop.run_phases(self.phases, inp.step, inp)

    # -- state ------------------------------------------------------------------------------

    def generator_state(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in self.g.state_dict().items()}

    def trained_g_state(self) -> dict[str, Tensor]:
        """Only the tuned generator tensors: the frozen rest is the fingerprinted pretrained
        file, so storing it again would add ~100 MB per 256 px checkpoint for nothing."""
        return {n: p.detach().cpu() for n, p in self.g.named_parameters() if p.requires_grad}

    def load_trained_g_state(self, sd: Mapping[str, Tensor], where: str) -> None:
        params = dict(self.g.named_parameters())
        want = {n for n, p in params.items() if p.requires_grad}
        if set(sd) != want:
            raise SketchganError(f"{where}: generator tensors do not match train.tune")
        with torch.no_grad():
            for name, value in sd.items():
                params[name].copy_(value)

    def local_state(self) -> dict[str, Any]:
        """The per-process part of the state (random streams differ between ranks)."""
        streams = {"sketch": self.sketch_stream.state_dict()}
        if self.image_stream is not None:
            streams["image"] = self.image_stream.state_dict()
        return {"rng": state.capture_rng(self.rngs.named()), "streams": streams}

    def load_local_state(self, local: Mapping[str, Any]) -> None:
        state.restore_rng(local["rng"], self.rngs.named())
        self.sketch_stream.load_state_dict(local["streams"]["sketch"])
        if self.image_stream is not None:
            self.image_stream.load_state_dict(local["streams"]["image"])

    def shared_state(self) -> dict[str, Any]:
        return {
            "g": self.trained_g_state(),
            "d_sketch": self.d_sketch.state_dict(),
            "d_image": None if self.d_image is None else self.d_image.state_dict(),
            "g_optim": self.g_optim.state_dict(),
            "d_optim": self.d_optim.state_dict(),
            "g_scaler": self.g_scaler.state_dict(),
            "d_scaler": self.d_scaler.state_dict(),
        }

    def load_shared_state(self, sd: Mapping[str, Any], where: str) -> None:
        self.load_trained_g_state(sd["g"], where)
        _load_strict(self.d_sketch, sd["d_sketch"], where)
        if self.d_image is not None:
            _load_strict(self.d_image, sd["d_image"], where)
        self.g_optim.load_state_dict(sd["g_optim"])
        self.d_optim.load_state_dict(sd["d_optim"])
        if sd.get("g_scaler"):
            self.g_scaler.load_state_dict(sd["g_scaler"])
        if sd.get("d_scaler"):
            self.d_scaler.load_state_dict(sd["d_scaler"])

    def params_finite(self) -> bool:
        tensors = [p.detach() for p in (*self.g_trained, *self.d_params)]
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def export(self, step: int) -> dict[str, Any]:
        """The fine-tuned generator in the reference layout (``style.<n_mlp + 1>.w_shift`` in
        w_shift mode), plus ``d_image``."""
        sd = self.generator_state()
        out: dict[str, Any] = {
            "g_ema": sd,
            "g": sd,
            "d": {k: v.detach().cpu() for k, v in self.d_sketch.state_dict().items()},
            "config": dict(self.arch),
            "train_config": self.cfg.to_dict(),
            "step": step,
        }
        if self.d_image is not None:
            out["d_image"] = {k: v.detach().cpu() for k, v in self.d_image.state_dict().items()}
        return out

    @torch.no_grad()
    def sample_grid(self, path: Path) -> None:
        """Fixed z, stored noise: images on top, their PhotoSketch sketches below."""
        img, _ = self.g([self.sample_z], randomize_noise=False)
        sk = to3ch(self.branch.sketch(img))
        nrow = min(self.cfg.n_sample, 8)
        rows = []
        for start in range(0, img.shape[0], nrow):
            rows += [img[start : start + nrow], sk[start : start + nrow]]
        save_grid(torch.cat(rows).float(), path, nrow=nrow)


# --------------------------------------------------------------------------------------------
# logging, signals
# --------------------------------------------------------------------------------------------


def _read_rows(path: Path, upto: int) -> list[dict[str, str]]:
    """Rows of an earlier run's losses.csv up to the resumed step (later ones get replayed)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if int(float(row["step"])) <= upto]


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    loop.write_rows(path, rows, ["step", *METRIC_NAMES, *R1_NAMES, "seconds"], missing="")


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


class _Run:
    """The outer loop: iterations, sync points, checkpoints, evaluation and resumption."""

    def __init__(
        self,
        trainer: _Trainer,
        out_dir: Path,
        log_fn: LogFn | None,
        eval_fn: EvalFn | None,
        stop_fn: Callable[[], bool] | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.t = trainer
        self.stop_fn = stop_fn
        self.handle_signals = handle_signals
        self.stopped = False
        self.cfg = trainer.cfg
        self.out_dir = out_dir
        self.log_fn = log_fn
        self.eval_fn = eval_fn
        self.ckpt_path = state.checkpoint_path(out_dir)
        self.step = 0
        self.best_step: int | None = None
        self.best_score: float | None = None
        self.elapsed_before = 0.0
        self.rows: list[dict[str, Any]] = []
        self.meter = loop.Meter({**METRIC_TERMS, **R1_TERMS}, trainer.device)
        self.last_metrics: dict[str, float] = {}
        self.last_good_step: int | None = None

    # -- resume ------------------------------------------------------------------------------

    def try_resume(self) -> int:
        ckpt = state.load_checkpoint(self.ckpt_path)
        if ckpt is None:
            return 0
        where = str(self.ckpt_path)
        fresh = "start over with `sketchgan train --fresh`"
        step = int(ckpt["step"])
        loop.check_resume(where, ckpt.get("config", {}), self.cfg, step, "iters", fresh)
        loop.check_same_inputs(where, ckpt.get("fingerprints", {}), self.t.fingerprints, fresh)
        world = self.t.parallel.world_size
        if ckpt.get("world_size") != world:
            raise SketchganError(
                f"{where}: written by {ckpt.get('world_size')} processes, now {world}; "
                "resume with the same number of processes"
            )
        self.t.load_shared_state(ckpt["shared"], where)
        local = ckpt["local"][self.t.parallel.rank]
        self.t.load_local_state(local)
        self.meter.load(local.get("meter"), where, fresh)
        self.step = int(ckpt["step"])
        self.best_step = ckpt.get("best_step")
        self.best_score = ckpt.get("best_score")
        self.elapsed_before = float(ckpt.get("elapsed", 0.0))
        self.last_good_step = self.step
        if self.t.parallel.is_main:
            self.rows = _read_rows(self.out_dir / LOSSES_FILE, self.step)
        return self.step

    # -- periodic actions ----------------------------------------------------------------

    def save_checkpoint(self, elapsed: float) -> None:
        if not self.t.params_finite():
            raise self._nonfinite("a network weight")
        local = self.t.parallel.gather({**self.t.local_state(), "meter": self.meter.state()})
        if not self.t.parallel.is_main:
            return
        state.save_checkpoint(
            self.ckpt_path,
            {
                "step": self.step,
                "config": self.cfg.to_dict(),
                "fingerprints": self.t.fingerprints,
                "world_size": self.t.parallel.world_size,
                "shared": self.t.shared_state(),
                "local": local,
                "best_step": self.best_step,
                "best_score": self.best_score,
                "elapsed": elapsed,
            },
        )
        self.last_good_step = self.step

    def _nonfinite(self, what: str) -> SketchganError:
        kept = (
            f"last good checkpoint (step {self.last_good_step}) kept at {self.ckpt_path}"
            if self.last_good_step is not None
            else "no checkpoint was written yet"
        )
        return SketchganError(
            f"{self.out_dir}: non-finite {what} by step {self.step}; {kept}; "
            "lower train.lr or check the inputs"
        )

    def sync(self, elapsed: float, stop: bool, log_now: bool) -> bool:
        """Read the meter (one device sync); raise on NaN/Inf; log; return 'stop' agreement."""
        metrics, (stop_all,) = self.meter.read(self.t.parallel.sum_tensor, [float(stop)])
        bad = loop.nonfinite(metrics)
        if bad:
            raise self._nonfinite(f"loss ({', '.join(bad)})")
        if log_now and self.meter.steps:
            self.last_metrics = metrics
            if self.t.parallel.is_main:
                self.rows.append({"step": self.step, **metrics, "seconds": round(elapsed, 3)})
                _write_rows(self.out_dir / LOSSES_FILE, self.rows)
                if self.log_fn is not None:
                    self.log_fn(self.step, metrics)
            self.meter.reset()
        return stop_all > 0

    def evaluate(self) -> None:
        """Call ``eval_fn`` on rank 0 with the training RNG streams set aside."""
        if not self.t.parallel.is_main or self.eval_fn is None:
            return
        devices = [self.t.device.index or 0] if self.t.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            score = float(self.eval_fn(self.step, self.t.g))
        if not math.isfinite(score):
            raise SketchganError(f"eval_fn: returned {score} at step {self.step}")
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best_step = score, self.step
            save_torch(self.t.export(self.step), self.out_dir / BEST_FILE)

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> FinetuneResult:
        cfg, t = self.cfg, self.t
        resumed_from = self.try_resume()
        self._replay_rows()
        start_step, t0 = self.step, time.perf_counter()
        alone = t.parallel.world_size == 1
        stop_fn = self.stop_fn

        def after(step: int, _inp: StepInputs, _terms: dict[str, Tensor]) -> None:
            self.step = step

        with state.StopRequest(self.handle_signals) as stop:
            training = loop.TrainingLoop(
                t.draw_inputs,
                t.phases,
                # every boundary is checked: under DDP only some are sync points
                [loop.Periodic(1, lambda _s: self._boundary(t0, stop.requested, alone), False)],
                should_stop=None if stop_fn is None else (lambda _s: stop_fn()),
                after_iteration=after,
                meter=self.meter,
            )
            if training.run(self.step, cfg.iters).stopped:
                self._stop_early(t0)
        seconds = time.perf_counter() - t0
        ran = self.step - start_step
        return self._finish(resumed_from, seconds, ran)

    def _replay_rows(self) -> None:
        """Hand the rows written before the resumed step to ``log_fn`` again: the run that
        resumes (a new MLflow run) then holds the whole curve, as an uninterrupted one does."""
        if self.log_fn is None or not self.t.parallel.is_main:
            return
        for row in self.rows:
            values = {
                k: float(v)
                for k, v in row.items()
                if k not in ("step", "seconds") and v not in ("", None)
            }
            self.log_fn(int(float(row["step"])), values)

    def _stop_early(self, t0: float) -> None:
        """An interactive stop: keep what was trained (checkpoint + exported generator)."""
        self.stopped = True
        elapsed = self.elapsed_before + time.perf_counter() - t0
        self.sync(elapsed, False, True)
        self.save_checkpoint(elapsed)

    def _boundary(self, t0: float, stop_local: bool, alone: bool) -> None:
        """Everything due after iteration ``self.step``; raises after a requested stop."""
        cfg, s = self.cfg, self.step
        final = s == cfg.iters
        ckpt_due = loop.due(s, cfg.checkpoint_every) or final
        eval_due = self.eval_fn is not None and (loop.due(s, cfg.eval_every) or final)
        log_due = loop.due(s, cfg.log_every) or final
        sample_due = loop.due(s, cfg.sample_every) or (final and cfg.sample_every > 0)
        # A stop agreed over all processes can only be read at a sync point; alone, each step.
        must_sync = log_due or ckpt_due or eval_due or sample_due or (alone and stop_local)
        if not must_sync:
            return
        elapsed = self.elapsed_before + time.perf_counter() - t0
        stop = self.sync(elapsed, stop_local, log_due)
        if sample_due and self.t.parallel.is_main:
            self.t.sample_grid(self.out_dir / SAMPLES_DIR / f"step_{s:06d}.png")
        if eval_due:
            self.evaluate()
        if ckpt_due or stop:
            self.save_checkpoint(elapsed)
        if stop and not final:
            raise TrainingStopped(
                f"{self.out_dir}: stopped by signal at step {s}; checkpoint saved to "
                f"{self.ckpt_path}, rerun to resume"
            )

    def _finish(self, resumed_from: int, seconds: float, ran: int) -> FinetuneResult:
        last = self.out_dir / LAST_FILE
        self.t.parallel.verify_replicas([*self.t.g_trained, *self.t.d_params])
        if self.t.parallel.is_main:
            save_torch(self.t.export(self.step), last)
        self.t.parallel.barrier()
        best = self.out_dir / BEST_FILE if self.best_step is not None else None
        return FinetuneResult(
            steps=self.step,
            last_path=last,
            best_path=best,
            best_step=self.best_step,
            best_score=self.best_score,
            resumed_from=resumed_from,
            seconds=seconds,
            ms_per_iter=1000.0 * seconds / ran if ran else 0.0,
            device=str(self.t.device),
            amp=self.t.amp,
            metrics=self.last_metrics,
            stopped=self.stopped,
        )


def finetune(
    config: FinetuneConfig,
    generator_ckpt: str | Path,
    photosketch_ckpt: str | Path,
    sketches: Tensor,
    reg_images: Tensor | None,
    out_dir: str | Path,
    log_fn: LogFn | None = None,
    eval_fn: EvalFn | None = None,
    *,
    parallel: Parallel | None = None,
    stop_fn: Callable[[], bool] | None = None,
    handle_signals: bool = True,
) -> FinetuneResult:
    """Fine-tune a pretrained generator on user sketches; resumes from ``out_dir`` if possible.

    ``sketches``: (N, 1, S, S) in [-1, 1]; ``reg_images``: (N, 3, S, S) in [-1, 1], needed when
    ``l_image > 0``. ``log_fn(step, metrics)`` gets interval averages every ``log_every``
    steps; ``eval_fn(step, generator) -> score`` (lower is better, e.g. FID) is called every
    ``eval_every`` steps and at the end, and the best state goes to ``generator_best.pt``.
    Writes ``checkpoint.pt``, ``generator_last.pt``, ``losses.csv`` and ``samples/`` there.
    ``stop_fn()`` (single process; polled before every iteration) ends the run early and
    keeps its state: an interactive Stop, unlike a signal, still exports the generator.
    ``handle_signals``: SIGTERM/Ctrl-C -> checkpoint, then stop (off where the caller, e.g. a
    worker thread of the studio, cannot install signal handlers).
    """
    parallel = parallel or Parallel()
    out = Path(out_dir)
    if parallel.is_main:
        out.mkdir(parents=True, exist_ok=True)
    trainer = _Trainer(config, generator_ckpt, photosketch_ckpt, sketches, reg_images, parallel)
    if stop_fn is not None and parallel.world_size > 1:
        raise SketchganError("finetune: stop_fn works in a single process only")
    return _Run(trainer, out, log_fn, eval_fn, stop_fn, handle_signals).run()
