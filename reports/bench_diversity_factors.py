"""Which of the world's factors of variation does the tuned model lose inside the pose?

`bench_ideal_coverage.py` found the tuned models covering only part of the original's own
samples of the sketched pose in evaluator features, although their w are as spread as those
samples'. Evaluator features mix every factor of a scene, so they cannot say which one went.
The embedded world can: each scene is a pose (centre, size, aspect, rotation), an object colour,
a texture and a background. This script reads those factors back from generated images with the
world's own geometry, at the pose the world evaluator reads: the object's colour and texture
strength (luminance sd) inside the pose shrunk to ``INNER`` of its size, the background colour
outside it grown to ``OUTER``. Every set is taken inside the target pose, so pose misses do not
count as lost variety: the ideal set (the original's first ``n`` fixed-seed samples the
evaluator reads in the target pose), a second disjoint ideal set (sampling noise only), and for
each tuned generator its first ``n`` fixed-seed samples in the target pose. Per set and factor:
improved precision/recall (k of ``evaluate.k``) against the ideal in that factor's own space,
and the factor's spread as a share of the ideal's.

Run inside a project where `make demo` (or `sketchgan prepare` + `sketchgan pretrain`) has
written data/ and models/pretrained/:

    .venv/bin/python reports/bench_diversity_factors.py --draws 45000 --n 380 --cache idx.json \\
        LABEL=G.pt ...
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_ideal_coverage import PARAMS, ideal_sets, setup
from fixed_samples import CHUNK, EVAL_SEED, target_pose

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.data import world
from sketchgan.evaluation.evaluator import predict_attributes
from sketchgan.evaluation.metrics import precision_recall
from sketchgan.evaluation.sampling import generate_images

INNER = 0.6  # object pixels: inside the read pose at this share of its size (pose errors stay in)
OUTER = 1.4  # background pixels: outside the read pose grown by this factor
FACTORS = ("pose", "object colour", "texture", "background colour")
LINEAR_POSE = ("cx", "cy", "scale", "rotation")
POSE_COLUMNS = (*LINEAR_POSE, "aspect")  # the columns of pose_coords, in its order


def pose_coords(pose: pd.DataFrame) -> np.ndarray:
    """(N, 5) pose in units of the world's range of each field (cx, cy, scale, rotation, log
    aspect), so that no field outweighs another in distances."""
    ranges = world.WORLD_RANGES
    fields = [pose[f].to_numpy(float) / (ranges[f][1] - ranges[f][0]) for f in LINEAR_POSE]
    lo, hi = ranges["aspect"]  # aspect is drawn log-uniform: its width in log units
    fields.append(np.log(pose["aspect"].to_numpy(float)) / np.log(hi / lo))
    return np.stack(fields, axis=1)


def sketch_poses(manifest: Path) -> np.ndarray:
    """The user's sketches' poses (the embedded world's sketches record theirs)."""
    table = pd.read_csv(manifest)
    missing = [f for f in world.POSE_FIELDS if f not in table.columns]
    if missing:
        raise SystemExit(
            f"{manifest}: no column {missing[0]!r} (only synthetic sketches have a pose)"
        )
    return pose_coords(table)


def to_nearest(points: np.ndarray, sketches: np.ndarray) -> np.ndarray:
    """Each point's distance to its nearest sketch pose."""
    return _distances(points, sketches).min(axis=1)


def sketches_used(points: np.ndarray, sketches: np.ndarray) -> float:
    """Effective number of sketches the poses are nearest to (exp of the entropy of the
    nearest-sketch shares): the sketch count when the poses spread evenly over them, 1 when
    they all sit by one."""
    nearest = _distances(points, sketches).argmin(axis=1)
    share = np.bincount(nearest, minlength=len(sketches)) / len(points)
    share = share[share > 0]
    return float(np.exp(-(share * np.log(share)).sum()))


def _distances(points: np.ndarray, sketches: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None, :] - sketches[None, :, :], axis=2)


def _masks(pose: pd.DataFrame, size: int, factor: float) -> np.ndarray:
    grown = pose.assign(scale=pose["scale"] * factor)
    return world.render_masks(grown, size)


def factor_values(images: torch.Tensor, pose: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each image's factors, read at ``pose`` (one row per image, the world's pose columns):
    pose standardised by the world's ranges, object colour (mean RGB inside), texture strength
    (luminance sd inside) and background colour (mean RGB outside); [0, 1] colour units."""
    rgb = images.double().add(1).div(2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    size = rgb.shape[1]
    inside = _masks(pose, size, INNER) >= 0.99
    outside = _masks(pose, size, OUTER) <= 0.01
    if not (inside.any(axis=(1, 2)).all() and outside.any(axis=(1, 2)).all()):
        raise ValueError("factor_values: a pose leaves no object or no background pixel")
    luminance = rgb @ np.array([0.299, 0.587, 0.114])

    def mean_in(mask: np.ndarray) -> np.ndarray:
        m = mask[..., None]
        return (rgb * m).sum(axis=(1, 2)) / m.sum(axis=(1, 2))

    inner_lum = np.where(inside, luminance, np.nan)
    return {
        "pose": pose_coords(pose),
        "object colour": mean_in(inside),
        "texture": np.nanstd(inner_lum, axis=(1, 2))[:, None],
        "background colour": mean_in(outside),
    }


def spread(values: np.ndarray) -> float:
    """Mean per-dimension sd over samples (``colour_spread``'s measure, for any factor)."""
    return float(values.std(axis=0).mean())


@torch.no_grad()
def in_pose(g: torch.nn.Module, evaluator: torch.nn.Module, indices: list[int]) -> dict:
    """Those of the fixed-seed sequence's samples ``indices`` under ``g`` that the evaluator
    reads in the target pose: their evaluator features and factors (out-of-pose samples are
    not read: a huge box can leave no background pixel)."""
    imgs = generate_images(g, indices, EVAL_SEED)
    pred = predict_attributes(evaluator, imgs)
    tol = float(PARAMS["evaluate"]["match_tol"])
    keep = world.matches_target(pred, target_pose(), tol)
    imgs, pred = imgs[torch.from_numpy(keep)], pred[keep].reset_index(drop=True)
    return {"feats": evaluator.features(imgs).numpy(), **factor_values(imgs, pred)}


def _concat(parts: list[dict], n: int) -> dict:
    return {k: np.concatenate([p[k] for p in parts])[:n] for k in ("feats", *FACTORS)}


def in_pose_set(
    g: torch.nn.Module, evaluator: torch.nn.Module, n: int, draws: int, start: int = 0
) -> dict:
    """The first ``n`` samples of ``g`` from index ``start`` on that are in the target pose."""
    parts, found, i = [], 0, start
    while found < n:
        if i - start >= draws:
            raise SystemExit(
                f"in-pose set: only {found} of {n} samples in {i - start} draws; draw more"
            )
        parts.append(in_pose(g, evaluator, list(range(i, i + CHUNK))))
        found += len(parts[-1]["feats"])
        i += CHUNK
    return {**_concat(parts, n), "drawn": i - start, "n": n}


def ideal_set(g0: torch.nn.Module, evaluator: torch.nn.Module, indices: np.ndarray) -> dict:
    """The original's target-pose samples ``indices``, re-judged (a sample whose image the
    cached verdict no longer passes is dropped)."""
    kept = in_pose(g0, evaluator, [int(i) for i in indices])
    return {**kept, "drawn": int(indices[-1]) + 1, "n": len(kept["feats"])}


def field_spreads(ideal: np.ndarray, poses: np.ndarray) -> dict[str, float]:
    """Each pose field's sd as a share of the ideal's."""
    ratios = poses.std(axis=0) / ideal.std(axis=0)
    return {f"{f} spread": round(float(r), 3) for f, r in zip(POSE_COLUMNS, ratios, strict=True)}


def sketch_row(ideal: dict, sketches: np.ndarray) -> dict:
    """The user's sketches' own pose spread: what a method that matched them exactly keeps."""
    return {
        "set": f"the user's sketches ({len(sketches)})",
        **field_spreads(ideal["pose"], sketches),
    }


def factor_row(label: str, ideal: dict, samples: dict, sketches: np.ndarray) -> dict:
    """``samples`` against the ideal set: evaluator-feature precision/recall; per factor
    precision/recall in its own space and its spread as a share of the ideal's; per pose field
    its spread, and the mean distance to the nearest sketch pose, as shares of the ideal's (below
    1: the poses gather round the user's sketches)."""
    k = int(PARAMS["evaluate"]["k"])
    feats = precision_recall(ideal["feats"], samples["feats"], k=k)
    row = {
        "set": label,
        "drawn": samples["drawn"],
        "n": samples["n"],
        "precision": round(feats["precision"], 3),
        "recall": round(feats["recall"], 3),
    }
    for factor in FACTORS:
        pr = precision_recall(ideal[factor], samples[factor], k=k)
        row[f"{factor} precision"] = round(pr["precision"], 3)
        row[f"{factor} recall"] = round(pr["recall"], 3)
        row[f"{factor} spread"] = round(spread(samples[factor]) / spread(ideal[factor]), 3)
    row["texture mean"] = round(float(samples["texture"].mean() / ideal["texture"].mean()), 3)
    row.update(field_spreads(ideal["pose"], samples["pose"]))
    near = to_nearest(samples["pose"], sketches).mean() / to_nearest(ideal["pose"], sketches).mean()
    row["to nearest sketch"] = round(float(near), 3)
    row["sketches used"] = round(sketches_used(samples["pose"], sketches), 2)
    return row


def main() -> None:
    args, specs, evaluator, g0, indices = setup(__doc__.split("\n")[0], "in-pose samples per set")
    sketches = sketch_poses(Path("data/sketches/manifest.csv"))
    ideal, second = ideal_sets(g0, evaluator, indices, args.n, measure=ideal_set)
    print(json.dumps(sketch_row(ideal, sketches)), flush=True)
    second_row = factor_row("original, target pose: a second set", ideal, second, sketches)
    print(json.dumps(second_row), flush=True)
    for label, path in specs:
        g = load_finetuned_generator(path, "cpu").eval()
        samples = in_pose_set(g, evaluator, args.n, args.draws)
        print(json.dumps(factor_row(label, ideal, samples, sketches)), flush=True)


if __name__ == "__main__":
    main()
