"""kill -9 during ``sketchgan train`` (the short version of ``reports/kill9.py``): every killed
process resumes, and the end result equals a run that was never interrupted.

Slow (~80 s on 2 cores): the upstream stages once, a reference run, three killed processes (one
aimed at a checkpoint write) and the finishing one, each a fresh ``sketchgan train``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, tiny_params


def _kill9():
    spec = importlib.util.spec_from_file_location("kill9", ROOT / "reports/kill9.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill9"] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path: Path, monkeypatch) -> None:
    for key in ("DVC_ROOT", "DVC_STAGE", "MLFLOW_TRACKING_URI", "SKETCHGAN_PIPELINE_RUN"):
        monkeypatch.delenv(key, raising=False)
    params = tiny_params()
    every = 4
    params["train"].update(
        iters=40, checkpoint_every=every, log_every=1, eval_every=20, sample_every=20
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    kill9 = _kill9()
    out = kill9.measure(tmp_path, "train", kills=3, seed=0)

    assert [k.aimed_at_write for k in out.kills] == [False, False, True]
    assert out.same_weights, "final weights differ from the uninterrupted run"
    assert out.same_losses, "losses.csv differs from the uninterrupted run"
    assert out.same_mlflow, "the finishing MLflow run's metric history differs"
    assert out.temp_files_left == 0
    # at most one checkpoint interval lost per kill
    assert all(k.lost is None or k.lost <= every for k in out.kills), out.kills
    # every process that got as far as its MLflow run and was killed is marked so
    assert out.runs_running == 0 and out.runs_killed >= 1
    md = kill9.markdown(out, "pytest")
    assert "| 3 |" in md and "identical to the uninterrupted run: **True**" in md
