"""DVC stage `photosketch`: the frozen image->sketch net over the sets that need sketches.

Writes data/photosketch/pool/{images,sketches} (samples of the *original* generator, which the
SBIR and Chamfer baselines retrieve from) and data/photosketch/eval/sketches (the eval set's
sketches, for reference sketch-matching numbers). With ``photosketch.user_photos`` (a folder of
real photos of the wanted pose, as in the paper's "photosketch" sketch sets) their sketches go
to data/photo_sketches/, which `train` then uses instead of data/sketches. Sketches are cached
by image content.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sketchgan.checkpoints import load_finetuned_generator, load_sketch_net
from sketchgan.config import PhotosketchSection
from sketchgan.data.sketch_import import load_real_images
from sketchgan.evaluation.sampling import sample_folder
from sketchgan.evaluation.sketching import sketch_folder
from sketchgan.io import atomic_dir, sha256_file
from sketchgan.pipeline import PHOTO_SKETCHES, device_of, tracked_stage
from sketchgan.runtime import repo_root, section

OUT = Path("data/photosketch")
PRETRAINED = Path("models/pretrained")
CACHE = Path("outputs/.cache/photosketch")
POOL_SEED_OFFSET = 1_000_003  # the pool never shares latent codes with the `sample` stage


def run(params: dict[str, Any]) -> dict[str, Any]:
    cfg = PhotosketchSection.from_params(params)
    pool_size, batch, mode = cfg.pool_size, cfg.batch, cfg.mode
    root = repo_root()
    device = device_of(params)
    with tracked_stage("photosketch", params, ("photosketch",)) as summary:
        gen = load_finetuned_generator(root / PRETRAINED / "generator.pt", device)
        sample_folder(
            gen,
            pool_size,
            root / OUT / "pool/images",
            seed=int(params.get("seed", 0)) + POOL_SEED_OFFSET,
            batch=max(batch, 64),
            device=device,
        )
        net_path = root / PRETRAINED / "photosketch.pt"
        net, _ = load_sketch_net(net_path, device)
        net_id = sha256_file(net_path)[:16]
        for name, src in (("pool", OUT / "pool/images"), ("eval", Path("data/eval/images"))):
            summary[name] = sketch_folder(
                net, root / src, root / OUT / name / "sketches", net_id, root / CACHE, batch, mode
            )
        size = int(section(params, "prepare").get("size"))
        summary["user_photos"] = _user_photo_sketches(cfg, root, size, net, net_id, batch, mode)
    return summary


def _user_photo_sketches(
    cfg: PhotosketchSection, root: Path, size: int, net, net_id: str, batch: int, mode: str
) -> dict[str, int] | None:
    """Training sketches made from the user's photos (or a note that none are configured)."""
    photos = cfg.user_photos
    out = root / PHOTO_SKETCHES
    if not photos:
        with atomic_dir(out) as tmp:
            (tmp / "README.txt").write_text(
                "photosketch.user_photos is not set: training uses data/sketches/images\n"
            )
        return None
    with tempfile.TemporaryDirectory() as tmp:
        converted = load_real_images(root / str(photos), Path(tmp) / "photos", size)
        stats = sketch_folder(net, Path(tmp) / "photos", out, net_id, root / CACHE, batch, mode)
    return {**stats, "photos": len(converted)}
