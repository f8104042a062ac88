"""DVC stage `photosketch`: the frozen image->sketch net over the sets that need sketches.

Writes data/photosketch/pool/{images,sketches} (samples of the *original* generator, which the
SBIR and Chamfer baselines retrieve from) and data/photosketch/eval/sketches (the eval set's
sketches, for reference sketch-matching numbers). Sketches are cached by image content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sketchgan.checkpoints import load_sketch_net
from sketchgan.evaluation.sampling import sample_folder
from sketchgan.evaluation.sketching import sketch_folder
from sketchgan.io import sha256_file
from sketchgan.pipeline import device_of, tracked_stage
from sketchgan.runtime import get_param, repo_root, section
from sketchgan.training.finetune import load_finetuned_generator

OUT = Path("data/photosketch")
PRETRAINED = Path("models/pretrained")
CACHE = Path("outputs/.cache/photosketch")
POOL_SEED_OFFSET = 1_000_003  # the pool never shares latent codes with the `sample` stage


def run(params: dict[str, Any]) -> dict[str, Any]:
    cfg = section(params, "photosketch")
    pool_size = get_param(cfg, "pool_size", int, "photosketch", minimum=1)
    batch = get_param(cfg, "batch", int, "photosketch", minimum=2)
    mode = str(cfg.get("mode", "eval"))
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
    return summary
