"""Sample quality of the pretrained world generator against iterations (the pretraining sweep).

Trains a generator with ``GeneratorPretrainConfig`` overrides on 10,000 world scenes, resuming
the same run up to each listed iteration count, and after each prints one JSON line:

- ``efid``: FID of 2,000 g_ema samples (psi 1) against 2,000 fresh real renders, in the feature
  space of the world evaluator (real vs real: 1.85). Evaluator features, not Inception.
- ``conf``: mean class probability the evaluator gives its predicted shape (reals: 0.998).
- ``hist``: predicted shape classes of the samples (reals: 20% each).
- ``match``: share of samples in the embedded target pose (a star in the upper-left quadrant;
  reals: about 2%).

Usage (one thread, as in reports/bench_pretrain.md):
    .venv/bin/python reports/bench_pretrain_quality.py NAME 1500,3000,4500,6000 '{"n_mlp": 2}'
    .venv/bin/python reports/bench_pretrain_quality.py NAME 2000,4000 '{}' '{"4": 64, "8": 64}'
The optional last argument overrides the channel count per resolution (sweep only: it patches
``stylegan2.channel_table`` in this process). Work files go to $BENCH_DIR (default /tmp/bench).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import sketchgan.models.stylegan2 as sg
from sketchgan.data import world
from sketchgan.evaluation.evaluator import (
    load_evaluator,
    predict_attributes,
    save_evaluator,
    train_evaluator,
)
from sketchgan.evaluation.metrics import fid_from_features
from sketchgan.runtime import load_params
from sketchgan.training.pretrain import GeneratorPretrainConfig, train_generator

TARGET = {"shape": "star", "cx": [0.35, 0.5], "cy": [0.35, 0.5], "scale": [0.5, 0.65]}

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults
# the evaluator these scripts score with: the zoo's recipe (zoo.yaml), seed 7
ZOO_EVALUATOR = dict(
    size=32,
    seed=7,
    device="cpu",
    **{k: v for k, v in PARAMS["evaluator"].items()},
)


def _patch_channels(spec: str) -> None:
    extra = {int(k): int(v) for k, v in json.loads(spec).items()}
    original = sg.channel_table
    sg.channel_table = lambda cm=2, cmax=512: {**original(cm, cmax), **extra}


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _cached(path: Path, make):
    if not path.exists():
        make(path)
    return path


@torch.no_grad()
def _features(evaluator, images: torch.Tensor) -> np.ndarray:
    evaluator.eval()
    return torch.cat(
        [evaluator.features(images[i : i + 500]) for i in range(0, len(images), 500)]
    ).numpy()


def main() -> None:
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    name, iters, over = (
        sys.argv[1],
        [int(x) for x in sys.argv[2].split(",")],
        json.loads(sys.argv[3]),
    )
    if len(sys.argv) > 4:
        _patch_channels(sys.argv[4])
    work = Path(os.environ.get("BENCH_DIR", "/tmp/bench"))
    work.mkdir(parents=True, exist_ok=True)
    ev_path = _cached(
        work / "evaluator.pt",
        lambda p: save_evaluator(train_evaluator(**ZOO_EVALUATOR)[0], p),
    )
    evaluator = load_evaluator(ev_path)
    real_path = _cached(
        work / "real.pt",
        lambda p: torch.save(torch.from_numpy(world.render_scenes(10000, 32, 0)[0]), p),
    )
    x = torch.load(real_path, weights_only=True).permute(0, 3, 1, 2).float() / 127.5 - 1
    ref = _features(evaluator, _to_tensor(world.render_scenes(2000, 32, 123)[0]))
    target = world.TargetSpec.from_dict(TARGET)
    out = work / name
    start = time.perf_counter()
    for it in iters:
        cfg = GeneratorPretrainConfig.from_params(
            PARAMS,
            device="cpu",
            iterations=it,
            sample_every=0,
            checkpoint_every=it,
            **{"n_mlp": 8, **over},  # 8: the code default when these rows were measured
        )
        result = train_generator(x, cfg, out)
        ckpt = torch.load(out / "generator.pt", weights_only=True)
        g = sg.Generator(32, cfg.style_dim, cfg.n_mlp, cfg.channel_multiplier, cfg.channel_max)
        g.load_state_dict(ckpt["g_ema"])
        g.eval()
        with torch.no_grad():
            z = torch.randn(2000, cfg.style_dim, generator=torch.Generator().manual_seed(99))
            imgs = torch.cat([g([z[i : i + 250]])[0] for i in range(0, 2000, 250)]).clamp(-1, 1)
        pred = predict_attributes(evaluator, imgs)
        shutil.copy(out / "samples.png", out / f"samples_{it}.png")
        row = {
            "name": name,
            "it": it,
            "wall_s": round(time.perf_counter() - start),
            "ms_per_iter": round(result["ms_per_iter"], 1),
            "efid": round(fid_from_features(_features(evaluator, imgs), ref), 1),
            "conf": round(float(pred["shape_prob"].mean()), 3),
            "match": float(world.matches_target(pred, target).mean()),
            "hist": pred["shape"].value_counts(normalize=True).round(2).to_dict(),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
