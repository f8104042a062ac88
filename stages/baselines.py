"""DVC stage `baselines`: the paper's two retrieval baselines over the original model's pool.

Both rank data/photosketch/pool (samples of the *original* generator) against the user sketches
and keep the top N as their "generated" set: Chamfer distance on the sketches, and sketch-based
image retrieval (SBIR). The paper's SBIR weights (Bui et al.) cannot be had here, so a two-branch
triplet embedding is trained on (sketch-net(image), image) pairs of the pretrain data instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sketchgan.checkpoints import load_sketch_net
from sketchgan.config import BaselinesSection
from sketchgan.errors import SketchganError
from sketchgan.evaluation.chamfer import rank_by_chamfer
from sketchgan.evaluation.sbir import rank_by_sbir, save_sbir, train_sbir
from sketchgan.evaluation.sketching import sketch_images
from sketchgan.io import atomic_dir, list_images, load_image_files, load_image_folder, write_json
from sketchgan.pipeline import device_of, tracked_stage, user_sketch_dir
from sketchgan.runtime import repo_root

POOL = Path("data/photosketch/pool")
OUT = Path("outputs/baselines")
SBIR_MODEL = Path("models/baselines/sbir.pt")
SBIR_TRAIN_PAIRS = 5000


def run(params: dict[str, Any]) -> dict[str, Any]:
    cfg = BaselinesSection.from_params(params)
    top_n, reduce = cfg.top_n, cfg.chamfer_reduce
    root = repo_root()
    device = device_of(params)
    pool_files = list_images(root / POOL / "images")
    if top_n > len(pool_files):
        raise SketchganError(
            f"params: 'baselines.top_n' ({top_n}) exceeds the pool ({len(pool_files)} samples, "
            "photosketch.pool_size)"
        )
    with tracked_stage("baselines", params, ("baselines", "photosketch")) as summary:
        user = load_image_folder(root / user_sketch_dir(params), "L")
        pool_sketches = load_image_folder(root / POOL / "sketches", "L")
        chamfer_idx = rank_by_chamfer(pool_sketches, user, top_n, reduce=reduce)
        _copy_selection(pool_files, chamfer_idx, root / OUT / "chamfer")

        model = _train_sbir(params, cfg, root, device)
        pool_images = load_image_folder(root / POOL / "images", "RGB")
        sbir_idx = rank_by_sbir(model, pool_images, user, top_n)
        _copy_selection(pool_files, sbir_idx, root / OUT / "sbir")
        summary.update(
            top_n=top_n,
            pool=len(pool_files),
            overlap=int(len(np.intersect1d(chamfer_idx, sbir_idx))),
            sbir=getattr(model, "info", {}),
        )
    return summary


def _train_sbir(params: dict[str, Any], cfg: BaselinesSection, root: Path, device) -> Any:
    # real-data settings have no pretrain set: train on the real regularisation images
    source = root / "data/pretrain/images"
    if not any(source.glob("*.png")):
        source = root / "data/image_reg/images"
    files = list_images(source)[:SBIR_TRAIN_PAIRS]
    images = load_image_files(files, "RGB")
    net, _ = load_sketch_net(root / "models/pretrained/photosketch.pt", device)
    sketches = sketch_images(net, images, batch=16, mode="eval")
    model = train_sbir(
        images,
        sketches,
        iters=cfg.sbir_iters,
        batch=cfg.sbir_batch,
        lr=cfg.sbir_lr,
        margin=cfg.sbir_margin,
        width=cfg.sbir_width,
        dim=cfg.sbir_dim,
        seed=int(params.get("seed", 0)),
        device=device,
    )
    save_sbir(model, root / SBIR_MODEL)
    return model


def _copy_selection(files: list[Path], indices: np.ndarray, out: Path) -> None:
    """The retrieved pool images, renamed by rank, plus which pool file each one is."""
    with atomic_dir(out) as tmp:
        for rank, i in enumerate(indices):
            shutil.copyfile(files[int(i)], tmp / f"{rank:06d}.png")
    write_json(out.parent / f"{out.name}_selection.json", [files[int(i)].name for i in indices])
