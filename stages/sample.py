"""DVC stage `sample`: fixed-seed samples of the fine-tuned (best, last) and original models,
plus the paper's figures (grids at psi 0.5, latent and model interpolation, GANSpace edits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.config import SampleSection, VisualiseSection
from sketchgan.evaluation.sampling import sample_folder, write_visualisations
from sketchgan.pipeline import device_of, tracked_stage
from sketchgan.runtime import repo_root

SAMPLES = Path("outputs/samples")
FIGURES = Path("reports/figures/samples")
MODELS = {
    "finetuned": Path("models/finetuned/generator.pt"),
    "finetuned_last": Path("models/finetuned/generator_last.pt"),
    "original": Path("models/pretrained/generator.pt"),
}


def run(params: dict[str, Any]) -> dict[str, Any]:
    cfg = SampleSection.from_params(params)
    vis = VisualiseSection.from_params(params)
    n, batch, truncation = cfg.n, cfg.batch, cfg.truncation
    seed = int(params.get("seed", 0))
    root = repo_root()
    device = device_of(params)
    with tracked_stage("sample", params, ("sample", "visualise")) as summary:
        gens = {name: load_finetuned_generator(root / p, device) for name, p in MODELS.items()}
        for name, gen in gens.items():
            # the same seed for every model: sample i of each starts from the same z
            sample_folder(gen, n, root / SAMPLES / name, seed, batch, truncation, device=device)
        figures = write_visualisations(
            gens["original"],
            gens["finetuned"],
            root / FIGURES,
            seed=seed,
            truncation=vis.truncation,
            n_grid=vis.grid_n,
            steps=vis.interp_steps,
            ganspace_samples=vis.ganspace_samples,
            device=device,
        )
        summary.update(n=n, figures={k: str(Path(v).relative_to(root)) for k, v in figures.items()})
    return summary
