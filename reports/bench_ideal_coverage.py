"""Does the tuned mapping cover the method's ideal, or collapse inside it?

`bench_pose_ceiling.py` found the fine-tuned model keeping about three quarters of the recall
and colour spread of the original model's own samples of the sketched pose (the ideal a
mapping-only method could hand the synthesis network). That comparison goes through the eval
scenes. This script measures the tuned model against the ideal directly: the ideal set is the
original's first ``n`` fixed-seed samples that the world evaluator reads in the target pose; a
second, disjoint ideal set (the next ``n``) shows what a perfect method would score on these
measures (sampling noise only); each tuned generator gives its first ``n`` fixed-seed samples.
Per set: improved precision/recall (k of ``evaluate.k``) against the ideal, in evaluator
features and in W (the synthesis network is the same, so W is one space), the spread of its w
(mean distance to the mean, as ``w_move``'s) and its colour spread, both relative to the
ideal's. A tuned model whose w spread is far below the ideal's has collapsed its mapping beyond
what the pose needs.

Run inside a project where `make demo` (or `sketchgan prepare` + `sketchgan pretrain`) has
written data/ and models/pretrained/:

    .venv/bin/python reports/bench_ideal_coverage.py --draws 45000 --n 500 --cache idx.json \\
        LABEL=G.pt ...
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_determinism import weights_digest
from bench_pose_ceiling import draw_and_judge, mean_colours, spread_of
from fixed_samples import EVAL_SEED, target_pose

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, predict_attributes
from sketchgan.evaluation.metrics import precision_recall
from sketchgan.evaluation.sampling import draw_inputs, generate_images
from sketchgan.io import atomic_path
from sketchgan.runtime import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")  # match tolerance and k: the only defaults


@torch.no_grad()
def latents(g: torch.nn.Module, indices: np.ndarray) -> np.ndarray:
    """w of the fixed-seed sequence's samples ``indices`` under ``g``'s mapping."""
    z, _ = draw_inputs(EVAL_SEED, [int(i) for i in indices], int(g.style_dim), [])
    return g.get_latent(z).numpy()


def w_spread(w: np.ndarray) -> float:
    """Mean distance of the w to their mean (the spread ``w_move`` divides by)."""
    return float(np.linalg.norm(w - w.mean(0, keepdims=True), axis=1).mean())


def target_indices(g0: torch.nn.Module, evaluator: torch.nn.Module, draws: int) -> np.ndarray:
    """Which of the original's first ``draws`` fixed-seed samples show the target pose."""
    return np.flatnonzero(draw_and_judge(g0, evaluator, draws, target_pose())["target"])


def cached_target_indices(
    g0: torch.nn.Module, evaluator: torch.nn.Module, draws: int, cache: Path | None
) -> np.ndarray:
    """``target_indices``, read from ``cache`` when it was judged for the same draw count,
    generator and evaluator (judging is the slow part), else judged and written there."""
    key = {"draws": draws, "generator": weights_digest(g0), "evaluator": weights_digest(evaluator)}
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        if all(stored.get(k) == v for k, v in key.items()):
            return np.asarray(stored["indices"], dtype=np.int64)
    idx = target_indices(g0, evaluator, draws)
    if cache is not None:
        with atomic_path(cache) as tmp:
            Path(tmp).write_text(json.dumps({**key, "indices": idx.tolist()}))
    return idx


@torch.no_grad()
def measured_set(g: torch.nn.Module, evaluator: torch.nn.Module, indices: np.ndarray) -> dict:
    """Samples ``indices`` of the fixed-seed sequence under ``g``: evaluator features, mean
    colours, w and whether each is in the target pose."""
    imgs = generate_images(g, [int(i) for i in indices], EVAL_SEED)
    tol = float(PARAMS["evaluate"]["match_tol"])
    pred = predict_attributes(evaluator, imgs)
    return {
        "feats": evaluator.features(imgs).numpy(),
        "colours": mean_colours(imgs),
        "w": latents(g, indices),
        "target": world.matches_target(pred, target_pose(), tol),
        "drawn": int(indices[-1]) + 1,
    }


def ideal_sets(
    g0: torch.nn.Module,
    evaluator: torch.nn.Module,
    indices: np.ndarray,
    n: int,
    measure: Callable[[torch.nn.Module, torch.nn.Module, np.ndarray], dict] = measured_set,
) -> tuple[dict, dict]:
    """The original's first and second ``n`` samples in the target pose (``indices``), each
    set measured by ``measure``."""
    if len(indices) < 2 * n:
        raise SystemExit(
            f"ideal: only {len(indices)} of {2 * n} samples found; draw more (--draws)"
        )
    return measure(g0, evaluator, indices[:n]), measure(g0, evaluator, indices[n : 2 * n])


def coverage_row(label: str, ideal: dict, samples: dict) -> dict:
    """``samples`` against the ideal set: precision/recall in features and in W, and its w and
    colour spread as shares of the ideal's."""
    k = int(PARAMS["evaluate"]["k"])
    feats = precision_recall(ideal["feats"], samples["feats"], k=k)
    in_w = precision_recall(ideal["w"], samples["w"], k=k)
    return {
        "set": label,
        "n": len(samples["w"]),
        "target": round(float(np.mean(samples["target"])), 3),
        "precision": round(feats["precision"], 3),
        "recall": round(feats["recall"], 3),
        "w_precision": round(in_w["precision"], 3),
        "w_recall": round(in_w["recall"], 3),
        "w_spread_ratio": round(w_spread(samples["w"]) / w_spread(ideal["w"]), 3),
        "colour_ratio": round(spread_of(samples["colours"]) / spread_of(ideal["colours"]), 3),
    }


def setup(
    description: str, n_help: str
) -> tuple[argparse.Namespace, list[list[str]], torch.nn.Module, torch.nn.Module, np.ndarray]:
    """The command line both ideal-set scripts share: its arguments, the LABEL=PATH generator
    specs, the world evaluator, the original generator and its judged target-pose indices."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("generators", nargs="+", help="LABEL=PATH of tuned generators")
    ap.add_argument("--draws", type=int, required=True, help="original samples to judge")
    ap.add_argument("--n", type=int, required=True, help=n_help)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--cache", type=Path, default=None, help="JSON file of the judged target indices (reused)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    specs = [spec.split("=", 1) for spec in args.generators]
    if any(len(s) != 2 for s in specs):
        raise SystemExit("generators: expected LABEL=PATH for each")
    evaluator = load_evaluator("models/pretrained/evaluator.pt").eval()
    g0 = load_finetuned_generator("models/pretrained/generator.pt", "cpu").eval()
    return args, specs, evaluator, g0, cached_target_indices(g0, evaluator, args.draws, args.cache)


def main() -> None:
    args, specs, evaluator, g0, indices = setup(__doc__.split("\n")[0], "samples per set")
    ideal, second = ideal_sets(g0, evaluator, indices, args.n)
    everyone = np.arange(args.n)
    rows = [
        {
            **coverage_row("original, target pose: a second set", ideal, second),
            "drawn": second["drawn"],
        },
        coverage_row("original (unrestricted)", ideal, measured_set(g0, evaluator, everyone)),
    ]
    for label, path in specs:
        g = load_finetuned_generator(path, "cpu").eval()
        rows.append(coverage_row(label, ideal, measured_set(g, evaluator, everyone)))
    for row in rows:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
