"""Shape/pose of the samples along one fine-tuning run (how fast does a tuning mode move G?).

Run inside a project where `sketchgan prepare` and `sketchgan pretrain` have written data/ and
models/pretrained/ (evaluator, photosketch). Fine-tunes GEN with FinetuneConfig overrides,
resuming the same run up to each listed iteration count, and after each prints one JSON line
with the share of 1,000 fixed-seed samples (psi 1) in the target pose (``target``), read as
stars (``shape``), their colour spread, and FID against data/eval in world-evaluator features.

Usage:
    .venv/bin/python reports/bench_finetune_curve.py GEN NAME 250,500,1000 '{"tune": "mapping"}'

Three overrides are not FinetuneConfig fields but diagnostics, not the paper's method:
``"sketch_d_stddev_group": 1`` gives the *sketch* D a minibatch-stddev group of one sample, so
its batch-diversity feature is a constant (the image D keeps StyleGAN2's group of 4). It tests
whether the sketch D's verdict on how alike a batch's sketches are is what slows the run.
``"freeze_discriminators": true`` runs only the G phase: both discriminators stay as the run's
checkpoint left them (no D or R1 steps). It tests whether the generator, facing fixed
verdicts, goes where they point, or whether the discriminators' moving is what holds it back.
``"resume_g_lr": LR`` gives G's optimiser this lr once a checkpoint is loaded (the checkpoint
keeps the run's own config; its G optimiser state then carries LR on). With the frozen Ds it
asks whether their verdicts lead to the sketched pose when G can move as far as the
supervised probe does (`bench_mapping_capacity.py`, lr 0.1).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fixed_samples import fixed_seed_samples, target_pose

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, predict_attributes
from sketchgan.evaluation.metrics import colour_spread, fid_from_features
from sketchgan.io import load_image_folder, save_grid
from sketchgan.runtime import load_params
from sketchgan.training import finetune as ft
from sketchgan.training import loop, losses
from sketchgan.training.finetune import FinetuneConfig, FinetuneResult, finetune


@torch.no_grad()
def _measure(g, evaluator, ref_feats, it: int, name: str, work: Path) -> dict:
    imgs = fixed_seed_samples(g)
    pred = predict_attributes(evaluator, imgs)
    target = target_pose()
    save_grid(imgs[:32], work / f"curve_{name}_{it:06d}.png", nrow=8)
    feats = evaluator.features(imgs).numpy()
    return {
        "name": name,
        "it": it,
        "target": float(world.matches_target(pred, target).mean()),
        "shape": float((pred["shape"] == target.shape).mean()),
        "colour_spread": round(colour_spread(imgs), 4),
        "fid": round(fid_from_features(feats, ref_feats), 2),
    }


def set_sketch_d_stddev_group(group: int) -> None:
    """Every objective built from now on gives its sketch D this minibatch-stddev group (the
    module attribute the feature reads; the weights and the image D are untouched)."""
    build = losses.GANSketchingObjective.__init__

    def init(self, branch, d_sketch, *args, **kwargs) -> None:
        d_sketch.stddev_group = group
        build(self, branch, d_sketch, *args, **kwargs)

    losses.GANSketchingObjective.__init__ = init


def freeze_discriminators() -> None:
    """Every trainer built from now on runs only its G phase (the D and R1 phases are dropped;
    the random draws stay the same, so the G steps see the batches the full run would)."""

    def g_only(self: ft._Trainer) -> tuple[loop.Phase, ...]:
        return (loop.Phase("G", 1, self.g_step),)

    ft._Trainer.phases = property(g_only)


def set_resume_g_lr(lr: float) -> None:
    """Every trainer built from now on gives G's optimiser ``lr`` after loading a checkpoint
    (the run's config, which the resume compares, stays the run's)."""
    load = ft._Trainer.load_shared_state

    def load_then_set(self: ft._Trainer, sd, where: str) -> None:
        load(self, sd, where)
        for group in self.g_optim.param_groups:
            group["lr"] = lr

    ft._Trainer.load_shared_state = load_then_set


def _switch(
    over: dict, key: str, kinds: tuple[type, ...], ok: Callable[[Any], bool], want: str
) -> Any:
    """``over.pop(key)`` if it is one of ``kinds`` (JSON true/false only where bool is one)
    and passes ``ok``; else one line naming the key."""
    value = over.pop(key)
    is_bool = isinstance(value, bool)
    if is_bool != (bool in kinds) or not isinstance(value, kinds) or not ok(value):
        raise SystemExit(f"diagnostic override {key!r}: expected {want}, got {value!r}")
    return value


def apply_diagnostics(over: dict) -> dict:
    """``over`` without the diagnostic switches, each of which is applied to this process."""
    over = dict(over)
    if "sketch_d_stddev_group" in over:
        group = _switch(over, "sketch_d_stddev_group", (int,), lambda v: v >= 1, "an integer >= 1")
        set_sketch_d_stddev_group(group)
    if "freeze_discriminators" in over and _switch(
        over, "freeze_discriminators", (bool,), lambda v: True, "true or false"
    ):
        freeze_discriminators()
    if "resume_g_lr" in over:
        lr = _switch(over, "resume_g_lr", (int, float), lambda v: v > 0, "a number > 0")
        set_resume_g_lr(float(lr))
    return over


PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults


def continue_run(
    gen: str,
    sketches: torch.Tensor,
    reg: torch.Tensor,
    out: Path,
    iters: int,
    over: dict,
    checkpoint_every: int = 250,
) -> FinetuneResult:
    """The run in ``out`` (the paper's defaults + ``over``) resumed up to ``iters`` iterations,
    with no evaluations or sample sheets on the way (the benchmarks measure afterwards)."""
    settings = {
        "iters": iters,
        "eval_every": 0,
        "sample_every": 0,
        "checkpoint_every": checkpoint_every,
        "log_every": 25,
        "device": "cpu",
        **over,
    }
    return finetune(
        FinetuneConfig.from_params(PARAMS, **settings),
        gen,
        "models/pretrained/photosketch.pt",
        sketches,
        reg,
        out,
        handle_signals=False,
    )


def main() -> None:
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    gen, name = sys.argv[1], sys.argv[2]
    iters = [int(x) for x in sys.argv[3].split(",")]
    over = apply_diagnostics(json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
    work = Path(os.environ.get("BENCH_DIR", "/tmp/bench"))
    work.mkdir(parents=True, exist_ok=True)
    evaluator = load_evaluator("models/pretrained/evaluator.pt")
    with torch.no_grad():
        ref = evaluator.features(load_image_folder("data/eval/images", "RGB")).numpy()
    sketches = load_image_folder(Path("data/sketches/images"), "L")
    reg = load_image_folder(Path("data/image_reg/images"), "RGB")
    g0 = load_finetuned_generator(gen, "cpu")
    print(json.dumps(_measure(g0, evaluator, ref, 0, name, work)), flush=True)
    out = work / f"ftcurve_{name}"
    start = time.perf_counter()
    for it in iters:
        result = continue_run(gen, sketches, reg, out, it, over)
        g = load_finetuned_generator(out / "generator_last.pt", "cpu")
        row = _measure(g, evaluator, ref, it, name, work)
        row.update(
            ms_per_iter=round(result.ms_per_iter, 1), wall_s=round(time.perf_counter() - start)
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
