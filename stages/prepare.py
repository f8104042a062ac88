"""DVC stage `prepare`: the embedded world (or your own data) as the four data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sketchgan.data.prepare import contact_sheet, prepare_data
from sketchgan.data.world import TargetSpec
from sketchgan.pipeline import tracked_stage
from sketchgan.runtime import repo_root, section

DATA = Path("data")
CONTACT_SHEET = Path("reports/figures/contact_sheet.png")


def run(params: dict[str, Any]) -> dict[str, Any]:
    cfg = section(params, "prepare")
    raw_target = cfg.get("target")
    target = None if raw_target is None else TargetSpec.from_dict(raw_target, "prepare.target")
    root = repo_root()
    with tracked_stage("prepare", params, ("prepare",)) as summary:
        result = prepare_data(
            out_root=root / DATA,
            size=cfg.get("size"),
            n_pretrain=cfg.get("n_pretrain"),
            n_image_reg=cfg.get("n_image_reg"),
            n_eval=cfg.get("n_eval"),
            n_sketches=cfg.get("n_sketches"),
            target=target,
            seed=params.get("seed", 0),
            user_sketches=cfg.get("user_sketches"),
            real_images=cfg.get("real_images"),
            eval_images=cfg.get("eval_images"),
        )
        contact_sheet(root / DATA, root / CONTACT_SHEET)
        summary.update(result)
    return summary
