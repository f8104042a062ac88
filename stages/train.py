"""DVC stage `train`: GANSketching fine-tuning -> models/finetuned/ + outputs/train/.

The resumable state lives in ``outputs/train_runs/<key>/``, keyed by everything that defines
the run except its length, so a killed `train` resumes while a changed parameter (an ablation
via ``dvc exp run -S``) starts a fresh run instead of being refused. Both the best-FID and the
last checkpoint are kept: the paper reports the best-FID iteration.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from sketchgan import tracking
from sketchgan.checkpoints import load_checkpoint, load_finetuned_generator
from sketchgan.config import EvaluateSection
from sketchgan.errors import SketchganError
from sketchgan.evaluation.evaluator import load_evaluator
from sketchgan.evaluation.features import extract_features, select_extractor
from sketchgan.evaluation.metrics import fid_from_features
from sketchgan.evaluation.sampling import generate_images
from sketchgan.io import atomic_dir, load_image_folder, sha256_file, write_json, write_text
from sketchgan.pipeline import device_of, tracked_stage, user_sketch_dir
from sketchgan.progress import TrainingProgress
from sketchgan.runtime import load_params, repo_root
from sketchgan.training.finetune import FinetuneConfig, finetune
from sketchgan.training.state import tensor_fingerprint

PRETRAINED = Path("models/pretrained")
OUT_MODEL = Path("models/finetuned")
OUT_TRAIN = Path("outputs/train")
FID_HISTORY = "fid_history.csv"
RUNS = Path("outputs/train_runs")
EVAL_SEED = 7_000_001


def run(params: dict[str, Any], fresh: bool = False) -> dict[str, Any]:
    """``fresh``: discard the resumable state of this run's settings and start over."""
    root = repo_root()
    cfg = FinetuneConfig.from_params(params)
    with tracked_stage("train", params, ("train",)) as summary:
        sketches = load_image_folder(root / user_sketch_dir(params), "L")
        reg = load_image_folder(root / "data/image_reg/images", "RGB") if cfg.l_image > 0 else None
        run_dir = root / RUNS / _run_key(cfg, root, sketches, reg, params)
        if fresh:
            _discard_state(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        tracking.link_resumed_run(run_dir / "mlflow_run_id")  # a killed run is marked KILLED
        eval_fn = _fid_eval_fn(params, root, cfg.eval_samples, run_dir) if cfg.eval_every else None
        with TrainingProgress(cfg.iters, "train") as bar:

            def log(step: int, metrics: dict[str, float]) -> None:
                tracking.log_step_metrics(metrics, step)
                bar.update(step, metrics)

            result = finetune(
                cfg,
                root / PRETRAINED / "generator.pt",
                root / PRETRAINED / "photosketch.pt",
                sketches,
                reg,
                run_dir,
                log_fn=log,
                eval_fn=_noting(eval_fn, bar),
            )
        _replay_fid_history(run_dir / FID_HISTORY, result.resumed_from)
        _publish(run_dir, result, root)
        gen = load_finetuned_generator(root / OUT_MODEL / "generator.pt", "cpu")
        register = bool((params.get("tracking") or {}).get("register_models", True))
        _log_model(gen, params, root, result, register)
        tracking.log_artifact(root / OUT_TRAIN / "losses.csv")
        if (root / OUT_TRAIN / "samples").is_dir():  # the fixed-z grid of every sample step
            tracking.log_artifact(root / OUT_TRAIN / "samples", "samples")
        summary.update(
            steps=result.steps,
            best_step=result.best_step,
            best_fid=result.best_score,
            resumed_from=result.resumed_from,
            ms_per_iter=round(result.ms_per_iter, 2),
            device=result.device,
            run_dir=str(run_dir.relative_to(root)),
        )
        run_id = tracking.active_run_id()  # the evaluate stage logs its metrics into this run
        if run_id is not None:
            write_json(root / OUT_MODEL / "mlflow_run.json", {"run_id": run_id})
    return summary


def _is_default_run(params: dict[str, Any], root: Path) -> bool:
    """The project's own settings: not a DVC experiment, and the train section as in
    params.yaml (a CLI override such as ``--iters 30`` is not)."""
    if tracking.is_experiment():
        return False
    try:
        on_disk = load_params(root / "params.yaml").get("train")
    except SketchganError:
        return False
    return on_disk == params.get("train")


def _log_model(gen: torch.nn.Module, params: dict[str, Any], root: Path, result, register: bool):
    """Log (and register) the published generator; the best default-settings one becomes the
    ``champion`` alias, an ablation or a shortened run never does."""
    default = _is_default_run(params, root)
    arch = {
        k: int(v) for k, v in load_checkpoint(root / OUT_MODEL / "generator.pt")["config"].items()
    }
    info = tracking.log_model(
        gen,
        "finetuned-generator",
        register=register,
        state_dict_extra={"config": arch},
        description=(
            f"GANSketching fine-tune ({params['train'].get('tune')}, {result.steps} its); "
            f"best-FID step {result.best_step}"
        ),
        tags={
            "best_fid": result.best_score,
            "steps": result.steps,
            "tune": params["train"].get("tune"),
            "default_settings": default,
        },
    )
    if info and info["version"] is not None and default and result.best_score is not None:
        tracking.promote_champion(
            info["registered_model"], info["version"], result.best_score, "best_fid"
        )


def _noting(eval_fn, bar: TrainingProgress):
    """The FID callback, its last value shown in the progress bar."""
    if eval_fn is None:
        return None

    def noted(step: int, gen: torch.nn.Module) -> float:
        fid = eval_fn(step, gen)
        bar.note(fid=fid)
        return fid

    return noted


def _discard_state(run_dir: Path) -> None:
    """``--fresh``: the resumable state goes; the published outputs stay until replaced."""
    if run_dir.is_dir():
        shutil.rmtree(run_dir)


def _eval_set_fingerprint(root: Path) -> str | None:
    """The FID reference images: the best-FID selection depends on them."""
    manifest = root / "data/eval/manifest.csv"
    if manifest.is_file():
        return sha256_file(manifest)
    folder = root / "data/eval/images"
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _run_key(
    cfg: FinetuneConfig,
    root: Path,
    sketches: torch.Tensor,
    reg: Any,
    params: dict[str, Any],
) -> str:
    """Hash of every setting and input that changes the run's result (not its length):
    the training settings, the networks, the sketches and images, and what picks the best
    checkpoint (eval_samples, the FID features and the eval set)."""
    settings = cfg.identity()  # what a resumed run must share: the same key
    if not cfg.eval_every:
        del settings["eval_samples"]  # no evaluation: it cannot change the run
    else:
        settings["features"] = EvaluateSection.from_params(params).features
    inputs = [
        sha256_file(root / PRETRAINED / "generator.pt"),
        sha256_file(root / PRETRAINED / "photosketch.pt"),
        tensor_fingerprint(sketches),
        tensor_fingerprint(reg),
    ]
    if cfg.eval_every:
        inputs.append(_eval_set_fingerprint(root))
        evaluator = root / PRETRAINED / "evaluator.pt"
        inputs.append(sha256_file(evaluator) if evaluator.is_file() else None)
    blob = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fid_eval_fn(params: dict[str, Any], root: Path, n: int, run_dir: Path):
    """FID of ``n`` fixed samples against the eval set, on the evaluation features.

    Each value is appended to ``fid_history.csv`` in the run folder, so the curve survives a
    resume (a step evaluated twice keeps its last value when published).
    """
    device = device_of(params)
    evaluator_path = root / PRETRAINED / "evaluator.pt"
    evaluator = load_evaluator(evaluator_path, device) if evaluator_path.is_file() else None
    kind = EvaluateSection.from_params(params).features
    extractor = select_extractor(kind, device, evaluator=evaluator)
    ref = extract_features(root / "data/eval/images", extractor)
    seed = int(params.get("seed", 0)) + EVAL_SEED

    def eval_fn(step: int, gen: torch.nn.Module) -> float:
        was_training = gen.training
        gen.eval()
        images = torch.cat(
            [
                generate_images(gen, range(i, min(i + 100, n)), seed, device=device)
                for i in range(0, n, 100)
            ]
        )
        gen.train(was_training)
        fid = fid_from_features(extract_features(images, extractor), ref)
        tracking.log_step_metrics({"fid_eval": fid}, step)
        history = run_dir / FID_HISTORY
        text = history.read_text() if history.is_file() else "step,fid\n"
        write_text(history, f"{text}{step},{fid!r}\n")  # atomic: a kill never tears a row
        return fid

    return eval_fn


def _publish(run_dir: Path, result: Any, root: Path) -> None:
    """Copy the run's products into the stage's DVC outputs (atomically, folder by folder)."""
    with atomic_dir(root / OUT_MODEL) as tmp:
        best = result.best_path or result.last_path
        shutil.copyfile(best, tmp / "generator.pt")
        shutil.copyfile(result.last_path, tmp / "generator_last.pt")
        write_json(
            tmp / "selection.json",
            {
                "best_step": result.best_step,
                "best_fid": result.best_score,
                "last_step": result.steps,
            },
        )
    with atomic_dir(root / OUT_TRAIN) as tmp:
        shutil.copyfile(run_dir / "losses.csv", tmp / "losses.csv")
        if (run_dir / FID_HISTORY).is_file():
            _dedupe_history(run_dir / FID_HISTORY, tmp / FID_HISTORY)
        if (run_dir / "samples").is_dir():
            shutil.copytree(run_dir / "samples", tmp / "samples")


def _replay_fid_history(path: Path, upto: int) -> None:
    """FID values an earlier (killed or finished) process measured up to the resumed step: the
    run that resumes logs them again, so its MLflow curve is whole."""
    if upto <= 0 or not path.is_file():
        return
    for step, fid in _history_rows(path).items():
        if step <= upto:
            tracking.log_step_metrics({"fid_eval": fid}, step)


def _history_rows(path: Path) -> dict[int, float]:
    """step -> FID; a step evaluated twice (before and after a resume) keeps its last value."""
    rows: dict[int, float] = {}
    for line in path.read_text().splitlines()[1:]:
        step, fid = line.split(",")
        rows[int(step)] = float(fid)
    return rows


def _dedupe_history(src: Path, dst: Path) -> None:
    rows = _history_rows(src)
    dst.write_text("step,fid\n" + "".join(f"{k},{rows[k]!r}\n" for k in sorted(rows)))
