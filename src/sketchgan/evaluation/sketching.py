"""Running the frozen image->sketch network over folders of images, with a content-hash cache.

Used by the `photosketch` stage (eval set, original-model pool) and by evaluation (sketches of
generated samples for the Chamfer sketch-matching distance). In ``eval`` mode each sketch depends
on its image alone, so sketches are cached per image content (sha256 of the PNG bytes + the
network's file hash); ``train`` mode (BatchNorm batch statistics, as inside the loss) depends on
the batch, so it is never cached.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sketchgan.errors import SketchganError
from sketchgan.io import atomic_dir, list_images, open_image, to_uint8

MODES = ("eval", "train")


@torch.no_grad()
def sketch_images(
    net: nn.Module, images: torch.Tensor, batch: int = 16, mode: str = "eval"
) -> torch.Tensor:
    """Sketches (N, 1, H, W) in [-1, 1] of RGB images (N, 3, H, W) in [-1, 1]."""
    if mode not in MODES:
        raise SketchganError(f"params: 'photosketch.mode' must be one of {MODES}, got {mode!r}")
    was_training = net.training
    net.train(mode == "train")
    device = next(net.parameters()).device
    try:
        out = [
            net(images[i : i + batch].to(device)).float().cpu()
            for i in range(0, len(images), batch)
        ]
    finally:
        net.train(was_training)
    return torch.cat(out) if out else images.new_zeros((0, 1, *images.shape[2:]))


def _load_rgb(path: Path) -> torch.Tensor:
    arr = np.array(open_image(path).convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1).float().div(127.5).sub(1)


def sketch_folder(
    net: nn.Module,
    src: str | Path,
    out: str | Path,
    net_id: str,
    cache_dir: str | Path | None = None,
    batch: int = 16,
    mode: str = "eval",
) -> dict[str, int]:
    """Sketch every image of ``src`` into ``out`` (same file names); returns cache statistics."""
    files = list_images(src)
    cache = Path(cache_dir) / f"{net_id}-{mode}" if cache_dir and mode == "eval" else None
    keys = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files] if cache else []
    todo = [
        i for i in range(len(files)) if cache is None or not (cache / f"{keys[i]}.png").is_file()
    ]
    with atomic_dir(out) as tmp:
        for start in range(0, len(todo), 256):
            idx = todo[start : start + 256]
            imgs = torch.stack([_load_rgb(files[i]) for i in idx])
            sketches = sketch_images(net, imgs, batch, mode)
            for j, i in enumerate(idx):
                _write_one(sketches[j : j + 1], tmp / f"{files[i].stem}.png")
                if cache is not None:
                    cache.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(tmp / f"{files[i].stem}.png", cache / f"{keys[i]}.png")
        if cache is not None:
            for i in sorted(set(range(len(files))) - set(todo)):
                shutil.copyfile(cache / f"{keys[i]}.png", tmp / f"{files[i].stem}.png")
    return {"images": len(files), "computed": len(todo), "cached": len(files) - len(todo)}


def _write_one(sketch: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(to_uint8(sketch)[0, :, :, 0]).save(path)
