"""DVC stage `report`: reports/benchmark.md and a self-contained reports/benchmark.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sketchgan import tracking
from sketchgan.io import list_images, load_image_files
from sketchgan.pipeline import SUMMARY_DIR, tracked_stage, user_sketch_dir
from sketchgan.report import comparison_panel, render_report
from sketchgan.runtime import repo_root

README_FIGURE = Path("reports/figures/readme.png")
PANEL_CAPTION = (
    "user sketches; original model; fine-tuned, same z; real scenes of the pose; "
    "Chamfer and SBIR baselines (4x, nearest neighbour)"
)
STAGES = ("prepare", "pretrain", "photosketch", "train", "sample", "baselines", "evaluate")


def run(params: dict[str, Any]) -> dict[str, Any]:
    root = repo_root()
    with tracked_stage("report", params, ()) as summary:
        _readme_figure(root, root / user_sketch_dir(params), root / README_FIGURE)
        context = {
            "title": "sketchgan benchmark: embedded world"
            if not (params.get("prepare") or {}).get("real_images")
            else "sketchgan benchmark",
            "sketches": root / user_sketch_dir(params),
            "grids": {
                "fine-tuned (best-FID iteration)": root / "outputs/samples/finetuned",
                "original model": root / "outputs/samples/original",
                "Chamfer baseline": root / "outputs/baselines/chamfer",
                "SBIR baseline": root / "outputs/baselines/sbir",
                "eval set (real scenes of the target pose)": root / "data/eval/images",
            },
            "figures": {PANEL_CAPTION: root / README_FIGURE, **_figures(root)},
            "losses": {
                "fine-tuning": root / "outputs/train/losses.csv",
                "pretraining": root / "outputs/pretrain/losses.csv",
            },
            "timings": _timings(root),
            "figures_dir": root / "reports/figures/report",
        }
        render_report(
            root / "reports/evaluation.json",
            root / "reports/benchmark.md",
            root / "reports/benchmark.html",
            context,
        )
        tracking.log_artifact(root / "reports/benchmark.html")
        tracking.log_artifact(root / "reports/benchmark.md")
        tracking.log_artifact(root / README_FIGURE, "figures")  # the comparison panel
        summary["timings"] = context["timings"]
    return summary


def _figures(root: Path) -> dict[str, Path]:
    sample_summary = root / SUMMARY_DIR / "sample.json"
    figures: dict[str, Path] = {}
    if sample_summary.is_file():
        for caption, rel in json.loads(sample_summary.read_text()).get("figures", {}).items():
            figures[caption] = root / rel
    for caption, rel in (
        ("data: pretrain scenes, contours, user sketches, eval scenes", "contact_sheet.png"),
        ("pretrained generator samples", "pretrain_samples.png"),
        ("sketch network on held-out scenes", "photosketch_samples.png"),
    ):
        if (root / "reports/figures" / rel).is_file():
            figures[caption] = root / "reports/figures" / rel
    return figures


def _timings(root: Path) -> dict[str, float]:
    out = {}
    for stage in STAGES:
        path = root / SUMMARY_DIR / f"{stage}.json"
        if path.is_file():
            out[stage] = float(json.loads(path.read_text()).get("seconds", float("nan")))
    return out


def _readme_figure(root: Path, sketches: Path, out: Path, n: int = 8) -> None:
    """The README/report panel: sketches, original vs fine-tuned (same z), real scenes of the
    pose and both baselines' retrievals, each enlarged 4x (nearest neighbour)."""
    rows = []
    for label, folder, mode in (
        ("user sketches", sketches, "L"),
        ("original model", root / "outputs/samples/original", "RGB"),
        ("fine-tuned (same z)", root / "outputs/samples/finetuned", "RGB"),
        ("real scenes of the pose", root / "data/eval/images", "RGB"),
        ("Chamfer baseline", root / "outputs/baselines/chamfer", "RGB"),
        ("SBIR baseline", root / "outputs/baselines/sbir", "RGB"),
    ):
        rows.append((label, load_image_files(list_images(folder)[:n], mode)))
    comparison_panel(rows, out)
