"""DVC experiments in every mode on a tiny copy of the project: ``dvc exp run --queue`` + ``dvc
queue start -j 2``, ``--temp``, ``exp show --only-changed`` and ``exp apply``. Each must leave the
workspace alone and log to the workspace's MLflow store (the one ``sketchgan ui`` shows).

Slow (~2-3 minutes on 2 cores): a real ``dvc repro`` of prepare -> train, then three experiments of
the train stage, each a handful of 16 px iterations.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, tiny_params

#: the stages up to fine-tuning: enough to run the train stage in an experiment, and a pipeline
#: DVC can check out completely (``exp apply`` checks out every stage of dvc.yaml)
KEEP = ("prepare", "pretrain", "photosketch", "train")
_ENV_DROP = ("MLFLOW_TRACKING_URI", "SKETCHGAN_PIPELINE_RUN", "DVC_STAGE", "DVC_ROOT")


def _project(dest: Path) -> None:
    """The real stages, library and dvc.yaml (trimmed to ``KEEP``), tiny params, in git + DVC."""
    shutil.copytree(ROOT / "stages", dest / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    shutil.copy(ROOT / ".gitignore", dest / ".gitignore")
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in KEEP}
    pipeline.pop("plots", None)
    (dest / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (dest / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _exp_runs(db: Path) -> dict[str, list[tuple[str, str]]]:
    """MLflow runs tagged with a DVC experiment name: name -> [(run name, status)]."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "select t.value, r.name, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'dvc.exp_name'"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, list[tuple[str, str]]] = {}
    for exp, name, status in rows:
        out.setdefault(exp, []).append((name, status))
    return out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_queue_temp_show_apply_leave_the_workspace_alone(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    _project(repo)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        MLFLOW_DISABLE_TELEMETRY="true",
        OMP_NUM_THREADS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    dvc = str(Path(bin_dir) / "dvc")

    def sh(*cmd: str, timeout: int = 300) -> str:
        done = subprocess.run(
            cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    sh(dvc, "config", "core.analytics", "false")
    sh(dvc, "repro")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "baseline")
    before = _digest(repo / "models/finetuned")
    train_json = (repo / "reports/stages/train.json").read_text()

    sh(dvc, "exp", "run", "--queue", "-n", "qa", "-S", "train.iters=4")
    sh(dvc, "exp", "run", "--queue", "-n", "qb", "-S", "train.augment=false")
    # the workers it spawns inherit its stdout: with a pipe, waiting for the command would wait
    # for the whole queue (a CI run timed out there); with a file it returns once they start
    with (tmp_path / "queue_start.log").open("w") as log:
        started = subprocess.run(
            [dvc, "queue", "start", "-j", "2"], cwd=repo, env=env, stdout=log, stderr=log
        )
    assert started.returncode == 0, (tmp_path / "queue_start.log").read_text()
    deadline = time.monotonic() + 600
    while True:
        status = sh(dvc, "queue", "status")
        if "Running" not in status and "Queued" not in status:
            break
        if time.monotonic() > deadline:
            logs = "".join(sh(dvc, "queue", "logs", n) for n in ("qa", "qb"))
            raise AssertionError(f"queue still busy after 600 s:\n{status}\n{logs[-3000:]}")
        time.sleep(3)
    assert status.count("Success") == 2, status
    sh(dvc, "exp", "run", "--temp", "-n", "qt", "-S", "train.l_image=0")

    # the workspace is untouched: same files, same outputs, nothing staged or modified
    assert sh("git", "status", "--porcelain") == ""
    assert _digest(repo / "models/finetuned") == before
    assert (repo / "reports/stages/train.json").read_text() == train_json
    assert not list((repo / ".dvc/tmp/exps").rglob("mlflow.db"))

    # each experiment has its own result, and its runs are in the workspace's store
    shown = sh(dvc, "exp", "show", "--only-changed", "--md")
    assert all(name in shown for name in ("qa", "qb", "qt")), shown
    assert max(len(line) for line in shown.splitlines()) <= 160, shown
    runs = _exp_runs(repo / "mlflow.db")
    for name in ("qa", "qb", "qt"):
        assert "FINISHED" in {s for _, s in runs.get(name, [])}, (name, runs)
        assert any(n.startswith("train") for n, _ in runs[name]), runs[name]
    # run names say what the experiment changed
    assert ("train train.iters=4", "FINISHED") in runs["qa"], runs["qa"]
    assert ("pipeline qa train.iters=4", "FINISHED") in runs["qa"], runs["qa"]
    assert ("train train.augment=False", "FINISHED") in runs["qb"], runs["qb"]

    sh(dvc, "exp", "apply", "qa")
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["iters"] == 4
    applied = json.loads((repo / "reports/stages/train.json").read_text())
    assert applied["steps"] == 4, applied
    assert _digest(repo / "models/finetuned") != before
