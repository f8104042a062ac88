"""Where a run comes from: the git commit, the params that differ from the committed ones, the
DVC stage and its lock fingerprint, the process that runs it, and the key that groups the stages
of one ``dvc repro``/``dvc exp run``. Pure functions of the checkout and the process table; no
MLflow calls (``sketchgan.tracking`` turns them into tags and run names).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_PIPELINE_RUN = "SKETCHGAN_PIPELINE_RUN"
_log = logging.getLogger(__name__)

# MLflow limits (mlflow.utils.validation): param values 6000 chars, keys 250 chars.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_TAG_VALUE = 8000
_TRUNCATION_MARK = "...[truncated {n} chars]"
_GIT_TIMEOUT_S = 5


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
