"""MLflow tracking for pipeline stages: one run per stage, grouped per pipeline execution; the
metrics, images and models logged into it. Where a run comes from (git, DVC fingerprints, the
process, the pipeline key) is ``sketchgan.provenance``; the UI server is ``sketchgan.mlflow_ui``.

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
import logging
import math
import os
import re
import shutil
import socket
import tempfile
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
from sketchgan.provenance import (
    MAX_TAG_VALUE,
    PROCESS_TAG,
    _process_gone,
    describe_changes,
    dvc_tags,
    flatten_params,
    git_tags,
    params_changes,
    pipeline_key,
    process_identity,
    sanitize_key,
    truncate_value,
)
from sketchgan.runtime import store_root

CHAMPION = "champion"  # alias of the best default-settings fine-tuned generator
PIPELINE_EXPERIMENT = "sketchgan-pipeline"
PIPELINE_TAG = "sketchgan.pipeline"
STAGE_TAG = "sketchgan.stage"
EXPERIMENT_PREFIX = "sketchgan-"
MODEL_PREFIX = "sketchgan-"

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


def open_store(uri: str | None = None, root: str | os.PathLike | None = None) -> None:
    """Configure and open the store now (a new SQLite store creates its tables: seconds), so
    that a process waiting for work does not make its first run wait for that."""
    configure(uri, root)
    _client().search_experiments(max_results=1)


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


# --------------------------------------------------------------------------- pipeline grouping


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
        with _quiet_mlflow():  # a broken store: our one line, not MLflow's logged traceback
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


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow logs a store's SQL errors with their traceback before raising them."""
    _mlflow()  # importing it configures its loggers: do that before quieting them
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic", "sqlalchemy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


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
