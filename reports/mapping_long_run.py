"""Tables and figure of `reports/mapping_long_run.md` from the runs' own JSON lines and grids.

The long mapping-only run (`reports/bench_finetune_curve.py`), the measurements of its
snapshots and the supervised capacity probe (`reports/bench_mapping_capacity.py`) and the
sketch-D rankings (`reports/bench_sketch_d_signal.py`) each print one JSON object per line;
their logs are committed in `reports/mapping_long_run/`. This script turns them into the
report's tables (nothing typed by hand) and enlarges the first samples of each grid into one
picture (same z in every row).

    .venv/bin/python reports/mapping_long_run.py table
    .venv/bin/python reports/mapping_long_run.py figure LABEL=GRID.png [LABEL=GRID.png ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sketchgan.report import comparison_panel

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "reports/mapping_long_run"
FIGURE = ROOT / "reports/figures/mapping_long_run.png"
PAPER_LR = 0.002
GRID_PAD = 2  # sketchgan.io.make_grid's padding
TILE = 32
N_TILES = 8


def read_rows(path: Path) -> list[dict]:
    """The JSON objects of a log, skipping its non-JSON lines (progress, warnings)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def method_table(snapshots: list[dict], signal: list[dict]) -> str:
    """One row per snapshot of the paper's run, with its sketch D's ranking quality."""
    auc = {int(r["step"]): r for r in signal}
    head = (
        "| iterations | Adam travel (lr x its) | w moved | target match | shape match | FID "
        "| precision | recall | colour spread | sketch Chamfer | sketch-D AUC (target pose) |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in sorted(snapshots, key=lambda r: r["snapshot"]):
        it = int(r["snapshot"])
        d = auc.get(it)
        d_auc = "" if d is None else f"{d['auc_target']:.3f}"
        lines.append(
            f"| {it:,} | {PAPER_LR * it:g} | {_pct(r['w_move'])} | {_pct(r['target'])} "
            f"| {_pct(r['shape'])} | {r['fid']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['colour_spread']:.3f} | {r['sketch_chamfer']:.2f} "
            f"| {d_auc} |"
        )
    return head + "\n".join(lines) + "\n"


def probe_table(probe: list[dict]) -> str:
    """The supervised probe's rows: how far the same parameters *can* move the samples."""
    head = (
        "| probe steps | lr | Adam travel | w moved | target match | shape match | FID "
        "| precision | recall | colour spread | sketch Chamfer |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {int(r['it']):,} | {r['lr']:g} | {r['lr'] * r['it']:g} | {_pct(r['w_move'])} "
        f"| {_pct(r['target'])} | {_pct(r['shape'])} | {r['fid']:.1f} | {r['precision']:.3f} "
        f"| {r['recall']:.3f} | {r['colour_spread']:.3f} | {r['sketch_chamfer']:.2f} |"
        for r in probe
    ]
    return head + "\n".join(lines) + "\n"


def signal_table(signal: list[dict]) -> str:
    head = (
        "| sketch D of iteration | AUC target pose | AUC sketched shape | AUC pose, within the "
        "shape | mean score: user sketches | real scenes of the pose | target-pose samples "
        "| other samples |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {int(r['step']):,} | {r['auc_target']:.3f} | {r['auc_shape']:.3f} "
        f"| {r['auc_pose_within_shape']:.3f} | {r['score_user_sketches']:.2f} "
        f"| {r['score_eval_scenes']:.2f} | {r['score_target_samples']:.2f} "
        f"| {r['score_other_samples']:.2f} |"
        for r in sorted(signal, key=lambda r: r["step"])
    ]
    return head + "\n".join(lines) + "\n"


def tiles_from_grid(path: Path, n: int = N_TILES, size: int = TILE) -> torch.Tensor:
    """The first ``n`` tiles of a :func:`sketchgan.io.make_grid` sheet, in [-1, 1]."""
    arr = np.asarray(Image.open(path).convert("RGB"))
    ncol = (arr.shape[1] - GRID_PAD) // (size + GRID_PAD)
    tiles = []
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x = GRID_PAD + r * (size + GRID_PAD), GRID_PAD + c * (size + GRID_PAD)
        tiles.append(arr[y : y + size, x : x + size])
    t = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "table":
        snapshots = read_rows(LOGS / "snapshots.jsonl")
        signal = read_rows(LOGS / "sketch_d_signal.jsonl")
        print(method_table(snapshots, signal))
        print(probe_table(read_rows(LOGS / "probe.jsonl")))
        print(signal_table(signal))
    elif cmd == "figure":
        rows = []
        for spec in args:
            label, path = spec.split("=", 1)
            rows.append((label, tiles_from_grid(Path(path))))
        print(comparison_panel(rows, FIGURE))
    else:
        raise SystemExit(f"unknown command {cmd!r}: table | figure")


if __name__ == "__main__":
    main()
