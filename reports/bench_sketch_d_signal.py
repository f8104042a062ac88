"""Does the sketch discriminator of a fine-tuning run know which samples match the sketches?

The paper's generator update is the sketch D's gradient pushed through the frozen PhotoSketch
net into the mapping network. If that D does not rank samples in the sketched pose above the
rest, no number of iterations will move the generator the right way; if it does, a slow
generator is a matter of step size and step count. This script scores the sketches of 1,000
fixed-seed samples of the *original* generator with the sketch D of a fine-tuning checkpoint
and reports the ranking quality (ROC AUC) of "target pose" (shape and pose, per the world
evaluator) and of "sketched shape" against the rest, of "target pose" among the samples of
the sketched shape (does the D ask for the pose, or only for the shape?), and the D's mean
score of the user's sketches, of PhotoSketch sketches of real scenes in the sketched pose (the
eval set: right pose, PhotoSketch's drawing style), of target samples and of the others.

Run inside a project where `make demo` has written data/ and models/pretrained/:

    .venv/bin/python reports/bench_sketch_d_signal.py models/pretrained/generator.pt \
        outputs/train/checkpoint.pt [more.pt ...]

(a generator file stands for iteration 0: the paper's sketch D starts as the image D.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sketchgan.checkpoints import (
    load_checkpoint,
    load_finetuned_generator,
    load_generator,
    load_sketch_net,
)
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, predict_attributes
from sketchgan.evaluation.sampling import generate_images
from sketchgan.evaluation.sketching import sketch_images
from sketchgan.io import load_image_folder
from sketchgan.models.photosketch import to3ch
from sketchgan.runtime import load_params
from sketchgan.training.finetune import build_discriminator, generator_arch

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")  # the target pose: the only defaults
N_SAMPLES = 1000
EVAL_SEED = 12345
TRAIN_BATCH = 4  # PhotoSketch runs in train mode (batch statistics) over the training batch


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    if not pos.size or not neg.size:
        return float("nan")
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def load_sketch_d(checkpoint: Path, generator: Path) -> tuple[torch.nn.Module, int]:
    """A checkpoint's sketch D and its iteration; a generator file's D is iteration 0's (the
    paper's sketch D starts as the image D)."""
    d = build_discriminator(generator_arch(load_generator(generator)[1], generator))
    data = load_checkpoint(checkpoint)
    d.load_state_dict(data["shared"]["d_sketch"] if "shared" in data else data["d"])
    return d.eval(), int(data.get("step", 0))


@torch.no_grad()
def sketch_d_scores(d: torch.nn.Module, sketches: torch.Tensor) -> torch.Tensor:
    """The D on (N, 1, H, W) sketches in [-1, 1] (no augmentation).

    Scored in groups of the training batch, as in training: the minibatch-stddev feature
    makes a score depend on the other members of its group.
    """
    n = TRAIN_BATCH
    return torch.cat([d(to3ch(sketches[i : i + n])) for i in range(0, len(sketches), n)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--generator", type=Path, default=Path("models/pretrained/generator.pt"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(int(PARAMS["seed"]))
    target = world.TargetSpec.from_dict(PARAMS["prepare"]["target"])
    g = load_finetuned_generator(args.generator, "cpu")
    evaluator = load_evaluator("models/pretrained/evaluator.pt")
    net, _ = load_sketch_net("models/pretrained/photosketch.pt", "cpu")
    imgs = torch.cat(
        [generate_images(g, range(i, i + 250), EVAL_SEED) for i in range(0, N_SAMPLES, 250)]
    )
    pred = predict_attributes(evaluator, imgs)
    in_target = world.matches_target(pred, target)
    in_shape = (pred["shape"] == target.shape).to_numpy()
    fake = sketch_images(net, imgs, batch=TRAIN_BATCH, mode="train")
    user = load_image_folder(Path("data/sketches/images"), "L")
    # real scenes of exactly the sketched pose, through the same PhotoSketch: the pose is
    # right, only the drawing style differs from the user's sketches
    eval_sketches = sketch_images(
        net, load_image_folder(Path("data/eval/images"), "RGB"), TRAIN_BATCH, "train"
    )
    for ckpt in args.checkpoints:
        d, step = load_sketch_d(ckpt, args.generator)
        scores = sketch_d_scores(d, fake).flatten().numpy()
        real = sketch_d_scores(d, user).flatten().numpy()
        posed = sketch_d_scores(d, eval_sketches).flatten().numpy()
        row = {
            "checkpoint": str(ckpt),
            "step": step,
            "auc_target": round(roc_auc(scores, in_target), 3),
            "auc_shape": round(roc_auc(scores, in_shape), 3),
            # among samples of the sketched shape: does the D also prefer the sketched pose?
            "auc_pose_within_shape": round(roc_auc(scores[in_shape], in_target[in_shape]), 3),
            "score_user_sketches": round(float(real.mean()), 3),
            "score_eval_scenes": round(float(posed.mean()), 3),
            "score_target_samples": round(float(scores[in_target].mean()), 3),
            "score_other_samples": round(float(scores[~in_target].mean()), 3),
            "n_target": int(in_target.sum()),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
