"""End-to-end: real ``dvc repro`` runs of stages that use sketchgan.tracking (slow: ~4 processes
importing MLflow, 20-70 s depending on machine load)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sketchgan import provenance as prov
from sketchgan import tracking as tr

_ENV = (
    "MLFLOW_TRACKING_URI",
    prov.ENV_PIPELINE_RUN,
    "DVC_STAGE",
    "DVC_ROOT",
    "DVC_EXP_NAME",
    "DVC_EXP_BASELINE_REV",
)


@pytest.fixture()
def restore_tracking() -> Iterator[None]:
    saved = dict(tr._state)
    yield
    tr._state.update(saved)
    if saved["uri"] is not None:
        tr.configure(uri=saved["uri"])


def client():
    import mlflow

    return mlflow.MlflowClient()


def runs_tagged(key: str, value: str) -> list:
    exps = [e.experiment_id for e in client().search_experiments()]
    return client().search_runs(exps, filter_string=f"tags.`{key}` = '{value}'")


STAGE_SCRIPT = """
import sys
from sketchgan import tracking as tr
with tr.stage_run(sys.argv[1], {"p": 1}):
    tr.log_step_metrics({"x": 1.0}, 0)
open(sys.argv[1] + ".out", "w").write("done")
"""

DVC_YAML = """
stages:
  first:
    cmd: {py} stage.py first
    deps: [stage.py]
    params: [p]
    outs: [first.out]
  second:
    cmd: {py} stage.py second
    deps: [first.out]
    outs: [second.out]
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dvc_repro_groups_stages_and_tags_stage_hash(tmp_path: Path, restore_tracking) -> None:
    """Two ``dvc repro`` executions: stages nest per execution; stage_md5 matches dvc.lock."""
    repo = tmp_path / "repo"
    repo.mkdir()
    dvc = str(Path(sys.executable).with_name("dvc"))
    (repo / "stage.py").write_text(STAGE_SCRIPT)
    (repo / "params.yaml").write_text("p: 1\n")
    (repo / "dvc.yaml").write_text(DVC_YAML.format(py=sys.executable))
    env = {k: v for k, v in os.environ.items() if k not in _ENV}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, timeout=120)

    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    sh(dvc, "config", "core.analytics", "false")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    sh(dvc, "repro")
    sh(dvc, "repro", "-f", "first")  # a second execution: must get its own parent
    tr.configure(uri=f"sqlite:///{(repo / 'mlflow.db').resolve()}")
    stage_runs = runs_tagged("dvc.stage", "first") + runs_tagged("dvc.stage", "second")
    expected_md5 = {name: prov.lock_fingerprint(repo, name) for name in ("first", "second")}
    assert None not in expected_md5.values() and len(set(expected_md5.values())) == 2
    by_parent: dict[str, set[str]] = {}
    for run in stage_runs:
        by_parent.setdefault(run.data.tags["mlflow.parentRunId"], set()).add(
            run.data.tags["dvc.stage"]
        )
        assert run.data.tags["git.commit"] and run.info.status == "FINISHED"
        assert run.data.tags["dvc.stage_md5"] == expected_md5[run.data.tags["dvc.stage"]]
    assert sorted(by_parent.values(), key=len) == [{"first"}, {"first", "second"}]
    experiment = client().get_experiment(stage_runs[0].info.experiment_id)
    assert experiment.artifact_location == (repo / "mlartifacts" / "sketchgan-first").as_uri()
    assert not (repo / "mlruns").exists()
