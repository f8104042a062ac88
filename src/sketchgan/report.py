"""The benchmark report: ``reports/benchmark.md`` and a self-contained ``reports/benchmark.html``.

Both files come from one list of sections, so they always say the same thing; the HTML embeds
every image as base64 and has no external link (readable offline, attachable to an MLflow run).
Anything optional that is missing is shown as "not run" instead of stopping the report: the
report is most needed exactly when a stage was skipped or failed.

``evaluation.json`` schema (written by the evaluation stage; every field but ``methods``
optional; ``metrics.json`` beside it holds its numbers flattened, see ``flat_metrics``)::

    {
      "methods": {
        "<name>": {                       # finetuned, original, chamfer, sbir, ablation names...
          "role": "method" | "original" | "baseline" | "ablation",   # inferred from the name
          "label": "human readable name",
          "fid": float | null,  "kid": float | null,  "kid_std": float | null,
          "precision": float | null,  "recall": float | null,
          "chamfer": float | null,        # sketch Chamfer distance to user sketches (lower better)
          "shape_match": float | null,    # share (0..1) the world evaluator gives the target shape
          "target_match": float | null,   # share (0..1) of samples the world evaluator says match
          "n_gen": int,  "n_ref": int,    # samples compared ("n" accepted for n_gen)
          "features": "clean-fid/inception-v3" | "world-evaluator" | ...,  # FID/KID/P&R network
          "iteration": int | null,        # training iteration the numbers come from
          "checkpoint": "best" | "last" | null,   # "best" = best-FID evaluation iteration
          "last": {<same metric fields>, "iteration": int}  # last-iteration figures, when the
                                                            # main ones are the best-FID ones
          "notes": str
        }
      },
      "meta": {
        "timings": {"<stage>": seconds | {"seconds": s}},  # per stage wall-clock
        "fid_history": [{"iteration": int, "fid": float}, ...],   # evaluations during training
        "machine": {"cpu": str, "cores": int, "torch": str, "device": str},
        "<any other scalar>": ...       # world, size, seed, eval set...: listed as given
      }
    }

Name -> role inference: ``finetuned*`` method, ``original``/``pretrained`` original,
``chamfer``/``sbir`` baseline, anything else ablation.

``context`` of ``render_report`` (all optional)::

    {"title": str, "sketches": path, "grids": {label: path}, "figures": {caption: path},
     "losses": {label: csv path}, "timings": {stage: seconds} | json path,
     "figures_dir": path (default <out_md dir>/figures), "machine": {...},
     "git_commit": str, "date": str}

An image path is a PNG/JPEG file, or a folder whose first images are tiled into a grid.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from sketchgan.errors import SketchganError
from sketchgan.io import atomic_path, list_images, make_grid, open_image, save_png, write_text
from sketchgan.runtime import repo_root

NOT_RUN = "not run"
MISSING_CELL = "—"

#: (key, column header, format, lower-is-better) for every metric column of the main table.
METRICS: tuple[tuple[str, str, str, bool], ...] = (
    ("fid", "FID ↓", "{:.2f}", True),
    ("kid", "KID ↓", "{:.4f}", True),
    ("precision", "precision ↑", "{:.3f}", False),
    ("recall", "recall ↑", "{:.3f}", False),
    ("chamfer", "sketch Chamfer ↓", "{:.4f}", True),
    ("shape_match", "shape match ↑", "{:.3f}", False),
    ("target_match", "target match ↑", "{:.3f}", False),
    ("colour_spread", "colour spread", "{:.3f}", False),
)
DEFINITIONS = (
    "*Target match*: the share of samples that the world evaluator reads as the sketched shape "
    "with every pose attribute inside the sketched pose's ranges. "
    "*Shape match*: the share it reads as the sketched shape, in any pose. "
    "*Sketch Chamfer*: the mean distance in pixels from each sample's sketch (sketch network) to "
    "the nearest user sketch (symmetric Chamfer, lower = closer). "
    "*Colour spread*: the standard deviation over samples of each image's mean colour "
    "(diversity of appearance; compare with the original model's)."
)
_ROLE_ORDER = {"method": 0, "original": 1, "baseline": 2, "ablation": 3}

#: FID, LSUN 256 px, 2,500 vs 2,500 (method_spec "Known numbers"): (sketch set, SBIR, method).
PAPER_FID: tuple[tuple[str, float | None, float | str], ...] = (
    ("standing cat", 59.86, 36.73),
    ("gabled church", 29.94, 21.35),
    ("horse on side", 43.53, 30.39),
    ("horse riders", None, "19.94 (paper), 20.13 (released weights)"),
)


# --------------------------------------------------------------------------- document model


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class ImageBlock:
    caption: str
    path: Path


@dataclass
class Section:
    title: str
    blocks: list[str | Table | ImageBlock] = field(default_factory=list)


# --------------------------------------------------------------------------- metrics.json


def _check_number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SketchganError(f"{where} must be a number or null, got {value!r}")
    return float(value)


def _check_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise SketchganError(f"{where}: expected a mapping of metric fields")
    for key, *_ in METRICS:
        _check_number(entry.get(key), f"{where}.{key}")
    for key in ("kid_std", "n", "n_gen", "n_ref", "iteration"):
        _check_number(entry.get(key), f"{where}.{key}")
    if "last" in entry:
        _check_entry(entry["last"], f"{where}.last")
    return entry


def load_metrics(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checked contents of ``metrics.json``, or ``None`` when it does not exist yet."""
    path = Path(path)
    layout = "{'methods': {name: {...}}, 'meta': {...}}"
    data = _read_json_mapping(path, layout)
    if data is None:
        return None
    if not isinstance(data.get("methods", {}), dict):
        raise SketchganError(f"{path}: expected {layout}")
    if not isinstance(data.get("meta", {}), dict):
        raise SketchganError(f"{path}: 'meta' must be a mapping")
    for name, entry in data.get("methods", {}).items():
        _check_entry(entry, f"{path}: methods.{name}")
    return data


#: what ``metrics.json`` holds: method -> (short name, {metric: short name}). The headline
#: numbers only, under short names, so ``dvc metrics show`` and ``dvc exp show --only-changed``
#: fit a 160-column terminal; every number stays in ``evaluation.json``. Other methods
#: contribute their FID under their own name.
HEADLINE: dict[str, tuple[str, dict[str, str]]] = {
    "finetuned": (
        "ours",
        {
            "fid": "fid",
            "target_match": "target",
            "shape_match": "shape",
            "recall": "recall",
            "colour_spread": "colour",
        },
    ),
    "original": ("orig", {"fid": "fid", "recall": "recall"}),
    "chamfer": ("chamfer", {"fid": "fid"}),
    "sbir": ("sbir", {"fid": "fid"}),
}


def flat_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of ``evaluation.json`` as ``method.metric`` (numbers only, one
    level): the DVC metrics file."""
    out: dict[str, float] = {}
    for name, entry in (evaluation.get("methods") or {}).items():
        short, keys = HEADLINE.get(name, (name, {"fid": "fid"}))
        for key, label in keys.items():
            value = entry.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{short}.{label}"] = float(value)
    return out


def method_role(name: str, entry: Mapping[str, Any]) -> str:
    """Role given in the entry, else guessed from the conventional method names."""
    role = entry.get("role")
    if role in _ROLE_ORDER:
        return role
    lowered = name.lower()
    if lowered.startswith(("finetuned", "fine-tuned", "fine_tuned")):
        return "method"
    if lowered in ("original", "pretrained"):
        return "original"
    if lowered in ("chamfer", "sbir") or lowered.startswith(("chamfer", "sbir")):
        return "baseline"
    return "ablation"


def _ordered_methods(methods: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(methods.items(), key=lambda item: (_ROLE_ORDER[method_role(*item)], item[0]))


def _fmt(value: Any, spec: str = "{}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_CELL
    return spec.format(value)


def _metric_cells(entry: Mapping[str, Any]) -> list[str]:
    cells = []
    for key, _, spec, _ in METRICS:
        cell = _fmt(entry.get(key), spec)
        if key == "kid" and entry.get("kid_std") is not None and cell != MISSING_CELL:
            cell += " ± " + spec.format(entry["kid_std"])
        cells.append(cell)
    return cells


def _n_gen(entry: Mapping[str, Any]) -> Any:
    return entry.get("n_gen", entry.get("n"))


def _int_cell(value: Any) -> str:
    return MISSING_CELL if value is None else str(int(value))


def metrics_table(methods: Mapping[str, Any]) -> Table:
    """Every method and baseline x every metric, with sample counts and the feature network."""
    headers = [
        "method",
        "role",
        *[h for _, h, _, _ in METRICS],
        "n gen",
        "n ref",
        "features",
        "iteration",
    ]
    rows = []
    for name, entry in _ordered_methods(methods):
        label = entry.get("label") or name
        if entry.get("checkpoint"):
            label += f" ({entry['checkpoint']})"
        rows.append(
            [
                label,
                method_role(name, entry),
                *_metric_cells(entry),
                _int_cell(_n_gen(entry)),
                _int_cell(entry.get("n_ref")),
                str(entry.get("features") or MISSING_CELL),
                _int_cell(entry.get("iteration")),
            ]
        )
    return Table(headers, rows)


def best_last_table(methods: Mapping[str, Any]) -> Table | None:
    """Best-FID vs last-iteration rows; the paper reports best-FID, users often take the last."""
    rows = []
    for name, entry in _ordered_methods(methods):
        last = entry.get("last")
        if not isinstance(last, Mapping):
            continue
        label = entry.get("label") or name
        rows.append([label, "best FID", _int_cell(entry.get("iteration")), *_metric_cells(entry)])
        rows.append([label, "last", _int_cell(last.get("iteration")), *_metric_cells(last)])
    if not rows:
        return None
    return Table(["method", "checkpoint", "iteration", *[h for _, h, _, _ in METRICS]], rows)


# --------------------------------------------------------------------------- sections


def _metrics_sections(metrics: dict[str, Any] | None, metrics_path: Path) -> list[Section]:
    results = Section("Results")
    history = Section("Best-FID vs last iteration")
    if metrics is None or not metrics.get("methods"):
        why = "missing" if metrics is None else "has no methods"
        results.blocks.append(f"{NOT_RUN} ({metrics_path} {why}).")
        history.blocks.append(f"{NOT_RUN}.")
        return [results, history]
    methods = metrics["methods"]
    features = sorted({str(e.get("features")) for e in methods.values() if e.get("features")})
    results.blocks.append(
        "FID/KID/precision/recall are only comparable between rows with the same `features` "
        f"network (here: {', '.join(features) or 'not recorded'}). "
        f"{MISSING_CELL} = not computed for that method."
    )
    results.blocks.append(metrics_table(methods))
    results.blocks.append(DEFINITIONS)
    table = best_last_table(methods)
    history.blocks.append(
        table if table is not None else f"{NOT_RUN} (no 'last' figures in {metrics_path})."
    )
    return [results, history]


def _ours_ratio(methods: Mapping[str, Any]) -> str:
    """Our fine-tuned/SBIR FID ratio: the one figure loosely comparable with the paper's."""
    candidates = [e for n, e in _ordered_methods(methods) if method_role(n, e) == "method"]
    ours = (methods.get("finetuned") or (candidates[0] if candidates else {})).get("fid")
    sbir = (methods.get("sbir") or {}).get("fid")
    if ours is None or not sbir:
        return f"Ours, fine-tuned / SBIR FID ratio: {NOT_RUN} (needs both FIDs)."
    return (
        f"Ours (embedded world): fine-tuned FID {ours:.2f} / SBIR FID {sbir:.2f} = "
        f"{ours / sbir:.2f}."
    )


def paper_section(metrics: dict[str, Any] | None) -> Section:
    """The paper's FIDs, kept apart: different data, resolution and features than ours."""
    section = Section("Paper numbers (not comparable)")
    section.blocks.append(
        "FID on LSUN 256 px, 2,500 vs 2,500, Inception features, best-FID iteration, as quoted "
        "by a public reproduction. Our runs use a small embedded world and "
        "(often) a different feature network, so absolute values must not be compared; only the "
        "method/SBIR ratio is a loose sanity check."
    )
    rows = []
    for name, sbir, ours in PAPER_FID:
        ratio = f"{ours / sbir:.2f}" if sbir and isinstance(ours, float) else MISSING_CELL
        rows.append(
            [
                name,
                _fmt(sbir, "{:.2f}"),
                _fmt(ours, "{:.2f}") if isinstance(ours, float) else ours,
                ratio,
            ]
        )
    section.blocks.append(Table(["sketch set", "SBIR FID", "GANSketching FID", "ratio"], rows))
    section.blocks.append(_ours_ratio((metrics or {}).get("methods") or {}))
    return section


def _image_section(
    title: str, images: Mapping[str, Any] | None, fig_dir: Path, what: str
) -> Section:
    section = Section(title)
    if not images:
        section.blocks.append(f"{NOT_RUN} (no {what} given).")
        return section
    for caption, src in images.items():
        path = image_for_report(src, fig_dir / f"{_slug(title)}_{_slug(caption)}.png")
        if path is None:
            section.blocks.append(f"{caption}: {NOT_RUN} ({src} missing).")
        else:
            section.blocks.append(ImageBlock(caption, path))
    return section


def _curves_section(losses: Mapping[str, Any] | None, history: Any, fig_dir: Path) -> Section:
    section = Section("Training curves")
    if history:
        path = plot_fid_history(history, fig_dir / "fid_history.png")
        if path is not None:
            section.blocks.append(ImageBlock("FID during training", path))
    if not losses:
        section.blocks.append(f"{NOT_RUN} (no losses.csv given).")
        return section
    for label, csv in losses.items():
        path = plot_training_curves(csv, fig_dir / f"curves_{_slug(label)}.png", label)
        if path is None:
            section.blocks.append(f"{label}: {NOT_RUN} ({_shown(csv)} missing or empty).")
        else:
            section.blocks.append(ImageBlock(f"{label} losses ({_shown(csv)})", path))
    return section


def _shown(path: Any) -> str:
    """A path as the reader of the report knows it: relative to the project, not to the clone
    it happened to be rendered in."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _timings_section(timings: Any) -> Section:
    section = Section("Timings per stage")
    if isinstance(timings, (str, os.PathLike)):
        timings = _read_json_mapping(Path(timings), "a JSON mapping of stage -> seconds")
    if not timings:
        section.blocks.append(f"{NOT_RUN} (no timings recorded).")
        return section
    rows = []
    for stage, value in timings.items():
        seconds = value.get("seconds") if isinstance(value, Mapping) else value
        seconds = _check_number(seconds, f"timings.{stage}")
        clock = MISSING_CELL if seconds is None else str(_dt.timedelta(seconds=round(seconds)))
        rows.append([str(stage), _fmt(seconds, "{:.1f}"), clock])
    section.blocks.append(Table(["stage", "seconds", "h:mm:ss"], rows))
    return section


def _read_json_mapping(path: Path, layout: str) -> dict[str, Any] | None:
    """A JSON object from ``path`` (None when absent); anything else is one line naming the
    file and the ``layout`` it should have."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SketchganError(f"{path}: not valid JSON ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise SketchganError(f"{path}: expected {layout}")
    return data


def _run_section(metrics: dict[str, Any] | None, context: Mapping[str, Any]) -> Section:
    section = Section("Run")
    meta = (metrics or {}).get("meta", {})
    machine = context.get("machine") or meta.get("machine")
    where = (
        "as recorded by the evaluation"
        if machine
        else "the one rendering this report (the evaluation recorded none)"
    )
    machine = dict(machine or machine_info())
    rows = [
        ["git commit", str(context.get("git_commit") or git_commit())],
        ["date", str(context.get("date") or _now())],
    ]
    rows += [[f"machine: {k}", str(v)] for k, v in machine.items()]
    skip = {"timings", "fid_history", "machine"}
    rows += [
        [str(k), str(v)]
        for k, v in meta.items()
        if k not in skip and not isinstance(v, (dict, list))
    ]
    section.blocks.append(f"Machine: {where}.")
    section.blocks.append(Table(["item", "value"], rows))
    return section


# --------------------------------------------------------------------------- provenance


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch version and device of the current machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": device,
        "python": platform.python_version(),
    }


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """HEAD commit (+ "dirty" with uncommitted tracked changes); read-only git calls only."""
    cwd = Path(cwd) if cwd is not None else repo_root()
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return "unknown (no commit yet)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    suffix = " (dirty)" if dirty.stdout.strip() else ""
    return head.stdout.strip() + suffix


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- images and plots


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_") or "image"


def folder_grid(
    folder: str | os.PathLike, path: str | os.PathLike, n: int = 16, nrow: int = 8
) -> Path:
    """Tile the first ``n`` images of a folder (resized to the first one's size) into a PNG."""
    files = list_images(folder)[:n]
    first = open_image(files[0]).convert("RGB")
    arrays = [np.asarray(first)]
    for file in files[1:]:
        img = open_image(file).convert("RGB")
        arrays.append(np.asarray(img if img.size == first.size else img.resize(first.size)))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    save_png(make_grid(batch, nrow=nrow), path)
    return Path(path)


def image_for_report(src: str | os.PathLike, grid_path: Path) -> Path | None:
    """An image file as is, a folder as a grid written to ``grid_path``; ``None`` if missing."""
    src = Path(src)
    if src.is_dir():
        return folder_grid(src, grid_path)
    if src.is_file():
        open_image(src)  # a broken file is a user error, not a silently blank figure
        return src
    return None


def _x_column(frame: pd.DataFrame) -> str | None:
    for name in ("iteration", "iter", "step", "kimg", "epoch"):
        if name in frame.columns:
            return name
    return None


def curve_columns(frame: pd.DataFrame) -> tuple[str | None, list[str]]:
    """The x column and the panels of a loss log: numeric columns with at least one value (a
    term the run never computed is blank in every row and gets no empty panel)."""
    x_name = _x_column(frame)
    numeric = frame.dropna(axis=1, how="all").select_dtypes("number").columns
    return x_name, [c for c in numeric if c != x_name]


def plot_training_curves(
    csv: str | os.PathLike, path: str | os.PathLike, title: str = ""
) -> Path | None:
    """One panel per numeric column of a losses CSV (raw + moving average); ``None`` if empty."""
    csv = Path(csv)
    if not csv.is_file():
        return None
    try:
        frame = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        if isinstance(exc, pd.errors.EmptyDataError):
            return None
        raise SketchganError(f"{csv}: not a readable CSV ({exc.__class__.__name__})") from exc
    x_name, columns = curve_columns(frame)
    if frame.empty or not columns:
        return None
    x = frame[x_name] if x_name else pd.Series(range(len(frame)))
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = Figure(figsize=(4 * ncols, 2.8 * nrows), dpi=100)
    for i, column in enumerate(columns):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _plot_series(ax, x, frame[column])
        ax.set_title(column, fontsize=9)
        ax.set_xlabel(x_name or "row", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)


def _plot_series(ax: Any, x: pd.Series, y: pd.Series) -> None:
    mask = y.notna()
    x, y = x[mask], y[mask]
    if len(y) <= 50:
        ax.plot(x, y, marker="o", markersize=3, linewidth=1)
        return
    ax.plot(x, y, linewidth=0.6, alpha=0.35)
    window = max(2, len(y) // 50)
    ax.plot(x, y.rolling(window, min_periods=1).mean(), linewidth=1.2)


def plot_fid_history(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """FID at each evaluation during training, best one marked (why best != last matters)."""
    points = [(p.get("iteration"), p.get("fid")) for p in history if isinstance(p, Mapping)]
    points = [(int(i), float(f)) for i, f in points if i is not None and f is not None]
    if not points:
        return None
    its, fids = zip(*sorted(points), strict=True)
    best = int(np.argmin(fids))
    fig = Figure(figsize=(5, 3), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(its, fids, marker="o", markersize=3)
    ax.scatter([its[best]], [fids[best]], color="red", zorder=3, label=f"best {fids[best]:.2f}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("FID")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


def _save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


# --------------------------------------------------------------------------- renderers


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: Sequence[Section], md_dir: Path) -> str:
    """Markdown with images linked relative to the report's folder."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            elif isinstance(block, ImageBlock):
                rel = Path(os.path.relpath(block.path.resolve(), md_dir.resolve())).as_posix()
                lines.append(f"![{_md_cell(block.caption)}]({rel})")
                lines.append(f"*{block.caption}*")
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}"
    "figure{margin:1em 0}img{max-width:100%;image-rendering:pixelated;min-width:256px}"
    "figcaption{font-size:.85em;color:#555}"
)


def _data_uri(path: Path) -> str:
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_block(block: str | Table | ImageBlock) -> str:
    esc = html.escape
    if isinstance(block, Table):
        head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, ImageBlock):
        return (
            f'<figure><img alt="{esc(block.caption)}" src="{_data_uri(block.path)}">'
            f"<figcaption>{esc(block.caption)}</figcaption></figure>"
        )
    text = esc(block)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return f"<p>{text}</p>"


def to_html(title: str, sections: Sequence[Section]) -> str:
    """One self-contained page: inline CSS, images as data URIs, no external resource."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _convert_for_html(sections: Sequence[Section], fig_dir: Path) -> None:
    """Re-encode non PNG/JPEG images (e.g. BMP, WebP) as PNG so every browser shows them."""
    for section in sections:
        for block in section.blocks:
            if isinstance(block, ImageBlock) and block.path.suffix.lower() not in (
                ".png",
                ".jpg",
                ".jpeg",
            ):
                target = fig_dir / f"{_slug(section.title)}_{_slug(block.caption)}.png"
                save_png(np.asarray(open_image(block.path).convert("RGB")), target)
                block.path = target


# --------------------------------------------------------------------------- entry point


def build_sections(
    metrics_path: str | os.PathLike, context: Mapping[str, Any], fig_dir: Path
) -> list[Section]:
    """All report sections, in reading order (figures are written into ``fig_dir``)."""
    metrics_path = Path(metrics_path)
    metrics = load_metrics(metrics_path)
    meta = (metrics or {}).get("meta", {})
    sketches = context.get("sketches")
    sections = _metrics_sections(metrics, metrics_path)
    sections.append(paper_section(metrics))
    sections.append(
        _image_section(
            "User sketches", {"user sketches": sketches} if sketches else None, fig_dir, "sketches"
        )
    )
    sections.append(_image_section("Sample grids", context.get("grids"), fig_dir, "grids"))
    sections.append(
        _image_section(
            "Other figures", context.get("figures"), fig_dir, "interpolation/GANSpace figures"
        )
    )
    sections.append(_curves_section(context.get("losses"), meta.get("fid_history"), fig_dir))
    sections.append(_timings_section(context.get("timings") or meta.get("timings")))
    sections.append(_run_section(metrics, context))
    _convert_for_html(sections, fig_dir)
    return sections


def render_report(
    metrics_path: str | os.PathLike,
    out_md: str | os.PathLike,
    out_html: str | os.PathLike,
    context: Mapping[str, Any] | None = None,
) -> None:
    """Write the Markdown and the self-contained HTML benchmark report (atomically)."""
    context = dict(context or {})
    out_md, out_html = Path(out_md), Path(out_html)
    fig_dir = Path(context.get("figures_dir") or out_md.parent / "figures")
    fig_dir.mkdir(parents=True, exist_ok=True)
    title = str(context.get("title") or "sketchgan benchmark")
    sections = build_sections(metrics_path, context, fig_dir)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_md, to_markdown(title, sections, out_md.parent))
    write_text(out_html, to_html(title, sections))


# --------------------------------------------------------------------------- comparison panel

PANEL_PAD = 2
PANEL_LABEL_WIDTH = 150


def panel_tile_origin(row: int, col: int, size: int, zoom: int = 4) -> tuple[int, int]:
    """Pixel (x, y) of the top-left corner of tile (row, col) in :func:`comparison_panel`."""
    step = size * zoom + PANEL_PAD
    return PANEL_LABEL_WIDTH + PANEL_PAD + col * step, PANEL_PAD + row * step


def comparison_panel(
    rows: Sequence[tuple[str, torch.Tensor]], path: str | os.PathLike, zoom: int = 4
) -> Path:
    """One labelled picture of several image rows, each enlarged ``zoom`` x (nearest neighbour).

    At 32 px a shape is a few dozen pixels; a reader judges "does it follow the sketch" only
    when every pixel stays a crisp block, so no smoothing is applied. ``rows``: (label, images in
    [-1, 1], (N, 1 or 3, H, W)); grey rows are shown as RGB.
    """
    from PIL import Image, ImageDraw

    if not rows:
        raise SketchganError("comparison_panel: no rows")
    size = int(rows[0][1].shape[-1])
    ncol = max(int(images.shape[0]) for _, images in rows)
    width = panel_tile_origin(0, ncol, size, zoom)[0]
    height = panel_tile_origin(len(rows), 0, size, zoom)[1]
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        x0, y0 = panel_tile_origin(r, 0, size, zoom)
        draw.text((6, y0 + size * zoom // 2 - 6), label, fill=(0, 0, 0))
        rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        arr = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        for c, tile in enumerate(arr.numpy()):
            big = Image.fromarray(tile).resize((size * zoom,) * 2, Image.Resampling.NEAREST)
            canvas.paste(big, panel_tile_origin(r, c, size, zoom))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out
