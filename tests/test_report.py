"""Benchmark report: tables from metrics.json, self-contained HTML, "not run" for missing parts."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sketchgan import report
from sketchgan.errors import SketchganError
from sketchgan.report import PAPER_FID, git_commit, load_metrics, render_report

OPTIONAL_SECTIONS = (
    "User sketches",
    "Sample grids",
    "Other figures",
    "Training curves",
    "Timings per stage",
)


def _entry(fid: float, **extra) -> dict:
    return {
        "fid": fid,
        "kid": fid / 1000,
        "precision": 0.5,
        "recall": 0.25,
        "chamfer": 0.125,
        "target_match": 0.75,
        "n_gen": 64,
        "n_ref": 80,
        "features": "world-evaluator",
        **extra,
    }


def _metrics() -> dict:
    return {
        "methods": {
            "sbir": _entry(30.0),
            "original": _entry(40.0, shape_match=0.05, target_match=0.1),
            "ablation_wreg": _entry(25.0, chamfer=None),
            "finetuned": _entry(
                20.0, iteration=500, checkpoint="best", last={**_entry(27.5), "iteration": 1000}
            ),
            "chamfer": _entry(35.0),
        },
        "meta": {
            "world": "toy",
            "seed": 7,
            "timings": {"train": 3723.4, "sample": 12.0},
            "fid_history": [{"iteration": 500, "fid": 20.0}, {"iteration": 1000, "fid": 27.5}],
        },
    }


def _write_png(path: Path, value: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (16, 16, 3) if mode == "RGB" else (16, 16)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def _inputs(tmp_path: Path) -> tuple[Path, dict]:
    metrics = tmp_path / "reports" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps(_metrics()))
    for i in range(3):
        _write_png(tmp_path / "sketches" / f"{i:06d}.png", 255 - 40 * i, mode="L")
    _write_png(tmp_path / "grid_original.png", 100)
    _write_png(tmp_path / "samples" / "finetuned" / "000000.png", 200)
    losses = tmp_path / "losses.csv"
    rows = ["iteration,g_sketch,d_sketch,fid"]
    rows += [
        f"{i},{1 + np.sin(i):.4f},{0.5 + 0.01 * i},{'' if i % 20 else 30 - i / 10}"
        for i in range(80)
    ]
    losses.write_text("\n".join(rows) + "\n")
    context = {
        "sketches": tmp_path / "sketches",
        "grids": {
            "original": tmp_path / "grid_original.png",
            "fine-tuned": tmp_path / "samples" / "finetuned",
            "sbir": tmp_path / "missing_dir",
        },
        "losses": {"finetune": losses},
        "git_commit": "abc123",
        "date": "2024-01-01T00:00:00+00:00",
    }
    return metrics, context


def _table_rows(md: str, header_start: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_report_tables_and_self_contained_html(tmp_path: Path) -> None:
    metrics, context = _inputs(tmp_path)
    out_md, out_html = (
        tmp_path / "reports" / "benchmark.md",
        tmp_path / "reports" / "benchmark.html",
    )
    render_report(metrics, out_md, out_html, context)
    md, page = out_md.read_text(), out_html.read_text()

    rows = _table_rows(md, "| method | role | FID")
    assert [r[0] for r in rows] == [
        "finetuned (best)",
        "original",
        "chamfer",
        "sbir",
        "ablation_wreg",
    ]
    assert rows[0][1:4] == ["method", "20.00", "0.0200"]
    assert rows[0][-4:] == ["64", "80", "world-evaluator", "500"]
    assert rows[4][6] == "—"  # the ablation's chamfer is null
    assert rows[1][7:9] == ["0.050", "0.100"]  # shape match, target match
    assert rows[2][7] == "—"  # no shape match given

    best_last = _table_rows(md, "| method | checkpoint | iteration")
    assert [r[1:4] for r in best_last] == [["best FID", "500", "20.00"], ["last", "1000", "27.50"]]

    paper = _section(md, "Paper numbers (not comparable)")
    for name, sbir, ours in PAPER_FID:
        assert name in paper and (sbir is None or f"{sbir:.2f}" in paper)
        assert (f"{ours:.2f}" if isinstance(ours, float) else ours) in paper
    assert "0.61" in paper  # standing cat: 36.73 / 59.86
    assert "20.00 / SBIR FID 30.00 = 0.67" in paper

    timings = _table_rows(md, "| stage | seconds")
    assert timings == [["train", "3723.4", "1:02:03"], ["sample", "12.0", "0:00:12"]]
    run = _section(md, "Run")
    assert "abc123" in run and "2024-01-01" in run and "| seed | 7 |" in run
    assert "torch" in run and "cores" in run
    assert "sbir: not run" in _section(md, "Sample grids")
    assert "not run" in _section(md, "Other figures")
    assert "not run" not in _section(md, "Training curves")

    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out_md.parent / link).is_file(), link
    assert "http://" not in page and "https://" not in page and "<script" not in page
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # sketches, 2 grids, FID history, loss curves
    assert len(uris) == 5 and len(re.findall(r"<img ", page)) == 5
    curves = Image.open(io.BytesIO(base64.b64decode(uris[-1])))
    assert curves.size[0] > 300
    assert (
        page.count("<tr>")
        == len(rows) + len(best_last) + 4 + 2 + len(_table_rows(md, "| item | value")) + 5
    )  # + one header row per table


def test_missing_inputs_say_not_run(tmp_path: Path) -> None:
    out_md, out_html = tmp_path / "benchmark.md", tmp_path / "benchmark.html"
    render_report(tmp_path / "nope.json", out_md, out_html, {})
    md, page = out_md.read_text(), out_html.read_text()
    for title in ("Results", "Best-FID vs last iteration", *OPTIONAL_SECTIONS):
        assert _section(md, title).strip().startswith("not run"), title
    assert "36.73" in md and "not run" in _section(md, "Paper numbers (not comparable)")
    assert "<img" not in page and "not run" in page


def test_empty_losses_and_partial_metrics(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"methods": {"original": {"fid": None, "n": 10}}}))
    (tmp_path / "losses.csv").write_text("iteration,g_sketch\n")
    render_report(
        metrics,
        tmp_path / "b.md",
        tmp_path / "b.html",
        {"losses": {"finetune": tmp_path / "losses.csv"}},
    )
    md = (tmp_path / "b.md").read_text()
    rows = _table_rows(md, "| method | role | FID")
    assert rows == [["original", "original", *["—"] * 8, "10", "—", "—", "—"]]
    assert "finetune: not run" in _section(md, "Training curves")
    assert _section(md, "Best-FID vs last iteration").strip().startswith("not run")


def test_bad_metrics_file_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    with pytest.raises(SketchganError, match="metrics.json: not valid JSON"):
        load_metrics(bad)
    bad.write_text(json.dumps({"methods": {"finetuned": {"fid": "low"}}}))
    with pytest.raises(SketchganError, match=r"methods\.finetuned\.fid must be a number"):
        render_report(bad, tmp_path / "b.md", tmp_path / "b.html")
    assert not (tmp_path / "b.md").exists()


def test_git_commit_outside_a_repository(tmp_path: Path) -> None:
    assert git_commit(tmp_path).startswith("unknown")


def test_flat_metrics_are_the_headline_numbers_one_level_and_narrow():
    from sketchgan.report import flat_metrics

    full = {
        "fid": 12.5,
        "kid": 0.0012345678,
        "precision": 0.5,
        "recall": 0.75,
        "chamfer": 1.9,
        "shape_match": 0.3,
        "target_match": 0.2,
        "colour_spread": 0.44,
        "iteration": 200,
        "features": "x",
        "last": {"fid": 13.0},
    }
    evaluation = {
        "methods": {
            "finetuned": full,
            "original": dict(full),
            "chamfer": dict(full),
            "sbir": {**full, "fid": None},
            "my_variant": dict(full),
        },
        "meta": {"timings": {"train": 3.0}},
    }
    flat = flat_metrics(evaluation)
    assert flat == {
        "ours.fid": 12.5,
        "ours.target": 0.2,
        "ours.shape": 0.3,
        "ours.recall": 0.75,
        "ours.colour": 0.44,
        "orig.fid": 12.5,
        "orig.recall": 0.75,
        "chamfer.fid": 12.5,
        "my_variant.fid": 12.5,
    }
    # `dvc metrics show` prints one row: the path, then a column per key (at least 6 wide for
    # the value, two spaces apart); the four methods' headline must fit 160 columns
    shown = {k: v for k, v in flat.items() if not k.startswith("my_variant")}
    shown["sbir.fid"] = 300.0
    width = len("reports/metrics.json") + sum(max(len(k), 7) + 2 for k in shown)
    assert width <= 160, width


def test_training_curves_skip_terms_a_run_never_computed(tmp_path):
    """A loss log has fixed columns; a term the objective did not compute is blank in every row
    (not 0) and gets no empty panel."""
    csv = tmp_path / "losses.csv"
    csv.write_text("step,d_sketch_real,g_weight,r1_sketch,seconds\n3,0.7,,0.1,1\n6,0.6,,,2\n")
    columns = ["d_sketch_real", "r1_sketch", "seconds"]
    assert report.curve_columns(pd.read_csv(csv)) == ("step", columns)
    out = report.plot_training_curves(csv, tmp_path / "curves.png")
    assert out is not None and out.is_file()
    csv.write_text("step,g_weight\n3,\n")
    assert report.plot_training_curves(csv, tmp_path / "none.png") is None
