"""How far mapping-only fine-tuning moves w, per G learning rate and iteration count.

Fine-tunes GEN (mapping only, the paper's losses) for ITERS iterations with G's Adam at G_LR
(the discriminators keep ``train.lr``), then maps 2,000 fixed z through the original and the
tuned mapping network and prints one JSON line: the shift of the mean w and the mean per-sample
move, both as a fraction of the original w's spread (mean distance of a w to the mean w), and the
ratio of the spreads (1 = no collapse). Run inside a project with data/ and models/pretrained/.

Usage:
    .venv/bin/python reports/bench_mapping_budget.py GEN G_LR ITERS
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.io import load_image_folder
from sketchgan.runtime import load_params
from sketchgan.training.finetune import FinetuneConfig, finetune

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults


def main() -> None:
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    gen, g_lr, iters = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    sketches = load_image_folder("data/sketches/images", "L")
    reg = load_image_folder("data/image_reg/images", "RGB")
    out = Path(os.environ.get("BENCH_DIR", "/tmp/bench")) / f"budget_{g_lr}_{iters}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = FinetuneConfig.from_params(
        PARAMS,
        iters=iters,
        g_lr=g_lr,
        tune="mapping",
        eval_every=0,
        sample_every=0,
        checkpoint_every=0,
        log_every=25,
        device="cpu",
    )
    t0 = time.perf_counter()
    result = finetune(
        cfg, gen, "models/pretrained/photosketch.pt", sketches, reg, out, handle_signals=False
    )
    g0 = load_finetuned_generator(gen)
    g1 = load_finetuned_generator(out / "generator_last.pt")
    z = torch.randn(2000, g0.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        w0, w1 = g0.get_latent(z), g1.get_latent(z)
    spread = (w0 - w0.mean(0)).norm(dim=1).mean()
    row = {
        "g_lr": g_lr,
        "iters": iters,
        "ms_per_iter": round(result.ms_per_iter, 1),
        "wall_s": round(time.perf_counter() - t0),
        "mean_shift": round(float((w1.mean(0) - w0.mean(0)).norm() / spread), 4),
        "per_sample_move": round(float((w1 - w0).norm(dim=1).mean() / spread), 4),
        "spread_ratio": round(float((w1 - w1.mean(0)).norm(dim=1).mean() / spread), 4),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
