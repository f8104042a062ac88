"""DVC stage `evaluate`: every generated set vs. the eval set -> reports/evaluation.json
(everything) and reports/metrics.json (the headline numbers, report.flat_metrics).

Methods: the fine-tuned model (best-FID checkpoint, with its last-iteration figures beside it),
the original model, and the two retrieval baselines. Metrics: FID, KID, precision/recall (k=3)
on one feature network (clean-fid Inception when its weights are present, else the world
evaluator; the json says which), the sketch Chamfer distance of each sample's sketch to the
nearest user sketch, and, on the embedded world, the share of samples whose shape and pose
match the target according to the world evaluator. Metrics are also logged to the MLflow run
of the model they evaluate.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from sketchgan import tracking
from sketchgan.checkpoints import load_sketch_net
from sketchgan.config import EvaluateSection
from sketchgan.data.world import TargetSpec
from sketchgan.evaluation.chamfer import chamfer_scores
from sketchgan.evaluation.evaluator import load_evaluator, target_match_rate
from sketchgan.evaluation.features import (
    cached_features,
    compare_features,
    select_extractor,
)
from sketchgan.evaluation.metrics import colour_spread
from sketchgan.evaluation.sketching import sketch_images
from sketchgan.io import load_image_folder, write_json
from sketchgan.pipeline import device_of, tracked_stage, user_sketch_dir
from sketchgan.report import flat_metrics
from sketchgan.runtime import repo_root

METRICS = Path("reports/metrics.json")  # numbers only, method.metric (DVC metrics)
EVALUATION = Path("reports/evaluation.json")  # everything (the report's input)
FEATURES = Path("outputs/features")
SETS = {
    "finetuned": Path("outputs/samples/finetuned"),
    "finetuned_last": Path("outputs/samples/finetuned_last"),
    "original": Path("outputs/samples/original"),
    "chamfer": Path("outputs/baselines/chamfer"),
    "sbir": Path("outputs/baselines/sbir"),
}
LABELS = {
    "finetuned": "GANSketching (ours, best-FID iteration)",
    "original": "original model",
    "chamfer": "Chamfer-matching baseline",
    "sbir": "SBIR baseline (our triplet embedding)",
}


def run(params: dict[str, Any]) -> dict[str, Any]:
    cfg = EvaluateSection.from_params(params)
    root = repo_root()
    device = device_of(params)
    evaluator_path = root / "models/pretrained/evaluator.pt"
    evaluator = load_evaluator(evaluator_path, device) if evaluator_path.is_file() else None
    with tracked_stage("evaluate", params, ("evaluate",)) as summary:
        extractor = select_extractor(cfg.features, device, evaluator)
        ref = cached_features(root / "data/eval/images", extractor, root / FEATURES / "eval.npz")
        net, _ = load_sketch_net(root / "models/pretrained/photosketch.pt", device)
        user = load_image_folder(root / user_sketch_dir(params), "L")
        target = _target(params) if evaluator is not None else None
        results: dict[str, dict[str, Any]] = {}
        for name, folder in SETS.items():
            feats = cached_features(root / folder, extractor, root / FEATURES / f"{name}.npz")
            res = compare_features(
                feats,
                ref,
                extractor.name,
                k=cfg.k,
                kid_subset_size=cfg.kid_subset_size,
                seed=int(params.get("seed", 0)),
            )
            images = load_image_folder(root / folder, "RGB")
            sketches = sketch_images(net, images, batch=16, mode="eval")
            res["chamfer"] = float(chamfer_scores(sketches, user, reduce="min").mean())
            res["colour_spread"] = colour_spread(images)
            if target is not None:
                match = target_match_rate(evaluator, images, target, cfg.match_tol)
                res["target_match"] = match["match_rate"]
                res["shape_match"] = match["shape_rate"]
            results[name] = res
        methods = _assemble(results, root)
        evaluation = {"methods": methods, "meta": _meta(params, root, extractor.name, target)}
        write_json(root / EVALUATION, evaluation)
        headline = flat_metrics(evaluation)
        write_json(root / METRICS, headline)
        tracking.log_pipeline_metrics(headline)  # the parent run's row shows the result
        _log_to_model_runs(methods, root)
        summary["fid"] = {k: round(v["fid"], 4) for k, v in methods.items()}
    return summary


def _target(params: dict[str, Any]) -> TargetSpec | None:
    prep = params.get("prepare") or {}
    if prep.get("user_sketches") or not prep.get("target"):
        return None
    return TargetSpec.from_dict(prep["target"], where="prepare.target")


def _assemble(results: dict[str, dict[str, Any]], root: Path) -> dict[str, dict[str, Any]]:
    selection = json.loads((root / "models/finetuned/selection.json").read_text())
    last = results.pop("finetuned_last")
    methods = {}
    for name, res in results.items():
        entry = {**res, "label": LABELS.get(name, name)}
        if name == "finetuned":
            entry.update(iteration=selection.get("best_step"), checkpoint="best")
            entry["last"] = {**last, "iteration": selection.get("last_step")}
        methods[name] = entry
    return methods


def _meta(params: dict[str, Any], root: Path, features: str, target: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "features": features,
        "size": (params.get("prepare") or {}).get("size"),
        "seed": params.get("seed", 0),
        "target": target.to_dict() if target is not None else "user sketches",
    }
    history = root / "outputs/train/fid_history.csv"
    if history.is_file():
        with history.open() as f:
            meta["fid_history"] = [
                {"iteration": int(r["step"]), "fid": float(r["fid"])} for r in csv.DictReader(f)
            ]
    return meta


def _log_to_model_runs(methods: dict[str, dict[str, Any]], root: Path) -> None:
    """Metrics of the fine-tuned model also go to the MLflow run that trained it."""
    run_file = root / "models/finetuned/mlflow_run.json"
    if run_file.is_file():
        run_id = json.loads(run_file.read_text())["run_id"]
        values = {
            f"eval.{k}": float(v)
            for k, v in methods["finetuned"].items()
            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
        }
        tracking.log_metrics_to_run(run_id, values)
    for name, res in methods.items():
        tracking.log_step_metrics(
            {
                f"{name}.{k}": v
                for k, v in res.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            },
            step=0,
        )
