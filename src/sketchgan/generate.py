"""Interactive tools behind ``sketchgan generate`` and ``sketchgan interpolate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.errors import SketchganError
from sketchgan.evaluation.sampling import sample_folder, sample_grid, weight_interpolation
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


def generate_samples(
    out: Path,
    checkpoint: Path | None,
    n: int,
    seed: int = 0,
    truncation: float = 1.0,
    device: str = "auto",
    random_config: dict[str, Any] | None = None,
) -> int:
    """Write ``n`` PNG samples (``000000.png``...) and ``grid.png`` into ``out``."""
    dev = pick_device(device)
    gen = _generator(checkpoint, random_config, dev)
    out = Path(out)
    sample_folder(gen, n, out, seed, batch=32, truncation=truncation, device=dev, progress=False)
    sample_grid(gen, min(n, 64), seed, truncation, out / "grid.png", device=dev)
    return n


def interpolate_models(
    original: Path, finetuned: Path, out: Path, steps: int = 8, seed: int = 0, device: str = "auto"
) -> Path:
    """Rows from the original to the fine-tuned model, in weight space and in w space."""
    dev = pick_device(device)
    g0 = _generator(original, None, dev)
    g1 = _generator(finetuned, None, dev)
    return weight_interpolation(g0, g1, steps, seed, out, device=dev)
