"""Can the mapping network alone put the generator's samples in the sketched pose at all?

The paper's method changes only the mapping network. Whether that can reach the issue's bar on
our generator is two questions: can *some* mapping make most samples stars in the target pose
while keeping their diversity (capacity), and does the sketch-domain GAN signal find it in the
budget (optimisation). This script answers the first: it tunes the same parameters the method
tunes (every tensor named ``style.*``), with the method's Adam betas, but against a direct,
supervised target instead of the discriminators: the frozen world evaluator's cross-entropy
towards the sketched shape plus the squared distance of its pose readout (cx, cy, scale) to the
centre of the target box. It is a diagnostic, not a method: optimising against the evaluator
can also fool it, so the figure of the tuned samples must be looked at, and sketch Chamfer (a
different network: PhotoSketch + distance transform) is reported beside the evaluator's shares.

Run inside a project where `make demo` (or `sketchgan prepare` + `sketchgan pretrain`) has
written data/ and models/pretrained/:

    .venv/bin/python reports/bench_mapping_capacity.py --lr 0.1 --iters 1000 --at 0,250,500,1000

With ``--generator G --iters 0 --at 0`` it only measures G (a snapshot of a fine-tuning run), so
the method's rows and the probe's share one table. One JSON line per measurement: target/shape
match, FID, precision/recall against data/eval, colour spread and sketch Chamfer of 1,000
fixed-seed samples (psi 1), and how far w moved.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fixed_samples import fixed_seed_samples, target_pose, w_move

from sketchgan.checkpoints import load_finetuned_generator, load_sketch_net
from sketchgan.data import world
from sketchgan.evaluation.chamfer import chamfer_scores
from sketchgan.evaluation.evaluator import (
    _to_unit,
    load_evaluator,
    predict_attributes,
)
from sketchgan.evaluation.metrics import colour_spread, fid_from_features, precision_recall
from sketchgan.evaluation.sketching import sketch_images
from sketchgan.io import load_image_folder, save_grid
from sketchgan.runtime import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")  # seed, match tolerance, k: the only defaults


def mapping_only(g: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Freeze all but the tensors the method tunes (``style.*``, as ``train.tune: mapping``)."""
    for n, p in g.named_parameters():
        p.requires_grad_("style" in n)
    return [p for p in g.parameters() if p.requires_grad]


def target_code(target: world.TargetSpec, config: dict) -> torch.Tensor:
    """Centre of the target box in the evaluator's unit coordinates (cx, cy, scale)."""
    ranges = config["ranges"]
    centre = [
        _to_unit(np.asarray(np.mean(getattr(target, f))), *ranges[f]) for f in ("cx", "cy", "scale")
    ]
    return torch.tensor([float(c) for c in centre])


def supervised_step(
    g: torch.nn.Module,
    evaluator: torch.nn.Module,
    opt: torch.optim.Optimizer,
    z: torch.Tensor,
    label: int,
    code: torch.Tensor,
    pose_weight: float,
) -> float:
    """One Adam step on the evaluator's verdict: cross-entropy to the shape + pose MSE."""
    img, _ = g([z])
    logits, reg = evaluator(img)
    ce = F.cross_entropy(logits, torch.full((len(z),), label, dtype=torch.long))
    pose = F.mse_loss(reg[:, :3], code.expand(len(z), 3))
    loss = ce + pose_weight * pose
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@torch.no_grad()
def _measure(g, evaluator, ref_feats, sketch_net, user_sketches, target, it, work) -> dict:
    imgs = fixed_seed_samples(g)
    pred = predict_attributes(evaluator, imgs)
    tol = float(PARAMS["evaluate"]["match_tol"])
    stars = pred[pred["shape"] == target.shape]
    in_box = {  # per pose attribute: share of the sketched shape's samples inside its range
        f"{f}_in_range": round(float(stars[f].between(*getattr(target, f)).mean()), 3)
        for f in ("cx", "cy", "scale")
    }
    feats = evaluator.features(imgs).numpy()
    sketches = sketch_images(sketch_net, imgs, batch=16, mode="eval")
    save_grid(imgs[:32], work / f"capacity_{it:06d}.png", nrow=8)
    pr = precision_recall(ref_feats, feats, k=int(PARAMS["evaluate"]["k"]))
    return {
        "it": it,
        "target": float(world.matches_target(pred, target, tol).mean()),
        "shape": float((pred["shape"] == target.shape).mean()),
        "fid": round(fid_from_features(feats, ref_feats), 2),
        "precision": round(pr["precision"], 3),
        "recall": round(pr["recall"], 3),
        "colour_spread": round(colour_spread(imgs), 4),
        "sketch_chamfer": round(float(chamfer_scores(sketches, user_sketches).mean()), 3),
        **in_box,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lr", type=float, required=True, help="Adam lr of the mapping tensors")
    ap.add_argument("--iters", type=int, required=True)
    ap.add_argument("--at", required=True, help="comma-separated iterations to measure at")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pose-weight", type=float, default=1.0, help="weight of the pose MSE")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_capacity"))
    ap.add_argument(
        "--generator",
        type=Path,
        default=None,
        help="start from this generator (e.g. a fine-tuned one; --iters 0 only measures it); "
        "w_move stays relative to models/pretrained/generator.pt",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(int(PARAMS["seed"]))
    args.work.mkdir(parents=True, exist_ok=True)
    at = {int(x) for x in args.at.split(",")}
    target = target_pose()

    evaluator = load_evaluator("models/pretrained/evaluator.pt").eval()
    for p in evaluator.parameters():
        p.requires_grad_(False)
    ref = evaluator.features(load_image_folder("data/eval/images", "RGB")).detach().numpy()
    sketch_net, _ = load_sketch_net("models/pretrained/photosketch.pt", "cpu")
    user = load_image_folder(Path("data/sketches/images"), "L")
    g0 = load_finetuned_generator("models/pretrained/generator.pt", "cpu")
    g = load_finetuned_generator(args.generator, "cpu") if args.generator else g0
    g.train()
    opt = torch.optim.Adam(mapping_only(g), lr=args.lr, betas=(0.0, 0.99))
    label = list(evaluator.config["shapes"]).index(target.shape)
    code = target_code(target, evaluator.config)
    z_probe = torch.randn(2000, int(g.style_dim), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        w0 = g0.get_latent(z_probe)

    start = time.perf_counter()
    for it in range(args.iters + 1):
        if it in at:
            g.eval()
            row = _measure(g, evaluator, ref, sketch_net, user, target, it, args.work)
            row.update(
                lr=args.lr,
                pose_weight=args.pose_weight,
                w_move=round(w_move(g.style, w0, z_probe), 4),
            )
            row["wall_s"] = round(time.perf_counter() - start, 1)
            print(json.dumps(row), flush=True)
            g.train()
        if it == args.iters:
            break
        z = torch.randn(args.batch, int(g.style_dim))
        supervised_step(g, evaluator, opt, z, label, code, args.pose_weight)


if __name__ == "__main__":
    main()
