"""Every failure a user can cause is one line that names the file, field or server, exit code 2,
and nothing already written is touched (the cases of the experiments issue)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sketchgan.cli import app

runner = CliRunner()


def _set(root: Path, dotted: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _prepare_in_a_process(root: Path, **kw) -> subprocess.CompletedProcess:
    """``sketchgan prepare`` as a user runs it: its own process, the real stderr (MLflow's
    logging and resource limits included), no DVC or tracking variables of the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_TRACKING"))}
    return subprocess.run(
        [str(Path(sys.executable).with_name("sketchgan")), "prepare"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def _one_line_failure(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text
    return text


@pytest.mark.parametrize(
    ("dotted", "value", "needle"),
    [
        ("seed", 1.5, "'seed'"),
        ("seed", "zero", "'seed'"),
        ("device", 0, "'device'"),
        ("tracking", True, "'tracking' must be a section"),
        ("tracking.enabled", "yes", "'tracking.enabled'"),
        ("tracking.colour", 1, "'tracking.colour' is not a setting"),
        ("train.eval_samples", 0, "'train.eval_samples'"),
        ("train.eval_samples", 2.5, "'train.eval_samples'"),
    ],
)
def test_bad_run_settings_fail_before_any_work(tiny_project, dotted, value, needle) -> None:
    root, _ = tiny_project
    _set(root, dotted, value)
    stage = "train" if dotted.startswith("train.") else "prepare"
    _one_line_failure(runner.invoke(app, [stage]), needle)
    assert not (root / "data").exists() and not (root / "mlflow.db").exists()


def test_an_unreachable_tracking_server_fails_in_seconds(tiny_project) -> None:
    root, _ = tiny_project
    _set(root, "tracking.uri", "http://127.0.0.1:9/")
    started = time.monotonic()
    _one_line_failure(runner.invoke(app, ["prepare"]), "http://127.0.0.1:9/", "tracking.required")
    assert time.monotonic() - started < 15
    assert not (root / "data").exists()
    # by an explicit setting the stage runs untracked, with a warning
    _set(root, "tracking.required", False)
    result = runner.invoke(app, ["prepare"])
    assert result.exit_code == 0, result.output
    assert (root / "data/pretrain").is_dir()


def test_a_corrupt_store_names_the_file(tiny_project) -> None:
    root, _ = tiny_project
    (root / "mlflow.db").write_bytes(b"this is not a SQLite database" * 100)
    text = _one_line_failure(runner.invoke(app, ["prepare"]), "mlflow.db", "tracking.required")
    assert str(root) not in text  # the file as the user names it, not an absolute path
    assert not (root / "data").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files")
def test_a_read_only_store_names_the_file(tiny_project) -> None:
    from sketchgan import tracking

    root, _ = tiny_project
    tracking.configure(root=root)
    tracking.ensure_experiment("sketchgan-prepare")
    (root / "mlflow.db").chmod(0o444)
    try:
        _one_line_failure(runner.invoke(app, ["prepare"]), "mlflow.db")
    finally:
        (root / "mlflow.db").chmod(0o644)
        tracking._state.update(uri=None, artifact_root=None)


def test_an_output_that_cannot_be_written_is_one_line(tiny_project) -> None:
    root, _ = tiny_project
    _set(root, "tracking.enabled", False)
    (root / "data").write_text("a file where the data folder goes")
    _one_line_failure(runner.invoke(app, ["prepare"]), "data")
    assert (root / "data").read_text() == "a file where the data folder goes"


def test_a_file_too_large_is_one_line_with_what_to_do(tiny_project) -> None:
    root, _ = tiny_project
    _set(root, "tracking.enabled", False)
    limit = 20_000  # bytes: the first rendered image set is larger

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = _prepare_in_a_process(root, preexec_fn=small_files)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "ulimit" in lines[0], lines


def test_messages_name_project_files_relative_to_the_project(tmp_path, monkeypatch) -> None:
    import errno

    from sketchgan.cli import describe_error
    from sketchgan.errors import SketchganError

    monkeypatch.chdir(tmp_path)
    inside = tmp_path / "outputs/train_runs/abc/checkpoint.pt"
    text = describe_error(SketchganError(f"{inside}: written with other settings (train.lr)"))
    assert text == "outputs/train_runs/abc/checkpoint.pt: written with other settings (train.lr)"
    full = OSError(errno.ENOSPC, "No space left on device", str(inside))
    assert describe_error(full).startswith("outputs/train_runs/abc/checkpoint.pt: No space left")
    assert "free space and rerun" in describe_error(full)
    assert describe_error(SketchganError("/etc/elsewhere: x")) == "/etc/elsewhere: x"


def test_a_read_only_store_is_one_line_also_for_root(tiny_project) -> None:
    """SQLite opened read-only (root ignores file modes): MLflow's own logged traceback of the
    failed INSERT must not reach the user, only the line naming the store."""
    from sketchgan import tracking

    root, _ = tiny_project
    tracking.configure(root=root)
    tracking.ensure_experiment("sketchgan-other")
    tracking._state.update(uri=None, artifact_root=None)
    _set(root, "tracking.uri", f"sqlite:///file:{root / 'mlflow.db'}?mode=ro&uri=true")
    done = _prepare_in_a_process(root)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "readonly database" in lines[0] and "tracking.required" in lines[0]
    assert not (root / "data").exists()
