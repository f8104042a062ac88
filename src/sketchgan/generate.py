"""Interactive tools behind ``sketchgan generate`` and ``sketchgan interpolate``."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.errors import SketchganError
from sketchgan.evaluation.sampling import (
    generate_images,
    sample_folder,
    sample_grid,
    weight_interpolation,
)
from sketchgan.io import make_grid, save_png, to_uint8
from sketchgan.models.stylegan2 import Generator
from sketchgan.runtime import pick_device


def _generator(checkpoint: Path | str | None, random_config: dict[str, Any] | None, device):
    if checkpoint is not None:
        if str(checkpoint).startswith("models:/"):
            return _registered(str(checkpoint), device)
        if not Path(checkpoint).is_file():
            raise SketchganError(f"{checkpoint}: checkpoint not found")
        return load_finetuned_generator(checkpoint, device)
    cfg = {"channel_multiplier": 2, **(random_config or {})}
    if cfg.get("size", 0) < 4 or cfg["size"] & (cfg["size"] - 1):
        raise SketchganError(f"--size: must be a power of two >= 4, got {cfg.get('size')}")
    torch.manual_seed(0)
    return Generator(**cfg).to(device).eval()


def _registered(uri: str, device) -> Any:
    """A registered model version (``models:/<name>@<alias>``, ``models:/<name>/<n>``) from
    this project's MLflow store, through its weights-only state-dict artifact."""
    import tempfile

    from sketchgan import tracking

    tracking.configure()
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_registered_state(uri, tmp)
        return load_finetuned_generator(path, device)


def parse_seeds(text: str) -> list[int]:
    """``"0-15"``, ``"3,7,9"`` or ``"0-3,10"`` -> sample indices (StyleGAN-style --seeds)."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise SketchganError(f"--seeds: expected e.g. 0-15 or 1,5,9, got {text!r}")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise SketchganError(f"--seeds: range {part} runs backwards")
        out.extend(range(lo, hi + 1))
    if len(out) > 100_000:
        raise SketchganError(f"--seeds: {len(out)} samples is too many")
    return out


def generate_samples(
    out: Path,
    checkpoint: Path | str | None,
    n: int,
    seed: int = 0,
    truncation: float = 1.0,
    device: str = "auto",
    random_config: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
) -> int:
    """Write PNG samples and ``grid.png`` into ``out``: the first ``n`` of the seeded sequence
    (``000000.png``...), or exactly the sample indices ``seeds`` (named by index)."""
    dev = pick_device(device)
    gen = _generator(checkpoint, random_config, dev)
    out = Path(out)
    if seeds is None:
        sample_folder(
            gen, n, out, seed, batch=32, truncation=truncation, device=dev, progress=False
        )
        sample_grid(gen, min(n, 64), seed, truncation, out / "grid.png", device=dev)
        return n
    out.mkdir(parents=True, exist_ok=True)
    first = []
    for start in range(0, len(seeds), 32):
        chunk = seeds[start : start + 32]
        images = generate_images(gen, chunk, seed, truncation, device=dev)
        for index, image in zip(chunk, images, strict=True):
            save_png(to_uint8(image[None])[0], out / f"{index:06d}.png")
        if len(first) < 64:
            first.extend(images[: 64 - len(first)])
    grid = make_grid(torch.stack(first), nrow=int(math.ceil(math.sqrt(len(first)))))
    save_png(grid, out / "grid.png")
    return len(seeds)


def interpolate_models(
    original: Path, finetuned: Path, out: Path, steps: int = 8, seed: int = 0, device: str = "auto"
) -> Path:
    """Rows from the original to the fine-tuned model, in weight space and in w space."""
    dev = pick_device(device)
    g0 = _generator(original, None, dev)
    g1 = _generator(finetuned, None, dev)
    return weight_interpolation(g0, g1, steps, seed, out, device=dev)
