"""Does the sketch discriminator ask for the user's sketches' rotations?

`bench_diversity_factors.py` found the tuned models narrowing rotation inside the target pose
below even the spread of the user's sketches. The target leaves rotation free, so the eval
scenes span the world's whole range, but the sketch D's real side is the user's few sketches
alone. This script scores PhotoSketch sketches of the eval scenes (real scenes of the target
pose, whose true rotations the manifest records) with the sketch D of each checkpoint, each
sketch alone (a group of copies: no batch feature), and reports how well the score ranks the
scenes whose rotation lies inside the sketches' rotation range above the others (ROC AUC), the
correlation of the score with the distance to the nearest sketch's rotation, and the mean
scores inside and outside. A D that does not care about rotation scores 0.5 and 0.

Run inside a project where `make demo` has written data/ and models/pretrained/:

    .venv/bin/python reports/bench_sketch_d_rotation.py models/pretrained/generator.pt \\
        [LABEL=]outputs/train/checkpoint.pt [more ...]

(a generator file stands for iteration 0: the paper's sketch D starts as the image D.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_sketch_d_signal import TRAIN_BATCH, load_sketch_d, roc_auc, solo_scores

from sketchgan.checkpoints import load_sketch_net
from sketchgan.evaluation.sketching import sketch_images
from sketchgan.io import load_image_folder


def rotation_gap(rotations: np.ndarray, sketch_rotations: np.ndarray) -> np.ndarray:
    """Each rotation's distance (degrees) to the nearest sketch's rotation."""
    return np.abs(rotations[:, None] - sketch_rotations[None, :]).min(axis=1)


def rotation_row(scores: np.ndarray, rotations: np.ndarray, sketch_rotations: np.ndarray) -> dict:
    """How much the scores favour the sketches' rotations (a constant score: AUC 0.5, no
    correlation)."""
    inside = (rotations >= sketch_rotations.min()) & (rotations <= sketch_rotations.max())
    gap = rotation_gap(rotations, sketch_rotations)
    corr = float(np.corrcoef(scores, gap)[0, 1]) if scores.std() > 0 else 0.0
    return {
        "inside_share": round(float(inside.mean()), 3),
        "auc_inside": round(roc_auc(scores, inside), 3),
        "corr_gap": round(corr, 3),
        "mean_inside": round(float(scores[inside].mean()), 3),
        "mean_outside": round(float(scores[~inside].mean()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="PATH or LABEL=PATH of checkpoints")
    ap.add_argument("--generator", type=Path, default=Path("models/pretrained/generator.pt"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # PhotoSketch runs in train mode: no draw, but fixed all the same
    rotations = pd.read_csv("data/eval/manifest.csv")["rotation"].to_numpy(float)
    sketch_rotations = pd.read_csv("data/sketches/manifest.csv")["rotation"].to_numpy(float)
    net, _ = load_sketch_net("models/pretrained/photosketch.pt", "cpu")
    scenes = load_image_folder(Path("data/eval/images"), "RGB")
    sketches = sketch_images(net, scenes, TRAIN_BATCH, "train")
    for spec in args.checkpoints:
        label, _, path = spec.rpartition("=")
        d, step = load_sketch_d(Path(path), args.generator)
        scores = solo_scores(d, sketches).squeeze(1).numpy()
        row = rotation_row(scores, rotations, sketch_rotations)
        print(json.dumps({"checkpoint": label or path, "step": step, **row}), flush=True)


if __name__ == "__main__":
    main()
