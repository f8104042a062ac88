"""What fine-tuning does to the samples' shapes: mapping-only vs w_shift vs the whole generator.

Run inside a project where `sketchgan prepare` and `sketchgan pretrain` have written data/ and
models/pretrained/ (evaluator, photosketch). GEN is any generator.pt in the pretrain layout.
For the original GEN (with ORIG=1) and the fine-tuned one it prints one JSON line: the share of
1,000 fixed-seed samples the world evaluator classifies as stars (``star``), the share in the
target pose (``match``, tolerance 0; ``match05``, tolerance 0.05), and the class histogram;
a grid of the first 32 samples goes to $BENCH_DIR/ft_<NAME>_<tag>.png.

Usage:
    ORIG=1 .venv/bin/python reports/bench_finetune_modes.py GEN m '{"tune": "mapping", "lr": 0.02}'
    .venv/bin/python reports/bench_finetune_modes.py GEN full '{"tune": "full", "lr": 0.002}'
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from fixed_samples import fixed_seed_samples, target_pose

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, predict_attributes
from sketchgan.io import load_image_folder, save_grid
from sketchgan.runtime import load_params
from sketchgan.training.finetune import (
    FinetuneConfig,
    build_generator,
    finetune,
    generator_arch,
)

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults


def _measure(g: torch.nn.Module, evaluator, name: str, tag: str, work: Path) -> None:
    imgs = fixed_seed_samples(g)
    pred = predict_attributes(evaluator, imgs)
    target = target_pose()
    hist = pred["shape"].value_counts(normalize=True).round(3).to_dict()
    save_grid(imgs[:32], work / f"ft_{name}_{tag}.png", nrow=8)
    row = {
        "name": name,
        "tag": tag,
        "match": float(world.matches_target(pred, target).mean()),
        "match05": float(world.matches_target(pred, target, 0.05).mean()),
        "star": hist.get("star", 0.0),
        # colour variety: spread of the samples' mean colours (the original model's is the
        # yardstick; a collapse towards one tint shows here before it shows in FID)
        "colour_spread": round(float(imgs.mean((2, 3)).std(0).mean()), 3),
        "hist": hist,
    }
    print(json.dumps(row), flush=True)


def main() -> None:
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    gen_path, name, over = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    work = Path(os.environ.get("BENCH_DIR", "/tmp/bench"))
    work.mkdir(parents=True, exist_ok=True)
    evaluator = load_evaluator("models/pretrained/evaluator.pt")
    sketches = load_image_folder(Path("data/sketches/images"), "L")
    reg = load_image_folder(Path("data/image_reg/images"), "RGB")
    if os.environ.get("ORIG"):
        ckpt = torch.load(gen_path, weights_only=True)
        g = build_generator(generator_arch(ckpt["config"], gen_path))
        g.load_state_dict(ckpt["g_ema"])
        _measure(g.eval(), evaluator, name, "orig", work)
    settings = {
        "iters": 500,
        "lr": 0.002,
        "eval_every": 0,
        "sample_every": 0,
        "checkpoint_every": 0,
        "log_every": 25,
        "device": "cpu",
    }
    cfg = FinetuneConfig.from_params(PARAMS, **{**settings, **over})
    out = work / f"ftrun_{name}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = finetune(
        cfg, gen_path, "models/pretrained/photosketch.pt", sketches, reg, out, handle_signals=False
    )
    print(
        json.dumps(
            {
                "name": name,
                "seconds": round(time.perf_counter() - start, 1),
                "ms_per_iter": round(result.ms_per_iter, 1),
            }
        ),
        flush=True,
    )
    g = load_finetuned_generator(out / "generator_last.pt", "cpu")
    _measure(g.eval(), evaluator, name, "ft", work)


if __name__ == "__main__":
    main()
