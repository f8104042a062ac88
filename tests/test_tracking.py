"""MLflow tracking (sketchgan.tracking): runs, grouping, models, the UI server's REST API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sketchgan import mlflow_ui
from sketchgan import provenance as prov
from sketchgan import tracking as tr
from sketchgan.errors import SketchganError

_ENV = (
    "MLFLOW_TRACKING_URI",
    prov.ENV_PIPELINE_RUN,
    "DVC_STAGE",
    "DVC_ROOT",
    "DVC_EXP_NAME",
    "DVC_EXP_BASELINE_REV",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SQLite store for the module: creating the schema costs seconds."""
    root = tmp_path_factory.mktemp("mlflow")
    saved = {k: os.environ.pop(k) for k in _ENV if k in os.environ}
    tr.configure(root=root)
    yield root
    os.environ.update(saved)
    tr._state.update(uri=None, artifact_root=None)


@pytest.fixture()
def env(store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in _ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd would show up here
    tr.configure(root=store)
    return monkeypatch


def client():
    import mlflow

    return mlflow.MlflowClient()


def runs_tagged(key: str, value: str) -> list:
    exps = [e.experiment_id for e in client().search_experiments()]
    return client().search_runs(exps, filter_string=f"tags.`{key}` = '{value}'")


# --------------------------------------------------------------------------- pure helpers


def test_resolve_uri_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert tr.resolve_uri() == f"sqlite:///{(tmp_path / 'repo' / 'mlflow.db').resolve()}"
    assert tr.resolve_uri(root=tmp_path) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tr.resolve_uri() == "http://127.0.0.1:1"
    assert tr.resolve_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"
    assert tr.artifact_root_for("sqlite:////x/y.db") == Path("/x/mlartifacts")
    assert tr.artifact_root_for("http://127.0.0.1:5000") is None


def test_flatten_params_and_truncation() -> None:
    flat = tr.flatten_params(
        {
            "train": {"lr": 0.002, "betas": [0.0, 0.99], "opt": {"name": "adam"}},
            "seed": 3,
            "bad key!": None,
            "long": "x" * 10_000,
            "empty": {},
        }
    )
    assert flat["train.lr"] == "0.002"
    assert json.loads(flat["train.betas"]) == [0.0, 0.99]
    assert flat["train.opt.name"] == "adam" and flat["seed"] == "3"
    assert flat["bad key_"] == "None" and flat["empty"] == "{}"
    long = flat["long"]
    assert prov.MAX_PARAM_VALUE - 5 <= len(long) <= prov.MAX_PARAM_VALUE
    assert long.endswith(f"[truncated {10_000 - long.index('.')} chars]")
    assert tr.sanitize_key("../a//b/./c") == "a/b/c"
    assert tr.truncate_value("short") == "short"


def test_logging_outside_a_run_is_a_no_op(env: pytest.MonkeyPatch) -> None:
    assert tr.log_step_metrics({"a": 1.0}, 0) is False
    assert tr.log_model(nn.Linear(2, 2), "unused") is None
    assert tr.log_artifact(__file__) is False
    with tr.stage_run("disabled", {"a": 1}, enabled=False) as run:
        assert run is None and tr.log_step_metrics({"a": 1.0}, 0) is False


# --------------------------------------------------------------------------- runs


def test_stage_run_logs_params_metrics_images_and_model(env, store: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    sample = tmp_path / "sample.png"
    sample.write_bytes(b"\x89PNG fake bytes are fine for an artifact")
    params = {"train": {"lr": 0.002, "iterations": 3}, "seed": 7}
    with tr.stage_run("unit", params, tags={"purpose": "test"}) as active:
        for step in range(5):
            assert tr.log_step_metrics({"loss/g": torch.tensor(1.0 / (step + 1)), "n": step}, step)
        tr.log_image(torch.rand(4, 3, 16, 16) * 2 - 1, "samples/grid.png")
        tr.log_image(np.zeros((8, 8), np.uint8), "samples/gray.png")
        tr.log_image(sample, "copied/renamed.png")
        tr.log_artifact(sample, "files")
        info = tr.log_model(net, "unit-net", state_dict_extra={"config": {"width": 8}})
        with pytest.raises(SketchganError):
            tr.log_step_metrics({"bad": "text"}, 5)
        with pytest.raises(SketchganError):
            tr.log_image(np.zeros((4, 4), np.uint8), "samples/x.jpg")
    run = client().get_run(active.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.002" and run.data.params["seed"] == "7"
    assert run.data.tags["purpose"] == "test" and run.data.tags[tr.STAGE_TAG] == "unit"
    history = client().get_metric_history(run.info.run_id, "loss/g")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert history[-1].value == pytest.approx(0.2)
    paths = {a.path for a in client().list_artifacts(run.info.run_id, "samples")}
    assert paths == {"samples/grid.png", "samples/gray.png"}
    assert client().list_artifacts(run.info.run_id, "copied")[0].path == "copied/renamed.png"
    # the state dict artifact stays loadable with weights_only=True
    local = client().download_artifacts(run.info.run_id, "state_dicts/unit-net.pt", str(tmp_path))
    payload = torch.load(local, weights_only=True)
    assert payload["config"] == {"width": 8}
    assert torch.equal(payload["state"]["0.weight"], net[0].weight)
    # the registered PyTorch flavour
    versions = client().search_model_versions("name = 'sketchgan-unit-net'")
    assert info["registered_model"] == "sketchgan-unit-net"
    assert str(info["version"]) in {str(v.version) for v in versions}
    import mlflow.pytorch

    loaded = mlflow.pytorch.load_model(info["model_uri"])
    assert torch.equal(loaded[2].bias, net[2].bias)
    # artifacts live under <root>/mlartifacts, never in ./mlruns
    experiment = client().get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == (store / "mlartifacts" / "sketchgan-unit").as_uri()
    assert (store / "mlartifacts" / "sketchgan-unit").is_dir()
    assert not (tmp_path / "mlruns").exists() and not (store / "mlruns").exists()


def test_failing_body_marks_run_failed(env) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with tr.stage_run("unit", {"a": 1}, tags={"case": "failing"}) as active:
            tr.log_step_metrics({"x": 1.0}, 0)
            raise RuntimeError("boom")
    run = client().get_run(active.info.run_id)
    assert run.info.status == "FAILED"
    assert [m.value for m in client().get_metric_history(run.info.run_id, "x")] == [1.0]
    import mlflow

    assert mlflow.active_run() is None


def test_end_status_mapping(env) -> None:
    import click

    assert tr._end_status(None) == "FINISHED"
    assert tr._end_status(SystemExit(0)) == "FINISHED"
    assert tr._end_status(click.exceptions.Exit(0)) == "FINISHED"
    assert tr._end_status(click.exceptions.Exit(2)) == "FAILED"
    assert tr._end_status(SystemExit(1)) == "FAILED"
    with pytest.raises(KeyboardInterrupt):
        with tr.stage_run("unit", {}) as active:
            raise KeyboardInterrupt
    assert client().get_run(active.info.run_id).info.status == "KILLED"
    from sketchgan.training.finetune import TrainingStopped

    assert tr._end_status(TrainingStopped("stopped by signal at step 3")) == "KILLED"
    assert tr._end_status(SketchganError("bad input")) == "FAILED"


def test_a_resumed_run_links_to_the_killed_one_and_marks_it_killed(env, tmp_path: Path) -> None:
    marker = tmp_path / "run" / "mlflow_run_id"
    marker.parent.mkdir()
    with tr.stage_run("unit", {}) as first:
        assert tr.link_resumed_run(marker) is None  # nothing to link to yet
    # a kill -9 leaves its run RUNNING: simulate one that never ended
    exp_id = client().get_run(first.info.run_id).info.experiment_id
    killed = client().create_run(exp_id, run_name="killed").info.run_id
    marker.write_text(killed + "\n")
    with tr.stage_run("unit", {}) as resumed:
        assert tr.link_resumed_run(marker) == killed
    assert client().get_run(killed).info.status == "KILLED"
    run = client().get_run(resumed.info.run_id)
    assert run.data.tags["sketchgan.resumed_from_run"] == killed
    assert marker.read_text().strip() == resumed.info.run_id
    with tr.stage_run("unit", {}) as again:  # a finished earlier run is linked, not re-marked
        assert tr.link_resumed_run(marker) == resumed.info.run_id
    assert client().get_run(resumed.info.run_id).info.status == "FINISHED"
    assert tr.link_resumed_run(marker) is None  # outside a run: nothing
    assert marker.read_text().strip() == again.info.run_id


def test_runs_of_one_pipeline_share_a_parent(env) -> None:
    env.setenv(prov.ENV_PIPELINE_RUN, "pipe-1")
    with tr.stage_run("prepare", {"a": 1}) as first:
        pass
    with tr.stage_run("train", {"b": 2}) as second:
        assert tr.log_pipeline_metrics({"finetuned.fid": 12.5})
    env.setenv(prov.ENV_PIPELINE_RUN, "pipe-2")
    with tr.stage_run("prepare", {"a": 1}) as third:
        pass
    runs = {r.info.run_id: r for r in runs_tagged(tr.PIPELINE_TAG, "pipe-1")}
    parent_ids = {
        client().get_run(r).data.tags["mlflow.parentRunId"]
        for r in (first.info.run_id, second.info.run_id)
    }
    assert len(parent_ids) == 1
    parent = client().get_run(parent_ids.pop())
    assert parent.info.run_id in runs and len(runs) == 3  # parent + two stages
    assert client().get_experiment(parent.info.experiment_id).name == tr.PIPELINE_EXPERIMENT
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["stage.prepare"] == first.info.run_id
    assert parent.data.tags["stage.train"] == second.info.run_id
    # the parent row carries the union of its stages' params and the headline metrics
    assert parent.data.params == {"a": "1", "b": "2"}
    assert parent.data.metrics == {"finetuned.fid": 12.5}
    other = client().get_run(third.info.run_id).data.tags["mlflow.parentRunId"]
    assert other != parent.info.run_id


def test_failed_stage_marks_pipeline_failed(env) -> None:
    env.setenv(prov.ENV_PIPELINE_RUN, "pipe-fail")
    with pytest.raises(ValueError):
        with tr.stage_run("prepare", {}):
            raise ValueError("bad data")
    with tr.stage_run("train", {}) as later:
        pass
    parent_id = client().get_run(later.info.run_id).data.tags["mlflow.parentRunId"]
    assert client().get_run(parent_id).info.status == "FAILED"
    assert client().get_run(later.info.run_id).info.status == "FINISHED"


def test_run_names_say_what_differs_from_the_committed_params(env, tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("needs git")
    (tmp_path / "params.yaml").write_text("seed: 0\ntrain:\n  iters: 100\n  lr: 0.002\n")
    for cmd in (["init", "-q"], ["add", "params.yaml"], ["commit", "-qm", "p"]):
        subprocess.run(
            [git, "-c", "user.name=t", "-c", "user.email=t@t", *cmd], cwd=tmp_path, check=True
        )
    changed = {"seed": 0, "train": {"iters": 4, "lr": 0.002}}
    assert tr.params_changes(changed) == {"train.iters": "4"}
    with tr.stage_run("train", changed) as active:
        pass
    assert client().get_run(active.info.run_id).info.run_name == "train train.iters=4"
    with tr.stage_run("train", {"seed": 0, "train": {"iters": 100, "lr": 0.002}}) as plain:
        pass
    assert client().get_run(plain.info.run_id).info.run_name == "train"
    assert tr.describe_changes({f"k{i}": "v" * 20 for i in range(9)}, limit=40).endswith("...")


def test_no_grouping_outside_dvc(env) -> None:
    with tr.stage_run("unit", {}) as active:
        pass
    tags = client().get_run(active.info.run_id).data.tags
    assert "mlflow.parentRunId" not in tags and tr.PIPELINE_TAG not in tags


# --------------------------------------------------------------------------- pipeline keys


def test_pipeline_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in _ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(prov, "dvc_ancestor", lambda: "4242-777")
    assert tr.pipeline_key() is None  # not under DVC, nothing set
    monkeypatch.setenv("DVC_STAGE", "train")
    plain = tr.pipeline_key()
    assert plain is not None and plain.endswith(":4242-777") and plain.startswith("dvc:")
    monkeypatch.setenv("DVC_EXP_NAME", "sharp-owl")
    assert tr.pipeline_key().startswith("exp:sharp-owl:dvc:")
    monkeypatch.setenv(prov.ENV_PIPELINE_RUN, "ci job #12")
    assert tr.pipeline_key() == "ci_job__12"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def _wait_for_exec(pid: int, name: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(name.encode()):
                return
        except OSError:
            return
        time.sleep(0.01)


def test_dvc_ancestor_finds_the_dvc_process(tmp_path: Path) -> None:
    """Children of one ``dvc`` process share its identity; another invocation differs."""
    fake = tmp_path / "bin" / "dvc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nsleep 30 &\necho $!\nwait\n")
    fake.chmod(0o755)
    keys = []
    for _ in range(2):
        proc = subprocess.Popen([str(fake)], stdout=subprocess.PIPE, text=True)
        try:
            child = int(proc.stdout.readline())
            _wait_for_exec(child, "sleep")  # right after fork the child still looks like `dvc`
            keys.append((proc.pid, prov.dvc_ancestor(child)))
        finally:
            proc.kill()
            subprocess.run(["kill", str(child)], check=False)
            proc.wait()
    (pid1, key1), (pid2, key2) = keys
    assert key1 is not None and key1.startswith(f"{pid1}-")
    assert key2 is not None and key2.startswith(f"{pid2}-") and key1 != key2
    assert prov.dvc_ancestor() is None  # pytest itself does not run under dvc


def test_lock_fingerprint_matches_fields(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: python t.py\n    deps:\n"
        "    - path: a.txt\n      hash: md5\n      md5: abc\n      size: 1\n"
        "    params:\n      params.yaml:\n        train.lr: 0.002\n"
    )
    digest = prov.lock_fingerprint(tmp_path, "train")
    assert digest == prov._fingerprint(
        "python t.py", {"a.txt": "abc"}, {"params.yaml": {"train.lr": 0.002}}
    )
    assert prov.lock_fingerprint(tmp_path, "other") is None


# --------------------------------------------------------------------------- UI server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_serves_runs_over_rest(env, store: Path) -> None:
    with tr.stage_run("served", {"k": "v"}) as active:
        tr.log_step_metrics({"m": 2.5}, 1)
    port = _free_port()
    proc = mlflow_ui.serve_ui(port=port, uri=tr._state["uri"], wait=False)
    try:
        url = f"http://127.0.0.1:{port}"
        mlflow_ui.wait_for_ui(url, timeout_s=90, proc=proc)
        exp_id = client().get_experiment_by_name("sketchgan-served").experiment_id
        body = json.dumps({"experiment_ids": [exp_id], "max_results": 10}).encode()
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/runs/search",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            runs = json.load(resp)["runs"]
    finally:
        mlflow_ui.stop_ui(proc)
    assert proc.poll() is not None
    assert [r["info"]["run_id"] for r in runs] == [active.info.run_id]
    params = {p["key"]: p["value"] for p in runs[0]["data"]["params"]}
    assert params == {"k": "v"}
    assert runs[0]["data"]["metrics"][0]["value"] == 2.5


def test_blocking_ui_reports_a_server_that_stops_by_itself() -> None:
    # mlflow ui exits 0 when its port is taken, so any exit before Ctrl-C is an error
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    with pytest.raises(SketchganError, match="port 5123 in use"):
        mlflow_ui._block_until_interrupted(proc, 5123)
    assert proc.poll() == 0


def test_wait_for_ui_reports_early_exit() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(SketchganError, match="exited with code 3"):
        mlflow_ui.wait_for_ui(f"http://127.0.0.1:{_free_port()}", timeout_s=5, proc=proc)


def test_killing_sketchgan_ui_stops_the_mlflow_server(tmp_path) -> None:
    """`kill <pid of sketchgan ui>` (SIGTERM) takes the server, in its own group, with it."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    ui = subprocess.Popen(
        [sys.executable, "-m", "sketchgan.cli", "ui", "--port", str(port), "--params", "none"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        mlflow_ui.wait_for_ui(url, timeout_s=90, proc=ui)
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(30) == 0
        deadline = time.time() + 15
        while time.time() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.2)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, "the MLflow server outlived the ui"
    finally:
        if ui.poll() is None:
            ui.kill()


def test_a_logged_generator_loads_where_sketchgan_is_not_installed(env, store, tmp_path) -> None:
    """The package's code ships with the pickled model (code_paths), the zoo weights do not;
    the registered version carries a description and its source run."""
    from sketchgan.models.stylegan2 import Generator

    gen = Generator(16, 16, 2, channel_multiplier=1, channel_max=16)
    with tr.stage_run("codeship", {}) as active:
        info = tr.log_model(gen, "ship-gen", description="a test generator", tags={"k": 1})
    files = {a.path for a in client().list_artifacts(active.info.run_id, "ship-gen/code/sketchgan")}
    assert "ship-gen/code/sketchgan/models" in files and "ship-gen/code/sketchgan/zoo" not in files
    version = client().get_model_version("sketchgan-ship-gen", str(info["version"]))
    assert version.description == "a test generator"
    assert version.tags["source_run"] == active.info.run_id and version.tags["k"] == "1"
    script = (
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "sys.path = [p for p in sys.path if not p.rstrip('/').endswith('/src')]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('sketchgan') is None, 'sketchgan still importable'\n"
        "import mlflow, mlflow.pytorch, torch\n"
        f"mlflow.set_tracking_uri({tr._state['uri']!r})\n"
        f"g = mlflow.pytorch.load_model({info['model_uri']!r})\n"
        "img, _ = g([torch.randn(2, 16)])\n"
        "print(tuple(img.shape), type(g).__module__)\n"
    )
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(2, 3, 16, 16) sketchgan.models.stylegan2" in out.stdout


def test_runs_whose_process_died_are_reaped_as_killed(env) -> None:
    with tr.stage_run("reap", {}) as first:
        pass
    exp_id = client().get_run(first.info.run_id).info.experiment_id
    host = socket.gethostname()
    dead = client().create_run(exp_id, tags={tr.PROCESS_TAG: f"{host}:999999999:1"}).info.run_id
    alive = client().create_run(exp_id, tags={tr.PROCESS_TAG: tr.process_identity()}).info.run_id
    elsewhere = client().create_run(exp_id, tags={tr.PROCESS_TAG: "other-host:1:1"}).info.run_id
    with tr.stage_run("reap", {}) as active:
        pass
    assert client().get_run(dead).info.status == "KILLED"
    assert client().get_run(alive).info.status == "RUNNING"  # its process is this one
    assert client().get_run(elsewhere).info.status == "RUNNING"  # not this machine's to judge
    assert client().get_run(active.info.run_id).data.tags[tr.PROCESS_TAG] == tr.process_identity()
    for run_id in (alive, elsewhere):
        client().set_terminated(run_id, "FINISHED")


def test_open_store_creates_the_sqlite_store_before_any_run(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow exports the last one set
    try:
        tr.open_store(root=tmp_path)
        assert tr._state["uri"] == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}", tr._state
        assert (tmp_path / "mlflow.db").is_file(), sorted(p.name for p in tmp_path.iterdir())
        assert tr.resolve_uri(root=tmp_path).endswith(str(tmp_path / "mlflow.db"))
    finally:
        tr.configure(root=store)  # the module's store for the other tests
