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

Real scenes of every pose (the image regulariser's set, which the sketch D never sees) separate
the two things a score can reward: among them, the ranking of the sketched pose is the D's
knowledge of the pose with the generator's rendering taken out; and the ranking of real
scenes above generated samples is how much the D rewards real rendering, whatever the pose.
The same sketches are also scored alone (a group of copies: the minibatch-stddev feature reads
zero) and among generated batch-mates, which measures how much of a score is the batch.

Run inside a project where `make demo` has written data/ and models/pretrained/:

    .venv/bin/python reports/bench_sketch_d_signal.py models/pretrained/generator.pt \
        outputs/train/checkpoint.pt [more.pt ...]

(a generator file stands for iteration 0: the paper's sketch D starts as the image D.)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fixed_samples import fixed_seed_samples, target_pose

from sketchgan.checkpoints import (
    load_checkpoint,
    load_finetuned_generator,
    load_generator,
    load_sketch_net,
)
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, predict_attributes
from sketchgan.evaluation.sketching import sketch_images
from sketchgan.io import load_image_folder
from sketchgan.models.photosketch import to3ch
from sketchgan.runtime import load_params
from sketchgan.training.finetune import build_discriminator, generator_arch

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")  # the seed: the only defaults
TRAIN_BATCH = 4  # PhotoSketch runs in train mode (batch statistics) over the training batch


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    if not pos.size or not neg.size:
        return float("nan")
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def load_sketch_d(
    checkpoint: Path, generator: Path, stddev_group: int | None = None
) -> tuple[torch.nn.Module, int]:
    """A checkpoint's sketch D and its iteration; a generator file's D is iteration 0's (the
    paper's sketch D starts as the image D). ``stddev_group``: the minibatch-stddev group the
    D was trained with, where a diagnostic run changed it (it is not in the state dict)."""
    d = build_discriminator(generator_arch(load_generator(generator)[1], generator))
    data = load_checkpoint(checkpoint)
    d.load_state_dict(data["shared"]["d_sketch"] if "shared" in data else data["d"])
    if stddev_group is not None:
        d.stddev_group = stddev_group
    return d.eval(), int(data.get("step", 0))


@torch.no_grad()
def sketch_d_scores(d: torch.nn.Module, sketches: torch.Tensor) -> torch.Tensor:
    """The D on (N, 1, H, W) sketches in [-1, 1] (no augmentation).

    Scored in groups of the training batch, as in training: the minibatch-stddev feature
    makes a score depend on the other members of its group.
    """
    n = TRAIN_BATCH
    return torch.cat([d(to3ch(sketches[i : i + n])) for i in range(0, len(sketches), n)])


@dataclass(frozen=True)
class SketchSets:
    """The sketches a D is scored on, and which of them show the sketched shape and pose."""

    samples: torch.Tensor  # PhotoSketch(original model's fixed-seed samples)
    sample_target: np.ndarray  # bool per sample: sketched shape in the sketched pose
    sample_shape: np.ndarray  # bool per sample: sketched shape
    user: torch.Tensor  # the user's sketches (the D's real side in training)
    posed_scenes: torch.Tensor  # PhotoSketch(real scenes of the sketched pose)
    scenes: torch.Tensor  # PhotoSketch(real scenes of every pose), never seen by the sketch D
    scene_target: np.ndarray  # bool per real scene: sketched shape in the sketched pose


N_SOLO = 200  # samples outside the sketched pose scored alone (all target-pose ones are)


@torch.no_grad()
def solo_scores(d: torch.nn.Module, sketches: torch.Tensor) -> torch.Tensor:
    """Each sketch in a group of its own copies: the batch-diversity feature reads zero, so
    what is left is the D's verdict on the sketch itself."""
    return torch.cat([d(to3ch(s.expand(TRAIN_BATCH, -1, -1, -1)))[:1] for s in sketches])


@torch.no_grad()
def among_scores(d: torch.nn.Module, sketches: torch.Tensor, mates: torch.Tensor) -> torch.Tensor:
    """Each sketch in a group with the next ``TRAIN_BATCH - 1`` of ``mates`` (fixed, cycling):
    what a user's sketch scores when its batch-mates are as unlike each other as a fake
    batch's."""
    out = []
    for i, s in enumerate(sketches):
        idx = [(i * (TRAIN_BATCH - 1) + j) % len(mates) for j in range(TRAIN_BATCH - 1)]
        out.append(d(to3ch(torch.cat([s[None], mates[idx]])))[:1])
    return torch.cat(out)


def _mean(scores: torch.Tensor | np.ndarray) -> float:
    return round(float(scores.mean()), 3)


def _auc_real_first(real: np.ndarray, generated: np.ndarray) -> float:
    """ROC AUC of real above generated scores: 0.5 = the D cannot tell them apart."""
    both = np.concatenate([real, generated])
    return round(roc_auc(both, np.arange(len(both)) < len(real)), 3)


def signal_row(d: torch.nn.Module, sets: SketchSets) -> dict:
    """How one sketch D ranks and scores each set (the rows of the report's two tables)."""
    scores = sketch_d_scores(d, sets.samples).flatten().numpy()
    user = sketch_d_scores(d, sets.user).flatten().numpy()
    posed = sketch_d_scores(d, sets.posed_scenes).flatten().numpy()
    scenes = sketch_d_scores(d, sets.scenes).flatten().numpy()
    t, s, rt = sets.sample_target, sets.sample_shape, sets.scene_target
    return {
        "auc_target": round(roc_auc(scores, t), 3),
        "auc_shape": round(roc_auc(scores, s), 3),
        # among samples of the sketched shape: does the D also prefer the sketched pose?
        "auc_pose_within_shape": round(roc_auc(scores[s], t[s]), 3),
        "auc_target_real_scenes": round(roc_auc(scenes, rt), 3),
        "auc_real_vs_generated": _auc_real_first(scenes, scores),
        # the same, inside the sketched pose: real target scenes vs generated target samples
        "auc_real_vs_generated_in_target": _auc_real_first(scenes[rt], scores[t]),
        "score_user_sketches": _mean(user),
        "score_eval_scenes": _mean(posed),
        "score_real_scenes": _mean(scenes),
        "score_target_real_scenes": _mean(scenes[rt]),
        "score_target_samples": _mean(scores[t]),
        # the batch-diversity feature's share of a score (groups of 4 as in training)
        "score_user_among_samples": _mean(among_scores(d, sets.user, sets.samples)),
        "score_target_samples_together": _mean(sketch_d_scores(d, sets.samples[t])),
        "score_target_solo": _mean(solo_scores(d, sets.samples[t])),
        "score_other_solo": _mean(solo_scores(d, sets.samples[~t][:N_SOLO])),
        "score_other_samples": _mean(scores[~t]),
        "n_target": int(t.sum()),
        "n_target_real_scenes": int(sets.scene_target.sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--generator", type=Path, default=Path("models/pretrained/generator.pt"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--sketch-d-stddev-group",
        type=int,
        default=None,
        help="the group a diagnostic run trained its sketch D with (bench_finetune_curve.py)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(int(PARAMS["seed"]))
    target = target_pose()
    g = load_finetuned_generator(args.generator, "cpu")
    evaluator = load_evaluator("models/pretrained/evaluator.pt")
    net, _ = load_sketch_net("models/pretrained/photosketch.pt", "cpu")
    imgs = fixed_seed_samples(g)
    pred = predict_attributes(evaluator, imgs)
    eval_images = load_image_folder(Path("data/eval/images"), "RGB")
    scene_images = load_image_folder(Path("data/image_reg/images"), "RGB")
    sets = SketchSets(
        samples=sketch_images(net, imgs, batch=TRAIN_BATCH, mode="train"),
        sample_target=world.matches_target(pred, target),
        sample_shape=(pred["shape"] == target.shape).to_numpy(),
        user=load_image_folder(Path("data/sketches/images"), "L"),
        posed_scenes=sketch_images(net, eval_images, TRAIN_BATCH, "train"),
        scenes=sketch_images(net, scene_images, TRAIN_BATCH, "train"),
        # the evaluator's reading, as for the samples, so both rankings use one judge
        scene_target=world.matches_target(predict_attributes(evaluator, scene_images), target),
    )
    for ckpt in args.checkpoints:
        d, step = load_sketch_d(ckpt, args.generator, args.sketch_d_stddev_group)
        row = {"checkpoint": str(ckpt), "step": step, **signal_row(d, sets)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
