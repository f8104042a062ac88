"""Shared fixtures: a tiny parameter set that runs the whole pipeline in about a minute."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def repo_params() -> dict:
    """The project's params.yaml: the only place a setting has its default."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params() -> dict:
    """params.yaml scaled down to 16 px and a handful of iterations per stage."""
    p = copy.deepcopy(repo_params())
    p["device"] = "cpu"
    p["checkpoints"].update(source="train")  # pretrain it yourself, tiny (the zoo is 32 px)
    p["prepare"].update(size=16, n_pretrain=200, n_image_reg=40, n_eval=60, n_sketches=4)
    p["pretrain"].update(
        style_dim=32,
        channel_max=16,
        iterations=6,
        batch_size=8,
        sample_every=3,
        checkpoint_every=3,
    )
    p["pretrain_sketch"].update(ngf=4, n_blocks=2, iterations=4, batch_size=4)
    p["evaluator"].update(n_train=200, iters=5, batch=32, width=8)
    p["photosketch"].update(pool_size=100)
    p["train"].update(
        iters=6, checkpoint_every=3, sample_every=3, eval_every=3, eval_samples=40, log_every=2
    )
    p["sample"].update(n=50)
    p["visualise"].update(grid_n=8, interp_steps=3, ganspace_samples=200)
    p["baselines"].update(top_n=50, sbir_iters=5, sbir_batch=16)
    p["evaluate"].update(kid_subset_size=20)
    p["studio"].update(
        iters=3, sample_every=1, log_every=1, n_reg_images=8, grid_seeds=4, ganspace_samples=200
    )
    return p


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module, restored afterwards: the nets in the tests are tiny,
    and on a shared 2-core machine two OpenMP threads only spin-wait (runs up to 30x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """An empty project folder with tiny params.yaml; stages resolve paths against it."""
    params = tiny_params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path, params


def shared_fixtures() -> Path:
    """``../shared/fixtures/reference`` beside the checkout (CI clones main with shared/ beside
    it); ``SKETCHGAN_SHARED`` overrides the shared folder."""
    import os

    shared = Path(os.environ.get("SKETCHGAN_SHARED", ROOT.parent / "shared"))
    return shared / "fixtures" / "reference"
