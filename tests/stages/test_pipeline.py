"""The whole mission in-process on a tiny world: every stage, MLflow, metrics and report."""

from __future__ import annotations

import importlib
import json
import math
import sqlite3

import numpy as np
import pytest
from PIL import Image

from sketchgan.report import panel_tile_origin

STAGES = (
    "prepare",
    "pretrain",
    "photosketch",
    "train",
    "sample",
    "baselines",
    "evaluate",
    "report",
)


@pytest.mark.slow
def test_all_stages_end_to_end(tiny_project):
    root, params = tiny_project
    for name in STAGES:
        importlib.import_module(f"stages.{name}").run(params)

    metrics = json.loads((root / "reports/evaluation.json").read_text())
    flat = json.loads((root / "reports/metrics.json").read_text())
    assert flat and all(isinstance(v, (int, float)) for v in flat.values())
    assert flat["ours.fid"] == pytest.approx(metrics["methods"]["finetuned"]["fid"])
    assert set(metrics["methods"]) == {"finetuned", "original", "chamfer", "sbir"}
    for name, m in metrics["methods"].items():
        assert m["n_gen"] == 50, name
        assert m["n_ref"] == 60, name
        for key in ("fid", "kid", "precision", "recall", "chamfer", "target_match"):
            assert math.isfinite(m[key]), (name, key)
        assert m["features"] == "world-evaluator"
    assert metrics["methods"]["finetuned"]["last"]["iteration"] == 6
    assert [h["iteration"] for h in metrics["meta"]["fid_history"]] == [3, 6]

    assert len(list((root / "outputs/samples/finetuned").glob("*.png"))) == 50
    assert len(list((root / "outputs/baselines/chamfer").glob("*.png"))) == 50
    md = (root / "reports/benchmark.md").read_text()
    assert "Chamfer-matching baseline" in md and "SBIR baseline" in md
    html = (root / "reports/benchmark.html").read_text()
    assert "data:image/png;base64" in html and "http://" not in html
    assert (root / "reports/figures/readme.png").is_file()
    for stage in STAGES:
        assert json.loads((root / f"reports/stages/{stage}.json").read_text())["seconds"] > 0

    db = sqlite3.connect(root / "mlflow.db")
    names = {r[0] for r in db.execute("select name from experiments")}
    assert {f"sketchgan-{s}" for s in STAGES} <= names
    models = {r[0] for r in db.execute("select name from registered_models")}
    assert {"sketchgan-finetuned-generator", "sketchgan-pretrained-generator"} <= models
    finished = db.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0]
    assert finished >= len(STAGES)
    # evaluation metrics were attached to the run that trained the fine-tuned model
    run_id = json.loads((root / "models/finetuned/mlflow_run.json").read_text())["run_id"]
    keys = {r[0] for r in db.execute("select key from metrics where run_uuid = ?", (run_id,))}
    assert {"eval.fid", "eval.target_match"} <= keys

    champion = _champion(root)
    assert champion.run_id == run_id and champion.description.startswith("GANSketching")
    assert champion.tags["source_run"] == run_id and champion.tags["default_settings"] == "True"
    _cli_generate_from_the_registry(root)

    # a second train with the same params resumes the finished run instead of retraining
    summary = importlib.import_module("stages.train").run(params)
    assert summary["resumed_from"] == 6
    _cli_train_fewer_iterations_is_refused_then_fresh(root, params)
    assert _champion(root).version == champion.version  # overrides never take the alias
    # what picks the best checkpoint is part of the run: another eval_samples is another run
    changed = {**params, "train": {**params["train"], "eval_samples": 30}}
    summary = importlib.import_module("stages.train").run(changed)
    assert summary["resumed_from"] == 0
    assert (root / "data/photo_sketches/README.txt").is_file()

    # sketches made from the user's photos (the paper's "photosketch" sets) feed training
    params["photosketch"]["user_photos"] = "data/eval/images"
    summary = importlib.import_module("stages.photosketch").run(params)
    assert summary["user_photos"]["photos"] == 60
    assert len(list((root / "data/photo_sketches").glob("*.png"))) == 60
    params["train"]["iters"] = 2
    summary = importlib.import_module("stages.train").run(params)
    assert summary["steps"] == 2 and summary["resumed_from"] == 0
    # ... and every later stage measures against those same sketches (one shared folder choice).
    # The tiny sketch net draws blank pages, so stand in upside-down copies of the user sketches.
    photo_dir = root / "data/photo_sketches"
    for path in photo_dir.glob("*.png"):
        path.unlink()
    for i, src in enumerate(sorted((root / "data/sketches/images").glob("*.png"))):
        Image.open(src).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(photo_dir / f"{i:04d}.png")
    figure = root / "reports/figures/readme.png"  # its top row shows the sketches
    before = figure.read_bytes()
    for name in ("baselines", "evaluate", "report"):
        importlib.import_module(f"stages.{name}").run(params)
    assert figure.read_bytes() != before
    first = np.asarray(Image.open(photo_dir / "0000.png").convert("L")).astype(int)
    h, w = first.shape
    x0, y0 = panel_tile_origin(0, 0, w, zoom=4)  # 4x nearest-neighbour blocks
    tile = np.asarray(Image.open(figure).convert("L"))[y0 : y0 + 4 * h : 4, x0 : x0 + 4 * w : 4]
    assert np.abs(tile - first).max() <= 1


def _cli_train_fewer_iterations_is_refused_then_fresh(root, params):
    """`sketchgan train --iters 4` after a 6-iteration run: one line naming the field and
    --fresh, nothing removed; with --fresh it starts over."""
    import yaml
    from typer.testing import CliRunner

    from sketchgan.cli import app

    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = sorted(p.name for p in (root / "models/finetuned").iterdir())
    runner = CliRunner()
    refused = runner.invoke(app, ["train", "--iters", "4"])
    assert refused.exit_code == 2
    message = refused.output.strip()
    assert "\n" not in message and "'train.iters'" in message and "--fresh" in message
    assert sorted(p.name for p in (root / "models/finetuned").iterdir()) == before
    fresh = runner.invoke(app, ["train", "--iters", "4", "--fresh"])
    assert fresh.exit_code == 0, fresh.output
    selection = json.loads((root / "models/finetuned/selection.json").read_text())
    assert selection["last_step"] == 4
    restored = runner.invoke(app, ["train", "--fresh"])  # back to the params' 6 iterations
    assert restored.exit_code == 0, restored.output


def _champion(root):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return client.get_model_version_by_alias("sketchgan-finetuned-generator", "champion")


def _cli_generate_from_the_registry(root):
    from typer.testing import CliRunner

    from sketchgan.cli import app

    uri = "models:/sketchgan-finetuned-generator@champion"
    out = CliRunner().invoke(app, ["generate", "--checkpoint", uri, "--n", "3", "--out", "gen"])
    assert out.exit_code == 0, out.output
    assert len(list((root / "gen").glob("*.png"))) >= 3
    missing = CliRunner().invoke(
        app, ["generate", "--checkpoint", "models:/no-such-model@champion", "--out", "g2"]
    )
    assert missing.exit_code == 2 and "not in the model registry" in missing.output
