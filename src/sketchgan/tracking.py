"""MLflow tracking for pipeline stages: one run per stage, grouped per pipeline execution.

Design notes (the why):

* Store. The default store is ``sqlite:///<root>/mlflow.db`` with artifacts in
  ``<root>/mlartifacts``, where ``<root>`` is ``DVC_ROOT`` when DVC runs the stage (``dvc exp run
  --temp/--queue`` executes in ``.dvc/tmp/exps/...``, which is thrown away) and the cwd otherwise.
  Experiments are created with an explicit ``artifact_location`` so nothing lands in ./mlruns.
  ``MLFLOW_DISABLE_TELEMETRY=true`` is forced: MLflow would otherwise look up a telemetry host.
* Grouping. Every stage run of one pipeline execution is nested (``mlflow.parentRunId``) under
  one parent run in experiment ``sketchgan-pipeline``; all carry the tag ``sketchgan.pipeline``
  with the execution's key, so ``tags.`sketchgan.pipeline` = '<key>'`` finds them across the
  per-stage experiments. The key is, in order: env ``SKETCHGAN_PIPELINE_RUN`` (set it to group
  anything you like, e.g. CI jobs); else, inside DVC (``DVC_STAGE`` set), the identity of the
  nearest ancestor ``dvc`` process (pid + start time, Linux ``/proc``; prefixed with
  ``DVC_EXP_NAME`` in experiments) -- every stage of one ``dvc repro``/``dvc exp run`` is a child
  of that process and nothing else is; else no parent. The parent is found again by that tag
  (no state files), and is marked FINISHED/FAILED after each stage so it never stays RUNNING.
* Stage hash. ``dvc.stage_md5`` is the md5 of ``{"cmd", "deps": {path: md5}, "params": {file:
  {key: value}}}`` computed live with DVC's own hashing at stage start; ``lock_fingerprint`` gives
  the same digest from the stage's ``dvc.lock`` entry once DVC has written it, so a run can be
  matched to the lock entry (and thus to the git commit that holds it).
* Models are logged twice: the state dict as a plain artifact (loads with ``weights_only=True``)
  and the PyTorch flavour pickled (``serialization_format="pickle"``: the default "pt2" needs an
  input example and loads back as a non-trainable graph), registered as ``sketchgan-<name>``.
* Every ``log_*`` function is a no-op outside a run, so stage code needs no ``if tracking:``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sketchgan.errors import SketchganError
from sketchgan.io import make_grid, save_png, save_torch, write_text
from sketchgan.runtime import store_root

ENV_PIPELINE_RUN = "SKETCHGAN_PIPELINE_RUN"
CHAMPION = "champion"  # alias of the best default-settings fine-tuned generator
PIPELINE_EXPERIMENT = "sketchgan-pipeline"
PIPELINE_TAG = "sketchgan.pipeline"
STAGE_TAG = "sketchgan.stage"
EXPERIMENT_PREFIX = "sketchgan-"
MODEL_PREFIX = "sketchgan-"

# MLflow limits (mlflow.utils.validation): param values 6000 chars, keys 250 chars.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_TAG_VALUE = 8000
_TRUNCATION_MARK = "...[truncated {n} chars]"
_GIT_TIMEOUT_S = 5

METRIC_FLUSH_S = 10.0
METRIC_FLUSH_N = 1000

_log = logging.getLogger(__name__)
_state: dict[str, Any] = {"uri": None, "artifact_root": None}
_metric_buffer: dict[str, Any] = {"run_id": None, "items": [], "last": time.monotonic()}


# --------------------------------------------------------------------------- configuration


def _mlflow() -> Any:
    """Import MLflow lazily (2-3 s) with telemetry disabled before its first import."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    import mlflow

    return mlflow


def resolve_uri(uri: str | None = None, root: str | os.PathLike | None = None) -> str:
    """Tracking URI from the argument, else ``MLFLOW_TRACKING_URI``, else ``<root>/mlflow.db``."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    base = Path(root) if root is not None else store_root()
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def artifact_root_for(uri: str) -> Path | None:
    """``mlartifacts/`` next to a SQLite file; None where the server/store decides (http, file)."""
    if not uri.startswith("sqlite:///"):
        return None
    db_path = Path(uri[len("sqlite:///") :])
    return db_path.resolve().parent / "mlartifacts"


def configure(uri: str | None = None, root: str | os.PathLike | None = None) -> str:
    """Point MLflow (tracking and registry) at the project store and return the URI."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    uri = resolve_uri(uri, root)
    artifact_root = artifact_root_for(uri)
    if artifact_root is not None:
        artifact_root.parent.mkdir(parents=True, exist_ok=True)
    mlflow = _mlflow()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _state.update(uri=uri, artifact_root=artifact_root)
    return uri


def _client() -> Any:
    if _state["uri"] is None:
        configure()
    return _mlflow().MlflowClient(tracking_uri=_state["uri"], registry_uri=_state["uri"])


def ensure_experiment(name: str) -> str:
    """Experiment id for ``name``, creating it with its artifacts under ``mlartifacts/``."""
    from mlflow.exceptions import MlflowException

    client = _client()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = _state["artifact_root"]
    kwargs = {"artifact_location": (root / name).as_uri()} if root is not None else {}
    try:
        return client.create_experiment(name, **kwargs)
    except MlflowException:  # another stage process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# --------------------------------------------------------------------------- params and keys


def sanitize_key(key: str) -> str:
    """A key MLflow accepts: allowed characters only, no empty/./.. path parts, <= 250 chars."""
    cleaned = re.sub(r"[^\w.\- /:]", "_", str(key))
    parts = [p for p in cleaned.split("/") if p not in ("", ".", "..")]
    return ("/".join(parts) or "_")[:MAX_KEY]


def truncate_value(value: str, limit: int = MAX_PARAM_VALUE) -> str:
    """Cut long values to MLflow's limit, saying how much was dropped (never rejected)."""
    if len(value) <= limit:
        return value
    kept = limit
    for _ in range(3):  # the mark's length depends on the dropped count: settle it
        kept = limit - len(_TRUNCATION_MARK.format(n=len(value) - kept))
    return value[:kept] + _TRUNCATION_MARK.format(n=len(value) - kept)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``a.b.c`` keys; lists/None/scalars as strings MLflow accepts."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, name))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple, Mapping)) else str(value)
            flat[sanitize_key(name)] = truncate_value(text)
    return flat


# --------------------------------------------------------------------------- provenance tags


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_tags(cwd: str | os.PathLike | None = None) -> dict[str, str]:
    """Commit and dirtiness of the checkout the stage runs in (empty outside git)."""
    cwd = Path(cwd or os.getcwd())
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return {}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    tags = {"git.commit": commit, "mlflow.source.git.commit": commit}
    if status is not None:
        tags["git.dirty"] = str(bool(status)).lower()
    return tags


def params_changes(
    params: Mapping[str, Any], cwd: str | os.PathLike | None = None
) -> dict[str, str]:
    """The flattened params that differ from the committed ``params.yaml`` (HEAD): what makes
    this run differ from the project's default, for run names a reader can tell apart. Inside a
    DVC experiment HEAD is its baseline commit, so these are the experiment's ``-S`` settings."""
    committed = _git(["show", "HEAD:params.yaml"], Path(cwd or os.getcwd()))
    if not committed:
        return {}
    try:
        base = yaml.safe_load(committed)
    except yaml.YAMLError:
        return {}
    if not isinstance(base, Mapping):
        return {}
    flat_base = flatten_params(base)
    return {k: v for k, v in flatten_params(params).items() if flat_base.get(k) != v}


def describe_changes(changes: Mapping[str, str], limit: int = 90) -> str:
    """``train.iters=4 train.augment=False`` (cut at ``limit`` characters)."""
    text = " ".join(f"{k}={v}" for k, v in changes.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fingerprint(cmd: Any, deps: Mapping[str, str], params: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"cmd": cmd, "deps": dict(deps), "params": dict(params)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.md5(canonical.encode()).hexdigest()


def _lock_path_and_name(root: Path, stage: str) -> tuple[Path, str]:
    """``dvc.lock`` and entry name for a DVC_STAGE address (``name`` or ``dir/dvc.yaml:name``)."""
    if ":" in stage:
        yaml_path, name = stage.rsplit(":", 1)
        return root / Path(yaml_path).with_suffix(".lock"), name
    return root / "dvc.lock", stage


def lock_fingerprint(root: str | os.PathLike, stage: str) -> str | None:
    """The ``dvc.stage_md5`` digest recomputed from the stage's entry in ``dvc.lock``."""
    lock_path, name = _lock_path_and_name(Path(root), stage)
    try:
        entry = yaml.safe_load(lock_path.read_text())["stages"][name]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    deps = {
        d["path"]: d.get("md5") or d.get("etag") or d.get("checksum") for d in entry.get("deps", [])
    }
    return _fingerprint(entry.get("cmd"), deps, entry.get("params", {}))


def live_stage_fingerprint(stage: str) -> str | None:
    """The same digest computed now with DVC's hashing, in the workspace that runs the stage.

    The cwd's repository is used (not DVC_ROOT): temporary experiment workspaces hold the
    parameters that are actually running. Best effort: any failure gives None.
    """
    try:
        from dvc.dependency.param import ParamsDependency
        from dvc.repo import Repo

        with Repo() as repo:
            dvc_stage = repo.stage.collect(stage)[0]
            deps: dict[str, str] = {}
            params: dict[str, Any] = {}
            for dep in dvc_stage.deps:
                dep.save()
                if isinstance(dep, ParamsDependency):
                    params[dep.def_path] = dict(dep.hash_info.value)
                else:
                    deps[dep.def_path] = dep.hash_info.value
            return _fingerprint(dvc_stage.cmd, deps, params)
    except Exception as exc:  # provenance is optional; never fail a stage over it
        _log.debug("no DVC stage fingerprint for %s: %s", stage, exc)
        return None


def dvc_tags(env: Mapping[str, str] | None = None, fingerprint: bool = True) -> dict[str, str]:
    """DVC stage address, experiment name/baseline and the stage fingerprint, when under DVC."""
    env = os.environ if env is None else env
    tags: dict[str, str] = {}
    if env.get("DVC_STAGE"):
        tags["dvc.stage"] = env["DVC_STAGE"]
        digest = live_stage_fingerprint(env["DVC_STAGE"]) if fingerprint else None
        if digest:
            tags["dvc.stage_md5"] = digest
    if env.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = env["DVC_EXP_NAME"]
    if env.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.exp_baseline_rev"] = env["DVC_EXP_BASELINE_REV"]
    return tags


# --------------------------------------------------------------------------- pipeline grouping


def _proc_info(pid: int) -> tuple[int, str, list[str]] | None:
    """(parent pid, start time in clock ticks, argv) from Linux /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return int(fields[1]), fields[19], [a.decode(errors="replace") for a in argv if a]
    except (OSError, ValueError, IndexError):
        return None


PROCESS_TAG = "sketchgan.process"


def process_identity(pid: int | None = None) -> str | None:
    """``host:pid:start-time`` of a process (Linux), None where /proc is missing: a pid alone
    can be reused, with its start time it names one process."""
    pid = os.getpid() if pid is None else pid
    info = _proc_info(pid)
    return None if info is None else f"{socket.gethostname()}:{pid}:{info[1]}"


def _process_gone(identity: str) -> bool:
    host, _, rest = identity.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's run: not ours to judge
    info = _proc_info(int(pid))
    return info is None or info[1] != start


def reap_dead_runs(client: Any, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this machine whose process no longer exists (SIGKILL,
    OOM killer, power loss leave them RUNNING forever otherwise). Returns their ids."""
    found = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200
    )
    reaped = []
    for run in found:
        identity = run.data.tags.get(PROCESS_TAG)
        if identity and _process_gone(identity):
            client.set_terminated(run.info.run_id, "KILLED")
            reaped.append(run.info.run_id)
    return reaped


def _is_dvc_command(argv: list[str]) -> bool:
    """``dvc ...``, ``python /path/bin/dvc ...`` or ``python -m dvc ...``."""
    head = argv[:3]
    if any(Path(a).name == "dvc" for a in head[:2]):
        return True
    return any(a == "-m" and b == "dvc" for a, b in zip(head, head[1:], strict=False))


def dvc_ancestor(pid: int | None = None, max_depth: int = 32) -> str | None:
    """``<pid>-<start ticks>`` of the nearest ``dvc`` process above ``pid`` (Linux only)."""
    pid = os.getpid() if pid is None else pid
    for _ in range(max_depth):
        info = _proc_info(pid)
        if info is None:
            return None
        ppid, start, argv = info
        if pid != os.getpid() and _is_dvc_command(argv):
            return f"{pid}-{start}"
        if ppid <= 1:
            return None
        pid = ppid
    return None


def _clean_key(key: str) -> str:
    return re.sub(r"[^\w.:@-]", "_", key)[:MAX_KEY]


def pipeline_key(env: Mapping[str, str] | None = None) -> str | None:
    """Identity of the current pipeline execution (see module docstring), or None."""
    env = os.environ if env is None else env
    if env.get(ENV_PIPELINE_RUN):
        return _clean_key(env[ENV_PIPELINE_RUN])
    if not env.get("DVC_STAGE"):
        return None
    ancestor = dvc_ancestor()
    if ancestor is None:
        return None
    key = f"dvc:{socket.gethostname()}:{ancestor}"
    if env.get("DVC_EXP_NAME"):
        key = f"exp:{env['DVC_EXP_NAME']}:{key}"
    return _clean_key(key)


def _find_or_create_parent(client: Any, key: str, tags: Mapping[str, str]) -> str:
    exp_id = ensure_experiment(PIPELINE_EXPERIMENT)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{PIPELINE_TAG}` = '{key}'", max_results=1
    )
    if found:
        run = found[0]
        if run.info.status != "FAILED":  # a failed stage keeps the whole execution FAILED
            client.update_run(run.info.run_id, status="RUNNING")
        return run.info.run_id
    name = f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}"
    if os.environ.get("DVC_EXP_NAME"):
        name = f"pipeline {os.environ['DVC_EXP_NAME']}"
    changed = _file_changes()
    if changed:
        name = f"{name} {changed}"
    run = client.create_run(exp_id, run_name=name, tags={PIPELINE_TAG: key, **tags})
    return run.info.run_id


def _file_changes() -> str:
    """What the workspace's params.yaml changes against HEAD (an experiment's ``-S`` settings)."""
    path = Path("params.yaml")
    try:
        current = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return ""
    return describe_changes(params_changes(current)) if isinstance(current, Mapping) else ""


def _add_parent_params(client: Any, parent_id: str, params: Mapping[str, str]) -> None:
    """The parent run carries the union of its stages' params (each stage adds its slice), so a
    pipeline execution can be compared with another on its own row."""
    have = client.get_run(parent_id).data.params
    new = {k: v for k, v in params.items() if k not in have}
    if new:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), 100):  # MLflow's limit per batch
            client.log_batch(parent_id, params=items[i : i + 100])


def log_pipeline_metrics(metrics: Mapping[str, Any]) -> bool:
    """Summary metrics on the pipeline's parent run (the evaluation's headline numbers), so the
    parent row in the MLflow UI shows the result of the whole execution; False without one."""
    run = _active_run()
    if run is None:
        return False
    parent_id = run.data.tags.get("mlflow.parentRunId")
    if not parent_id:
        return False
    return log_metrics_to_run(parent_id, metrics)


def _finish_parent(client: Any, parent_id: str, stage: str, child_id: str, status: str) -> None:
    """Record the child and leave the parent FINISHED, or FAILED once any stage failed."""
    client.set_tag(parent_id, f"stage.{sanitize_key(stage)}", child_id)
    if client.get_run(parent_id).info.status == "FAILED":
        status = "FAILED"
    client.set_terminated(parent_id, "FAILED" if status != "FINISHED" else "FINISHED")


# --------------------------------------------------------------------------- stage runs


def _end_status(exc: BaseException | None) -> str:
    if exc is None:
        return "FINISHED"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return "FINISHED"
    if getattr(exc, "exit_code", None) == 0:  # click/typer.Exit(0) is a normal exit
        return "FINISHED"
    if isinstance(exc, KeyboardInterrupt) or getattr(exc, "end_status", None) == "KILLED":
        return "KILLED"
    return "FAILED"


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    *,
    enabled: bool = True,
    required: bool = True,
    uri: str | None = None,
    root: str | os.PathLike | None = None,
    run_name: str | None = None,
) -> Iterator[Any]:
    """An MLflow run for one stage in experiment ``sketchgan-<stage>``; yields the ActiveRun.

    Params are logged flattened, provenance tags added, the run nested under the pipeline's
    parent run (see module docstring). An exception ends the run FAILED (KILLED for Ctrl-C)
    and propagates. ``enabled=False`` yields None and logs nothing. A store that cannot be
    reached or used is one clear error before any work starts, or with ``required=False`` a
    warning and an untracked stage.
    """
    if not enabled:
        yield None
        return
    try:
        opened = _open_stage_run(stage, params, tags, uri, root, run_name)
    except TrackingUnavailable as exc:
        if required:
            raise
        _log.warning("%s; continuing untracked (tracking.required: false)", exc)
        _state.update(uri=None, artifact_root=None)
        yield None
        return
    mlflow, client, active, parent_id = opened
    error: BaseException | None = None
    try:
        yield active
    except BaseException as exc:
        error = exc
        raise
    finally:
        status = _end_status(error)
        try:
            flush_metrics()
        finally:
            mlflow.end_run(status)
        if parent_id is not None:
            _finish_parent(client, parent_id, stage, active.info.run_id, status)


class TrackingUnavailable(SketchganError):
    """The MLflow store cannot be reached or written (raised before the stage does any work)."""


def _store_problem(uri: str, exc: BaseException) -> TrackingUnavailable:
    where = uri
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        try:
            where = str(db.resolve().relative_to(Path.cwd()))
        except ValueError:
            where = str(db)
    reason = str(getattr(exc, "message", None) or exc).strip().splitlines()
    short = reason[0][:160] if reason else exc.__class__.__name__
    return TrackingUnavailable(
        f"{where}: the MLflow store cannot be used ({short}); fix or move it, or set "
        "tracking.required: false to run untracked (tracking.enabled: false: never track)"
    )


def _open_stage_run(
    stage: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None,
    uri: str | None,
    root: str | os.PathLike | None,
    run_name: str | None,
) -> tuple[Any, Any, Any, str | None]:
    """Configure the store, find or create the parent, start the run and log its params."""
    if uri is not None or root is not None or _state["uri"] is None:
        configure(uri, root)
    store = _state["uri"]
    check_reachable(store)
    try:
        mlflow = _mlflow()
        client = _client()
        exp_id = ensure_experiment(f"{EXPERIMENT_PREFIX}{stage}")
        git = git_tags()
        key = pipeline_key()
        run_tags = {STAGE_TAG: stage, **git, **dvc_tags(), **(tags or {})}
        identity = process_identity()
        if identity is not None:
            run_tags[PROCESS_TAG] = identity
        reap_dead_runs(client, exp_id)
        parent_id = None
        flat_params = flatten_params(params)
        if key is not None and mlflow.active_run() is None:
            exp_tags = {k: v for k, v in dvc_tags(fingerprint=False).items() if k != "dvc.stage"}
            parent_id = _find_or_create_parent(client, key, {**git, **exp_tags})
            _add_parent_params(client, parent_id, flat_params)
            run_tags[PIPELINE_TAG] = key
        if run_name is None:
            run_name = f"{stage} {describe_changes(params_changes(params))}".strip()
        run_tags = {
            sanitize_key(k): truncate_value(str(v), MAX_TAG_VALUE) for k, v in run_tags.items()
        }
        active = mlflow.start_run(
            experiment_id=exp_id,
            run_name=run_name,
            tags=run_tags,
            parent_run_id=parent_id,
            nested=mlflow.active_run() is not None,
            log_system_metrics=False,
        )
    except SketchganError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow/SQLAlchemy/OS errors of a broken store
        raise _store_problem(store, exc) from exc
    try:
        mlflow.log_params(flat_params)
    except Exception as exc:  # noqa: BLE001
        mlflow.end_run("FAILED")
        raise _store_problem(store, exc) from exc
    return mlflow, client, active, parent_id


#: seconds to wait for an MLflow server before giving up (MLflow itself retries for minutes)
_REACH_TIMEOUT_S = 3.0


def check_reachable(uri: str) -> None:
    """An http(s) store answers within seconds, or this is one line naming it."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", port), _REACH_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise TrackingUnavailable(
            f"tracking.uri: no MLflow server answers at {uri} ({reason}); start it (e.g. "
            "`sketchgan ui`), or set tracking.required: false to run untracked"
        ) from exc


def _active_run() -> Any:
    if _state["uri"] is None:
        return None
    return _mlflow().active_run()


def active_run_id() -> str | None:
    """The id of the stage run in progress (None outside a run), so that a later stage can
    attach its numbers to the run that produced a model."""
    run = _active_run()
    return None if run is None else run.info.run_id


def _as_number(key: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise SketchganError(f"metrics: '{key}' is a tensor of {value.numel()} values")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise SketchganError(f"metrics: '{key}' is not a number: {value!r}")
    return float(value)


def log_step_metrics(metrics: Mapping[str, Any], step: int) -> bool:
    """Queue scalar metrics (floats, ints, 1-element tensors) at ``step``; False outside a run.

    Each MLflow call is one SQLite transaction (tens of ms), which would dominate a fast
    training loop; metrics are buffered and written in batches every ``METRIC_FLUSH_S`` seconds,
    every ``METRIC_FLUSH_N`` values and when the run ends (or on ``flush_metrics()``).
    """
    run = _active_run()
    if run is None:
        return False
    from mlflow.entities import Metric

    values = {sanitize_key(k): _as_number(k, v) for k, v in metrics.items() if v is not None}
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
        _log.warning("non-finite metrics at step %s: %s", step, bad)
    now_ms = int(time.time() * 1000)
    run_id = run.info.run_id
    if _metric_buffer["run_id"] not in (None, run_id):
        flush_metrics()
    _metric_buffer["run_id"] = run_id
    _metric_buffer["items"] += [Metric(k, v, now_ms, int(step)) for k, v in values.items()]
    due = time.monotonic() - _metric_buffer["last"] > METRIC_FLUSH_S
    if due or len(_metric_buffer["items"]) >= METRIC_FLUSH_N:
        flush_metrics()
    return True


def log_metrics_to_run(run_id: str, metrics: Mapping[str, Any], step: int = 0) -> bool:
    """Add metrics to another (finished) run, e.g. evaluation numbers to the training run.

    False when tracking is off or the run does not exist in this store (a stale id).
    """
    if _state["uri"] is None:
        return False
    from mlflow.entities import Metric

    now_ms = int(time.time() * 1000)
    items = [
        Metric(sanitize_key(k), _as_number(k, v), now_ms, int(step))
        for k, v in metrics.items()
        if v is not None
    ]
    try:
        _client().get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException/MlflowException
        _log.warning("run %s not found in %s: metrics not attached", run_id, _state["uri"])
        return False
    if items:
        _client().log_batch(run_id, metrics=items)
    return True


def link_resumed_run(marker: str | os.PathLike) -> str | None:
    """Tie the active run to the earlier run of the same resumable work (``marker`` is a file
    in its run folder holding that run's id): a run still RUNNING there was killed (SIGKILL, a
    power cut) and is marked KILLED; the active run gets the tag ``sketchgan.resumed_from_run``.
    Then the marker names the active run. Returns the earlier id, or None."""
    run = _active_run()
    if run is None:
        return None
    marker = Path(marker)
    previous = marker.read_text().strip() if marker.is_file() else ""
    linked = None
    if previous and previous != run.info.run_id:
        client = _client()
        try:
            earlier = client.get_run(previous)
        except Exception:  # noqa: BLE001 - a stale id from another store
            earlier = None
        if earlier is not None:
            if earlier.info.status == "RUNNING":
                client.set_terminated(previous, "KILLED")
            _mlflow().set_tag("sketchgan.resumed_from_run", previous)
            linked = previous
    write_text(marker, run.info.run_id + "\n")
    return linked


def flush_metrics() -> None:
    """Write buffered metrics now (called automatically at the end of ``stage_run``)."""
    items, run_id = _metric_buffer["items"], _metric_buffer["run_id"]
    _metric_buffer.update(items=[], last=time.monotonic())
    if items and run_id is not None:
        _client().log_batch(run_id, metrics=items)


def _image_array(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 (H, W[, C]) from a uint8/float[0,1] array or a [-1,1] tensor (C,H,W)/(N,C,H,W)."""
    if isinstance(image, torch.Tensor):
        batch = image if image.dim() == 4 else image.unsqueeze(0)
        if batch.dim() != 4:
            raise SketchganError(
                f"log_image: expected (C,H,W) or (N,C,H,W), got {tuple(image.shape)}"
            )
        return make_grid(batch)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if arr.ndim not in (2, 3):
        raise SketchganError(f"log_image: expected (H,W) or (H,W,C), got {arr.shape}")
    return arr


def _split_artifact(artifact_file: str) -> tuple[str | None, str]:
    clean = sanitize_key(artifact_file)
    parent, _, name = clean.rpartition("/")
    return (parent or None), name


def log_image(
    array_or_path: np.ndarray | torch.Tensor | str | os.PathLike, artifact_file: str
) -> bool:
    """Log an image (array, tensor or existing file) as ``artifact_file``; False outside a run."""
    if _active_run() is None:
        return False
    parent, name = _split_artifact(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        if isinstance(array_or_path, (str, os.PathLike)):
            src = Path(array_or_path)
            if not src.is_file():
                raise SketchganError(f"{src}: image to log not found")
            local.write_bytes(src.read_bytes())
        else:
            if local.suffix.lower() != ".png":
                raise SketchganError(f"log_image: '{artifact_file}' must end in .png for arrays")
            save_png(_image_array(array_or_path), local)
        _mlflow().log_artifact(str(local), artifact_path=parent)
    return True


def log_artifact(path: str | os.PathLike, artifact_path: str | None = None) -> bool:
    """Log a file or a whole folder; False outside a run."""
    if _active_run() is None:
        return False
    path = Path(path)
    if not path.exists():
        raise SketchganError(f"{path}: artifact to log not found")
    mlflow = _mlflow()
    target = sanitize_key(artifact_path) if artifact_path else None
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=target)
    else:
        mlflow.log_artifact(str(path), artifact_path=target)
    return True


def _cpu_module(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy when needed, so the pickled model loads on machines without CUDA."""
    on_cpu = all(t.device.type == "cpu" for t in [*module.parameters(), *module.buffers()])
    return module if on_cpu else copy.deepcopy(module).cpu()


@contextlib.contextmanager
def _model_code() -> Iterator[Path]:
    """The package's source (no zoo weights, no caches) to ship with a pickled model, so
    ``mlflow.pytorch.load_model`` works where sketchgan is not installed."""
    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / package.name
        shutil.copytree(
            package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pt", "zoo")
        )
        yield target


def log_model(
    module: torch.nn.Module,
    name: str,
    register: bool = True,
    state_dict_extra: Mapping[str, Any] | None = None,
    description: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Log ``{"state": state_dict, **state_dict_extra}`` and the pickled PyTorch flavour.

    Returns the model URI, the state-dict artifact URI and the registered name/version (None
    outside a run). ``state_dict_extra`` (e.g. ``{"config": ...}``) must be plain data. A
    registered version gets ``description`` and ``tags`` plus its source run and DVC experiment.
    """
    run = _active_run()
    if run is None:
        return None
    mlflow = _mlflow()
    from mlflow import pytorch as mlflow_pytorch

    safe = sanitize_key(name).replace("/", "_")
    module = _cpu_module(module)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / f"{safe}.pt"
        save_torch({"state": module.state_dict(), **(state_dict_extra or {})}, local)
        mlflow.log_artifact(str(local), artifact_path="state_dicts")
    registered = f"{MODEL_PREFIX}{safe}" if register else None
    pytorch_logger = logging.getLogger("mlflow.pytorch")
    level = pytorch_logger.level
    pytorch_logger.setLevel(logging.ERROR)  # the pickle warning is expected: see docstring
    try:
        with _model_code() as code:
            info = mlflow_pytorch.log_model(
                module,
                name=safe,
                serialization_format="pickle",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                registered_model_name=registered,
                code_paths=[str(code)],
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise SketchganError(
            f"log_model '{name}': MLflow could not log the module ({first})"
        ) from exc
    finally:
        pytorch_logger.setLevel(level)
    out = {
        "model_uri": info.model_uri,
        "state_dict_uri": f"runs:/{run.info.run_id}/state_dicts/{safe}.pt",
        "registered_model": registered,
        "version": info.registered_model_version,
    }
    if registered and info.registered_model_version is not None:
        _describe_version(registered, info.registered_model_version, run, description, tags)
    return out


def _describe_version(
    name: str,
    version: Any,
    run: Any,
    description: str | None,
    tags: Mapping[str, Any] | None,
) -> None:
    """Description, source run, DVC experiment and the caller's tags on a model version."""
    client = _client()
    text = description or f"logged by run {run.info.run_id}"
    client.update_model_version(name, str(version), description=text)
    all_tags = {"source_run": run.info.run_id, **dvc_tags(fingerprint=False), **(tags or {})}
    for key, value in all_tags.items():
        client.set_model_version_tag(
            name, str(version), sanitize_key(key), truncate_value(str(value), MAX_TAG_VALUE)
        )


def promote_champion(name: str, version: Any, score: float, metric: str) -> bool:
    """Point the ``champion`` alias at ``version`` when its ``metric`` (lower is better, e.g. the
    best FID) beats the current champion's; returns whether it moved. Only callers that know
    the run used the project's default settings call this (an ablation never does)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is not None:
        best = current.tags.get(metric)
        try:
            if best is not None and not float(score) < float(best):
                return False
        except ValueError:
            pass
    client.set_model_version_tag(name, str(version), metric, str(score))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return True


def is_experiment(env: Mapping[str, str] | None = None) -> bool:
    """True inside ``dvc exp run`` (queued, temp or workspace): settings may differ from HEAD."""
    env = os.environ if env is None else env
    return bool(env.get("DVC_EXP_NAME") or env.get("DVC_EXP_BASELINE_REV"))


def download_registered_state(uri: str, dest: str | os.PathLike) -> Path:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> the version's state-dict
    artifact (``{"state", "config"}``, loads with ``weights_only=True``) under ``dest``."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if match is None:
        raise SketchganError(f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>")
    name, alias, number = match.groups()
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        version = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, number)
        )
        artifacts = client.list_artifacts(version.run_id, "state_dicts")
    except MlflowException as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise SketchganError(f"{uri}: not in the model registry ({first})") from exc
    files = [a.path for a in artifacts if a.path.endswith(".pt")]
    if not files:
        raise SketchganError(f"{uri}: run {version.run_id} has no state-dict artifact")
    mlflow = _mlflow()
    local = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=files[0], dst_path=str(dest)
    )
    return Path(local)


# --------------------------------------------------------------------------- UI server


def serve_ui(
    host: str = "127.0.0.1",
    port: int = 5000,
    uri: str | None = None,
    root: str | os.PathLike | None = None,
    wait: bool = True,
) -> subprocess.Popen:
    """Run ``mlflow ui`` (1 worker, no job runner: ~0.5 GB instead of ~3 GB).

    Loopback by default; pass ``host="0.0.0.0"`` deliberately to expose it. The server gets its
    own process group so it can be stopped as a whole; with ``wait`` (the CLI) this call blocks
    until Ctrl-C and then stops it, otherwise the caller stops it with ``stop_ui``.
    """
    uri = resolve_uri(uri, root)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", host, "--port", str(port), "--workers", "1"]
    artifact_root = artifact_root_for(uri)
    if artifact_root is not None:
        cmd += ["--artifacts-destination", str(artifact_root)]
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    if wait:
        _block_until_interrupted(proc, port)
    return proc


class _Stopped(Exception):
    """SIGTERM/SIGHUP while serving: stop the server, then exit quietly."""


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise _Stopped(signum)


def _block_until_interrupted(proc: subprocess.Popen, port: int) -> None:
    """Wait for Ctrl-C, ``kill`` or a closed terminal, and stop the server with us (it runs in
    its own process group, so it would otherwise outlive us); a server that stops by itself
    failed (``mlflow ui`` exits 0 even when it cannot bind the port)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _raise_stopped)
    try:
        code = proc.wait()
    except (KeyboardInterrupt, _Stopped):
        return
    finally:
        stop_ui(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise SketchganError(f"mlflow ui: stopped by itself (code {code}); is port {port} in use?")


def wait_for_ui(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``<url>/health`` until the server answers; errors on timeout or early exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SketchganError(f"mlflow ui: exited with code {proc.returncode} before ready")
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise SketchganError(f"mlflow ui: {url} not ready after {timeout_s:.0f} s")


def stop_ui(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate the server's process group (uvicorn may fork), killing it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
