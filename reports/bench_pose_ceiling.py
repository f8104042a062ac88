"""How much diversity can a mapping-only method keep at best, on this generator?

Mapping-only fine-tuning can only change *which* w the synthesis network gets. The most a
perfect one could do is hand it the w of the original model's own samples that already show the
sketched shape in the sketched pose, with their colours and textures: the original's
distribution restricted to the target. This script measures that restriction (rejection
sampling of the original model over the reports' fixed-seed sequence, kept by the world
evaluator's verdict), so the fine-tuned model's recall and colour spread can be read against
what the synthesis network itself allows, not only against the unrestricted original, which
covers every shape and pose.

Run inside a project where `make demo` (or `sketchgan prepare` + `sketchgan pretrain`) has
written data/ and models/pretrained/:

    .venv/bin/python reports/bench_pose_ceiling.py --draws 60000 > ceiling.jsonl

One JSON line per set: the unrestricted original (its first 1,000 samples: the other reports'
iteration 0), its first 1,000 samples of the sketched shape, its first 1,000 samples in the
target pose (target match with ``evaluate.match_tol``, as every report counts it), and the eval
set's real scenes themselves (colour spread only: recall of a set against itself is 1). FID,
precision and recall (k of ``evaluate.k``) are against the eval scenes, in evaluator features,
1,000 samples each, as the fine-tuning reports measure theirs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from fixed_samples import CHUNK, N_SAMPLES, fixed_seed_chunks, target_pose
from tqdm import tqdm

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, predict_attributes
from sketchgan.evaluation.metrics import colour_spread, fid_from_features, precision_recall
from sketchgan.io import load_image_folder
from sketchgan.runtime import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")  # match tolerance and k: the only defaults


def mean_colours(images: torch.Tensor) -> np.ndarray:
    """Each image's mean RGB: all that colour spread needs, kept instead of the images."""
    return images.double().mean(dim=(2, 3)).numpy()


def spread_of(colours: np.ndarray) -> float:
    """colour_spread of images whose mean colours are ``colours`` (1x1 images of that colour)."""
    return colour_spread(colours[:, :, None, None])


@torch.no_grad()
def draw_and_judge(
    g: torch.nn.Module, evaluator: torch.nn.Module, draws: int, target: world.TargetSpec
) -> dict[str, np.ndarray]:
    """Samples ``0..draws-1`` of the fixed-seed sequence, judged: their evaluator features, mean
    colours, and whether each shows the sketched shape / the target pose."""
    tol = float(PARAMS["evaluate"]["match_tol"])
    parts: dict[str, list[np.ndarray]] = {"feats": [], "colours": [], "shape": [], "target": []}
    total = -(-draws // CHUNK)
    chunks = tqdm(fixed_seed_chunks(g, draws), desc="original samples", total=total, unit="chunk")
    for imgs in chunks:
        pred = predict_attributes(evaluator, imgs)
        parts["feats"].append(evaluator.features(imgs).numpy())
        parts["colours"].append(mean_colours(imgs))
        parts["shape"].append((pred["shape"] == target.shape).to_numpy())
        parts["target"].append(world.matches_target(pred, target, tol))
    return {k: np.concatenate(v) for k, v in parts.items()}


def set_row(
    label: str,
    judged: dict[str, np.ndarray],
    keep: np.ndarray,
    ref_feats: np.ndarray,
    n: int,
) -> dict:
    """The first ``n`` kept samples measured as the fine-tuning reports measure 1,000 samples."""
    idx = np.flatnonzero(keep)[:n]
    if len(idx) < n:
        raise SystemExit(f"{label}: only {len(idx)} of {n} samples found; draw more (--draws)")
    feats = judged["feats"][idx]
    pr = precision_recall(ref_feats, feats, k=int(PARAMS["evaluate"]["k"]))
    return {
        "set": label,
        "n": n,
        "drawn": int(idx[-1]) + 1,
        "target": round(float(judged["target"][idx].mean()), 3),
        "shape": round(float(judged["shape"][idx].mean()), 3),
        "fid": round(fid_from_features(feats, ref_feats), 2),
        "precision": round(pr["precision"], 3),
        "recall": round(pr["recall"], 3),
        "colour_spread": round(spread_of(judged["colours"][idx]), 4),
    }


def ceiling_rows(
    g: torch.nn.Module,
    evaluator: torch.nn.Module,
    eval_images: torch.Tensor,
    draws: int,
    n: int = N_SAMPLES,
) -> list[dict]:
    """The unrestricted original, restricted to the shape, restricted to the target pose, and
    the eval scenes' own colour spread."""
    target = target_pose()
    with torch.no_grad():
        ref = evaluator.features(eval_images).numpy()
    judged = draw_and_judge(g, evaluator, draws, target)
    everything = np.ones(draws, dtype=bool)
    return [
        set_row("original", judged, everything, ref, n),
        set_row("original, sketched shape only", judged, judged["shape"], ref, n),
        set_row("original, target pose only", judged, judged["target"], ref, n),
        {
            "set": "eval scenes (real, target pose)",
            "n": len(eval_images),
            "colour_spread": round(colour_spread(eval_images), 4),
        },
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, required=True, help="original samples to judge")
    ap.add_argument("--generator", type=Path, default=Path("models/pretrained/generator.pt"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    evaluator = load_evaluator("models/pretrained/evaluator.pt").eval()
    g = load_finetuned_generator(args.generator, "cpu").eval()
    eval_images = load_image_folder("data/eval/images", "RGB")
    for row in ceiling_rows(g, evaluator, eval_images, args.draws):
        print(json.dumps({"generator": str(args.generator), **row}), flush=True)


if __name__ == "__main__":
    main()
