"""Tables and figure of `reports/mapping_long_run.md` from the runs' own JSON lines and grids.

The long mapping-only run (`reports/bench_finetune_curve.py`), the measurements of its
snapshots and the supervised capacity probe (`reports/bench_mapping_capacity.py`) and the
sketch-D rankings (`reports/bench_sketch_d_signal.py`) each print one JSON object per line;
their logs are committed in `reports/mapping_long_run/`. This script turns them into the
report's tables (nothing typed by hand) and enlarges the first samples of each grid into one
picture (same z in every row).

    .venv/bin/python reports/mapping_long_run.py table     # print every table
    .venv/bin/python reports/mapping_long_run.py refresh   # rewrite the report's tables in place
    .venv/bin/python reports/mapping_long_run.py figure LABEL=GRID.png|LABEL=panel:ROW ...
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sketchgan.io import atomic_path
from sketchgan.report import comparison_panel, panel_tile_origin

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "reports/mapping_long_run"
FIGURE = ROOT / "reports/figures/mapping_long_run.png"
PAPER_LR = 0.002
GRID_PAD = 2  # sketchgan.io.make_grid's padding
TILE = 32
N_TILES = 8
PANEL_ZOOM = 4  # the figure's nearest-neighbour enlargement
PAPER_LABEL = "the paper's method"
NO_REG_LABEL = "without image regularisation"
NO_MBSTD_LABEL = "sketch D without its batch feature"
FAST_G_LABEL = "G lr x75 (g_lr 0.15)"
MOBILE_G_LABEL = "G lr x20 (g_lr 0.04)"
NO_AUG_LABEL = "without augmentation"
LOSS_EVERY = 5000  # iterations per row of the loss table


def read_rows(path: Path) -> list[dict]:
    """The JSON objects of a log, skipping its non-JSON lines (progress, warnings)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


SAMPLE_HEADERS = [
    "target match",
    "shape match",
    "FID",
    "precision",
    "recall",
    "colour spread",
    "sketch Chamfer",
]


def _cell(row: dict, key: str, spec: str) -> str:
    """``row[key]`` formatted (``%`` = a share as a percentage); blank where a log lacks it."""
    if key not in row:
        return ""
    if spec == "%":
        return f"{100 * row[key]:.1f}%"
    return format(row[key], spec)


#: each sample measure's log key and format, in ``SAMPLE_HEADERS`` order
SAMPLE_FORMATS = {"target": "%", "shape": "%", "fid": ".1f", "precision": ".3f"}
SAMPLE_FORMATS |= {"recall": ".3f", "colour_spread": ".3f", "sketch_chamfer": ".2f"}


def _sample_cells(row: dict, keys: tuple[str, ...] = tuple(SAMPLE_FORMATS)) -> list[str]:
    """The measures of 1,000 samples the tables share (all, or ``keys``), formatted."""
    return [_cell(row, k, SAMPLE_FORMATS[k]) for k in keys]


def _markdown(headers: list[str], rows: list[list[str]], text_first: bool = False) -> str:
    """A markdown table, numbers right-aligned (the first column left when it holds text)."""
    align = ["---" if text_first and i == 0 else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def method_table(snapshots: list[dict], signal: list[dict]) -> str:
    """One row per snapshot of the paper's run, with its sketch D's ranking quality."""
    auc = {int(r["step"]): r for r in signal}
    headers = ["iterations", "Adam travel (lr x its)", "w moved", *SAMPLE_HEADERS]
    headers.append("sketch-D AUC (target pose)")
    rows = []
    for r in sorted(snapshots, key=lambda r: r["snapshot"]):
        it = int(r["snapshot"])
        d_auc = _cell(auc.get(it, {}), "auc_target", ".3f")
        rows.append([f"{it:,}", f"{PAPER_LR * it:g}", _cell(r, "w_move", "%")])
        rows[-1] += [*_sample_cells(r), d_auc]
    return _markdown(headers, rows)


def probe_table(probe: list[dict]) -> str:
    """The supervised probe's rows: how far the same parameters *can* move the samples."""
    headers = ["probe steps", "lr", "Adam travel", "w moved", *SAMPLE_HEADERS]
    rows = [
        [f"{int(r['it']):,}", f"{r['lr']:g}", f"{r['lr'] * r['it']:g}", _cell(r, "w_move", "%")]
        + _sample_cells(r)
        for r in probe
    ]
    return _markdown(headers, rows)


Run = tuple[str, list[dict], list[dict]]  # label, its curve's rows, its snapshots re-measured


def beside_paper_table(snapshots: list[dict], runs: list[Run]) -> str:
    """The paper's run beside other runs at the counts they reached: one row per run at each
    count; where a run's generator was not measured again, only its curve's own measures."""
    by_count: dict[int, list[tuple[str, dict]]] = {}
    for label, curve, measured in runs:
        fuller = {int(r["snapshot"]): r for r in measured}
        for r in curve:
            it = int(r["it"])
            by_count.setdefault(it, []).append((label, fuller.get(it, r)))
    full = {int(r["snapshot"]): r for r in snapshots}
    headers = ["run", "iterations", "w moved", *SAMPLE_HEADERS]
    rows = []
    for it in sorted(set(by_count) - {0}):
        paper = [(PAPER_LABEL, full[it])] if it in full else []
        for label, row in paper + by_count[it]:
            rows.append([label, f"{it:,}", _cell(row, "w_move", "%"), *_sample_cells(row)])
    return _markdown(headers, rows, text_first=True)


def _per_checkpoint(signal: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """One row per sketch-D checkpoint; ``columns``: (header, key, format)."""
    headers = ["sketch D of iteration", *[h for h, _, _ in columns]]
    rows = [
        [f"{int(r['step']):,}", *[_cell(r, k, spec) for _, k, spec in columns]]
        for r in sorted(signal, key=lambda r: r["step"])
    ]
    return _markdown(headers, rows)


def signal_table(signal: list[dict]) -> str:
    """How each checkpoint's sketch D ranks sketches: by pose, and real against generated."""
    return _per_checkpoint(
        signal,
        [
            ("AUC target pose", "auc_target", ".3f"),
            ("AUC sketched shape", "auc_shape", ".3f"),
            ("AUC pose, within the shape", "auc_pose_within_shape", ".3f"),
            ("AUC target pose, real scenes", "auc_target_real_scenes", ".3f"),
            ("AUC real vs generated", "auc_real_vs_generated", ".3f"),
            ("AUC real vs generated, target pose", "auc_real_vs_generated_in_target", ".3f"),
        ],
    )


def batch_table(signal: list[dict]) -> str:
    """Mean scores of the same sketches in different batches: the batch feature's share."""
    return _per_checkpoint(
        signal,
        [
            ("user sketches, together", "score_user_sketches", ".2f"),
            ("user sketches, among samples", "score_user_among_samples", ".2f"),
            ("real scenes of the pose, together", "score_eval_scenes", ".2f"),
            ("target-pose samples, together", "score_target_samples_together", ".2f"),
            ("target-pose samples, in their batches", "score_target_samples", ".2f"),
            ("target-pose samples, alone", "score_target_solo", ".2f"),
            ("other samples, alone", "score_other_solo", ".2f"),
            ("other samples, in their batches", "score_other_samples", ".2f"),
        ],
    )


LOSS_COLUMNS = {
    "d_sketch_real": "sketch D, real",
    "d_sketch_fake": "sketch D, fake",
    "g_sketch": "G, sketch term",
    "d_image_real": "image D, real",
    "d_image_fake": "image D, fake",
    "g_image": "G, image term",
}


def loss_table(losses_csv: Path, every: int) -> str:
    """Mean of each adversarial term of the trainer's ``losses.csv`` over each ``every``
    iterations: who is winning, and whether that changes as the run goes on."""
    with losses_csv.open(newline="") as f:
        logged = list(csv.DictReader(f))
    buckets: dict[int, list[dict]] = {}
    for r in logged:  # a row at step s is the mean of the iterations up to s
        buckets.setdefault((int(r["step"]) - 1) // every, []).append(r)
    headers = ["iterations", *LOSS_COLUMNS.values()]
    rows = []
    for b, rs in sorted(buckets.items()):
        last = min((b + 1) * every, max(int(r["step"]) for r in rs))  # a partial last bucket
        rows.append([f"{b * every:,}-{last:,}"])
        for k in LOSS_COLUMNS:  # a term the run did not have is logged blank
            values = [float(r[k]) for r in rs if r[k]]
            rows[-1].append(f"{np.mean(values):.3f}" if values else "")
    return _markdown(headers, rows)


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


def tiles_from_panel(path: Path, row: int, n: int = N_TILES, size: int = TILE) -> torch.Tensor:
    """Row ``row`` of a :func:`sketchgan.report.comparison_panel` picture (4x nearest
    neighbour), back at ``size`` px in [-1, 1]: rows whose run state is gone (grids of an
    earlier stop) are carried over from the committed figure instead of being redrawn."""
    arr = np.asarray(Image.open(path).convert("RGB"))
    tiles = []
    for c in range(n):
        x, y = panel_tile_origin(row, c, size, PANEL_ZOOM)
        tiles.append(
            arr[y : y + size * PANEL_ZOOM : PANEL_ZOOM, x : x + size * PANEL_ZOOM : PANEL_ZOOM]
        )
    t = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


def figure_rows(specs: list[str]) -> list[tuple[str, torch.Tensor]]:
    """``LABEL=GRID.png`` (a sample grid) or ``LABEL=panel:ROW`` (that row of the committed
    figure), read before the figure is rewritten."""
    rows = []
    for spec in specs:
        label, source = spec.split("=", 1)
        if source.startswith("panel:"):
            rows.append((label, tiles_from_panel(FIGURE, int(source.removeprefix("panel:")))))
        else:
            rows.append((label, tiles_from_grid(Path(source))))
    return rows


def refresh_tables(markdown: str, tables: list[str]) -> str:
    """``markdown`` with each of its tables replaced by the generated table of the same header
    row (the k-th table of a header by the k-th generated one); prose is left alone."""
    fresh: dict[str, list[list[str]]] = {}
    for t in tables:
        lines = t.strip().splitlines()
        fresh.setdefault(lines[0], []).append(lines)
    out, lines, i, seen = [], markdown.splitlines(), 0, {}
    while i < len(lines):
        line = lines[i]
        if line in fresh and not (i and lines[i - 1].startswith("|")):
            k = seen[line] = seen.get(line, -1) + 1
            if k >= len(fresh[line]):
                raise SystemExit(f"{line[:60]}...: more such tables in the report than generated")
            out += fresh[line][k]
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


def _run_label(key: str) -> str:
    return PAPER_LABEL if key == "paper" else RERUNS[key][0]


def efficiency_table(rows: list[dict]) -> str:
    """`bench_step_efficiency.py` rows: how much of the G steps of 1,000 iterations add up,
    with the discriminators trained as in the run or frozen (a diagnostic), at G's lr."""
    headers = ["run", "from iteration", "discriminators", "G lr", "mean step (L2)"]
    headers += [f"efficiency, {k} steps (random: {k**-0.5:.3f})" for k in (10, 100, 1000)]
    out = []
    for r in rows:
        over = r["overrides"]
        ds = "frozen" if over.get("freeze_discriminators") else "trained"
        lr = over.get("resume_g_lr", over.get("g_lr", PAPER_LR))
        out.append([_run_label(r["run"]), f"{int(r['start']):,}", ds, f"{lr:g}"])
        out[-1].append(f"{r['mean_step_norm']:.3f}")
        out[-1] += [f"{r[f'efficiency_{k}']:.3f}" for k in (10, 100, 1000)]
    return _markdown(headers, out, text_first=True)


FROZEN_HEADERS = ["target match", "shape match", "FID", "colour spread"]
FROZEN_KEYS = ("target", "shape", "fid", "colour_spread")


def _frozen_cells(row: dict) -> list[str]:
    return _sample_cells(row, FROZEN_KEYS)


def frozen_table(frozen: list[dict], trained: dict[tuple[str, int], dict]) -> str:
    """G alone at the paper's lr against discriminators frozen at one checkpoint, beside the
    same run with its discriminators trained (``trained``: its rows by (run, iteration))."""
    headers = ["run", "Ds frozen at", "iterations", *FROZEN_HEADERS]
    headers += [f"{h}, Ds trained" for h in FROZEN_HEADERS[:3]]
    rows = []
    for r in frozen:
        if r["g_lr"] != PAPER_LR:
            continue
        same = trained.get((r["run"], int(r["it"])), {})
        rows.append([_run_label(r["run"]), f"{int(r['from']):,}", f"{int(r['it']):,}"])
        rows[-1] += _frozen_cells(r) + _frozen_cells(same)[:3]
    return _markdown(headers, rows, text_first=True)


def pull_table(
    frozen: list[dict], start_rows: dict[tuple[str, int], dict], fuller: list[dict]
) -> str:
    """Where each checkpoint's frozen discriminators lead G when it moves fast: the samples
    after K steps at a raised lr (a diagnostic), from the checkpoint's own samples (K = 0);
    the last generator of each such run measured again (recall, where its stars are)."""
    pose = [("recall", "recall", ".3f"), ("stars: x in range", "cx_in_range", "%")]
    pose += [("y in range", "cy_in_range", "%"), ("scale in range", "scale_in_range", "%")]
    headers = ["run", "Ds frozen at", "G steps", "G lr", "Adam travel since", *FROZEN_HEADERS]
    headers += [h for h, _, _ in pose]
    last = {r["name"]: r for r in fuller}
    final_it: dict[str, int] = {}
    for r in frozen:
        final_it[r["name"]] = max(final_it.get(r["name"], 0), int(r["it"]))
    rows = []
    done: set[tuple[str, int]] = set()
    for r in frozen:
        if r["g_lr"] == PAPER_LR:
            continue
        key = (r["run"], int(r["from"]))
        if key not in done and key in start_rows:
            rows.append([_run_label(key[0]), f"{key[1]:,}", "0", "", "0"])
            rows[-1] += _frozen_cells(start_rows[key]) + [""] * len(pose)
        done.add(key)
        steps = int(r["it"]) - key[1]
        measured = last.get(r["name"], {}) if int(r["it"]) == final_it[r["name"]] else {}
        rows.append([_run_label(key[0]), f"{key[1]:,}", f"{steps:,}", f"{r['g_lr']:g}"])
        rows[-1] += [f"{r['g_lr'] * steps:g}", *_frozen_cells(r)]
        rows[-1] += [_cell(measured, k, spec) for _, k, spec in pose]
    return _markdown(headers, rows, text_first=True)


def mobility_table(rows: list[dict]) -> str:
    """`bench_mapping_mobility.py`: w's move per Adam step budget, by mapping architecture."""
    budgets = list(rows[0]["w_move"])
    headers = ["mapping (style dim x layers)", "gradient", "w's relative spread"]
    headers += [f"w moved after {int(b):,} steps" for b in budgets]
    out = []
    for r in rows:
        out.append([r["mapping"], r["gradient"], f"{r['relative_spread']:.2f}"])
        out[-1] += [f"{100 * r['w_move'][b]:.1f}%" for b in budgets]
    return _markdown(headers, out, text_first=True)


#: the diagnostic runs redone from iteration 0 on another machine and run longer (stop 17)
RERUNS = {
    "noreg": (NO_REG_LABEL + ", rerun (AMD)", "no_image_reg_rerun"),
    "mbstd1": (NO_MBSTD_LABEL + ", rerun (AMD)", "no_sketch_d_batch_feature_rerun"),
}


def runs(name: str) -> list[Run]:
    """The rerun of diagnostic ``name``, if its logs are committed."""
    label, stem = RERUNS[name]
    curve = LOGS / f"{stem}_curve.jsonl"
    if not curve.exists():
        return []
    snaps = LOGS / f"{stem}_snapshot.jsonl"
    return [(label, read_rows(curve), read_rows(snaps) if snaps.exists() else [])]


def snapshots_as_curve(snapshots: list[dict]) -> list[dict]:
    """The paper's run's snapshot rows keyed like a curve's (``it``)."""
    return [dict(r, it=int(r["snapshot"])) for r in snapshots]


def all_tables() -> list[str]:
    """Every table of the report, generated from the committed logs."""
    snapshots = read_rows(LOGS / "snapshots.jsonl")
    signal = read_rows(LOGS / "sketch_d_signal.jsonl")
    noreg = read_rows(LOGS / "no_image_reg_curve.jsonl")
    noreg_measured = read_rows(LOGS / "no_image_reg_snapshot.jsonl")
    mbstd = read_rows(LOGS / "no_sketch_d_batch_feature_curve.jsonl")
    mbstd_measured = read_rows(LOGS / "no_sketch_d_batch_feature_snapshot.jsonl")
    frozen = read_rows(LOGS / "frozen_d.jsonl")
    curves = {key: runs(key)[0][1] for key in RERUNS}
    curves["paper"] = snapshots_as_curve(snapshots)
    trained = {(key, int(r["it"])): r for key, rows in curves.items() for r in rows}
    return [
        method_table(snapshots, signal),
        probe_table(read_rows(LOGS / "probe.jsonl")),
        signal_table(signal),
        batch_table(signal),
        loss_table(LOGS / "paper_run/losses.csv", LOSS_EVERY),
        beside_paper_table(snapshots, [(NO_REG_LABEL, noreg, noreg_measured), *runs("noreg")]),
        beside_paper_table(snapshots, [(NO_MBSTD_LABEL, mbstd, mbstd_measured), *runs("mbstd1")]),
        efficiency_table(read_rows(LOGS / "step_efficiency.jsonl")),
        frozen_table(frozen, trained),
        pull_table(frozen, trained, read_rows(LOGS / "frozen_d_snapshot.jsonl")),
        mobility_table(read_rows(LOGS / "mobility.jsonl")),
        beside_paper_table(
            snapshots, [(FAST_G_LABEL, read_rows(LOGS / "g_lr_x75_curve.jsonl"), [])]
        ),
        beside_paper_table(
            snapshots, [(MOBILE_G_LABEL, read_rows(LOGS / "g_lr_x20_curve.jsonl"), [])]
        ),
        beside_paper_table(
            snapshots, [(NO_AUG_LABEL, read_rows(LOGS / "no_augmentation_curve.jsonl"), [])]
        ),
    ]


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "table":
        print("\n".join(all_tables()))
    elif cmd == "refresh":
        report = ROOT / "reports/mapping_long_run.md"
        text = refresh_tables(report.read_text(), all_tables())
        with atomic_path(report) as tmp:
            tmp.write_text(text)
        print(report)
    elif cmd == "figure":
        print(comparison_panel(figure_rows(args), FIGURE, zoom=PANEL_ZOOM))
    else:
        raise SystemExit(f"unknown command {cmd!r}: table | refresh | figure")


if __name__ == "__main__":
    main()
