"""DVC stage `pretrain`: the frozen/pretrained networks -> models/pretrained/.

``checkpoints.source: registry`` (the default) resolves the named checkpoints: the embedded zoo
shipped inside the package (verified by sha256 and a strict load, then copied) or published
weights (fetched, verified, converted). ``checkpoints.source: train`` ("pretrain it yourself")
trains the generator (StyleGAN2), the image->sketch net (PhotoSketch architecture) and the world
evaluator here on data/pretrain with the ``pretrain``, ``pretrain_sketch`` and ``evaluator``
sections.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchgan import tracking
from sketchgan.checkpoints import (
    known_checkpoints,
    load_discriminator,
    load_finetuned_generator,
    load_generator,
    load_sketch_net,
    resolve_checkpoint,
    save_generator_checkpoint,
    save_sketch_checkpoint,
)
from sketchgan.config import CheckpointsSection, EvaluatorSection
from sketchgan.errors import SketchganError
from sketchgan.evaluation.evaluator import load_evaluator, save_evaluator, train_evaluator
from sketchgan.evaluation.sampling import generate_images
from sketchgan.evaluation.sketching import sketch_images
from sketchgan.io import load_image_folder, save_grid, sha256_file
from sketchgan.pipeline import device_of, tracked_stage
from sketchgan.progress import TrainingProgress
from sketchgan.runtime import repo_root, section
from sketchgan.training.pretrain import (
    GeneratorPretrainConfig,
    SketchNetConfig,
    train_generator,
    train_sketch_net,
)

OUT = Path("models/pretrained")
WORK = Path("outputs/pretrain")
FIGURES = Path("reports/figures")


def run(params: dict[str, Any]) -> dict[str, Any]:
    root = repo_root()
    ckpts = CheckpointsSection.from_params(params)
    source = _source(ckpts)
    sections = ("checkpoints", "prepare", "pretrain", "pretrain_sketch", "evaluator")
    with tracked_stage("pretrain", params, sections) as summary:
        (root / OUT).mkdir(parents=True, exist_ok=True)
        (root / WORK).mkdir(parents=True, exist_ok=True)  # a DVC out, even when nothing trains
        embedded_world = not section(params, "prepare").get("real_images")
        summary["source"] = source
        if source == "train":
            summary["generator"] = _train_generator(params, root)
            summary["photosketch"] = _train_sketch_net(params, root)
        else:
            summary["generator"] = _import_generator(ckpts, root, _size(params))
            summary["photosketch"] = _import_sketch_net(ckpts, root)
        if source == "registry" and ckpts.evaluator:
            summary["evaluator"] = _import_evaluator(ckpts, root, _size(params))
        elif embedded_world:
            summary["evaluator"] = _train_evaluator(params, root)
        _figures(root, device_of(params), int(params.get("seed", 0)))
        _log_models(root, bool((params.get("tracking") or {}).get("register_models", True)))
    return summary


def _source(ckpts: CheckpointsSection) -> str:
    source = ckpts.source
    if source == "registry":
        for name in ("generator", "photosketch"):
            if not getattr(ckpts, name):
                raise SketchganError(
                    f"params: 'checkpoints.{name}' is null with checkpoints.source: registry; "
                    "name a checkpoint, or set checkpoints.source: train to pretrain it yourself"
                )
    return str(source)


def _size(params: dict[str, Any]) -> int:
    return int(section(params, "prepare").get("size"))


def _train_generator(params: dict[str, Any], root: Path) -> dict[str, Any]:
    cfg = GeneratorPretrainConfig.from_params(params)
    images = load_image_folder(root / "data/pretrain/images", "RGB")
    with TrainingProgress(cfg.iterations, "pretrain generator") as bar:
        info = train_generator(images, cfg, root / WORK, log_fn=_logger(bar))
    shutil.copyfile(root / WORK / "generator.pt", root / OUT / "generator.pt")
    tracking.log_artifact(root / WORK / "losses.csv")
    return _scalars(info)


def _train_sketch_net(params: dict[str, Any], root: Path) -> dict[str, Any]:
    cfg = SketchNetConfig.from_params(params)
    images = load_image_folder(root / "data/pretrain/images", "RGB")
    contours = load_image_folder(root / "data/pretrain/contours", "L")
    with TrainingProgress(cfg.iterations, "pretrain sketch net") as bar:
        info = train_sketch_net(images, contours, cfg, root / WORK, log_fn=_logger(bar))
    shutil.copyfile(root / WORK / "photosketch.pt", root / OUT / "photosketch.pt")
    return _scalars(info)


def _train_evaluator(params: dict[str, Any], root: Path) -> dict[str, Any]:
    cfg = EvaluatorSection.from_params(params)
    size = int(section(params, "prepare").get("size"))
    model, info = train_evaluator(
        size=size,
        n_train=cfg.n_train,
        iters=cfg.iters,
        batch=cfg.batch,
        width=cfg.width,
        lr=cfg.lr,
        n_val=cfg.n_val,
        seed=int(params.get("seed", 0)) + 7,
        device=device_of(params),
    )
    save_evaluator(model, root / OUT / "evaluator.pt")
    return _scalars(info)


def _import_generator(ckpts: CheckpointsSection, root: Path, size: int) -> dict[str, Any]:
    """Resolve the named generator (+ its discriminator) and store it in our layout.

    A zoo file already is our layout (g_ema, g, d, config): after a strict load of each part it
    is copied byte for byte, so models/pretrained/generator.pt has the pinned hash. Published
    weights are converted: both discriminators of the method start from the pretrained D;
    rosinality-style files carry it under ``d``; GANSketching publishes it as a separate
    netD.pth (registry ``<name>-d`` or ``checkpoints.discriminator``).
    """
    cache = root / ckpts.cache_dir
    registry = known_checkpoints()
    name = str(ckpts.generator)
    g_path = resolve_checkpoint(name, cache)
    g_ema, cfg = load_generator(g_path, "cpu", config=registry.get(name, {}).get("config"))
    if cfg["size"] != size:
        raise SketchganError(
            f"checkpoint '{name}' is a {cfg['size']} px generator but prepare.size is {size}"
        )
    if registry.get(name, {}).get("kind") == "sketchgan_generator":
        load_generator(g_path, "cpu", key="g")
        load_discriminator(g_path, "cpu")
        shutil.copyfile(g_path, root / OUT / "generator.pt")
        return {"source": name, "size": cfg["size"], "sha256": sha256_file(g_path)}
    d_cfg = {k: cfg[k] for k in ("size", "channel_multiplier", "channel_max")}
    d_name = ckpts.discriminator or (f"{name}-d" if f"{name}-d" in registry else None)
    if d_name is not None:
        d_path = resolve_checkpoint(str(d_name), cache)
        d, _ = load_discriminator(d_path, "cpu", config=d_cfg)
    else:
        try:
            d, _ = load_discriminator(g_path, "cpu", config=d_cfg)
        except SketchganError as exc:
            raise SketchganError(
                f"params: 'checkpoints.discriminator' is needed: {g_path} holds no discriminator "
                "(both discriminators are initialised from it)"
            ) from exc
    save_generator_checkpoint(root / OUT / "generator.pt", g_ema, g=g_ema, d=d, config=cfg)
    return {"source": name, "size": cfg["size"]}


def _import_sketch_net(ckpts: CheckpointsSection, root: Path) -> dict[str, Any]:
    cache = root / ckpts.cache_dir
    name = str(ckpts.photosketch)
    entry = known_checkpoints().get(name, {})
    path = resolve_checkpoint(name, cache)
    net, cfg = load_sketch_net(path, "cpu", config=entry.get("config"))
    if entry.get("kind") == "sketchgan_photosketch":  # the zoo's file is our layout already
        shutil.copyfile(path, root / OUT / "photosketch.pt")
        return {"source": name, "sha256": sha256_file(path)}
    save_sketch_checkpoint(root / OUT / "photosketch.pt", net, cfg)
    return {"source": name}


def _import_evaluator(ckpts: CheckpointsSection, root: Path, size: int) -> dict[str, Any]:
    """The world evaluator from the registry: loaded strictly, then copied byte for byte."""
    cache = root / ckpts.cache_dir
    name = str(ckpts.evaluator)
    path = resolve_checkpoint(name, cache)
    model = load_evaluator(path)
    if int(model.config["size"]) != size:
        raise SketchganError(
            f"checkpoint '{name}' is a {model.config['size']} px evaluator but prepare.size "
            f"is {size}"
        )
    shutil.copyfile(path, root / OUT / "evaluator.pt")
    return {"source": name, "sha256": sha256_file(path)}


def _figures(root: Path, device: torch.device, seed: int) -> None:
    """Samples of the pretrained generator and their sketches, whichever way both were obtained."""
    gen = load_finetuned_generator(root / OUT / "generator.pt", device)
    net, _ = load_sketch_net(root / OUT / "photosketch.pt", device)
    images = generate_images(gen, range(32), seed, truncation=1.0, device=device)
    sketches = sketch_images(net, images, batch=16, mode="eval")
    save_grid(images, root / FIGURES / "pretrain_samples.png", nrow=8)
    pairs = torch.stack([images[:16], sketches[:16].repeat(1, 3, 1, 1)], 1).flatten(0, 1)
    save_grid(pairs, root / FIGURES / "photosketch_samples.png", nrow=8)
    tracking.log_artifact(root / FIGURES / "pretrain_samples.png", "samples")
    tracking.log_artifact(root / FIGURES / "photosketch_samples.png", "samples")


def _logger(bar: TrainingProgress):
    def log(step: int, metrics: dict[str, float]) -> None:
        tracking.log_step_metrics(metrics, step)
        bar.update(step, metrics)

    return log


def _log_models(root: Path, register: bool) -> None:
    g, cfg = load_generator(root / OUT / "generator.pt", "cpu")
    tracking.log_model(
        g, "pretrained-generator", register=register, state_dict_extra={"config": cfg}
    )
    net, scfg = load_sketch_net(root / OUT / "photosketch.pt", "cpu")
    tracking.log_model(net, "photosketch", register=register, state_dict_extra={"config": scfg})


def _scalars(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in info.items():
        if isinstance(v, bool | str):
            out[k] = v
        elif isinstance(v, int | float | np.floating | np.integer):
            out[k] = float(v) if isinstance(v, float | np.floating) else int(v)
        elif isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
    return out
