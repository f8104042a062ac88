"""Device choice, seeding and the parameter file: the few things every stage needs first."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sketchgan.errors import SketchganError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present; an explicit device that is missing is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SketchganError(f"device: '{name}' requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise SketchganError(f"device: expected auto, cpu or cuda[:N], got '{name}'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a CPU generator for explicit sampling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def repo_root() -> Path:
    """The project root whose data, models and outputs a stage reads and writes.

    Under DVC (``DVC_STAGE`` set) it is the working directory DVC runs the stage in: for
    ``dvc exp run --temp``/``--queue`` that is the experiment's own copy in ``.dvc/tmp/exps``,
    while ``DVC_ROOT`` still names the parent workspace (which is where the MLflow store
    stays, see ``tracking``). Outside DVC, ``DVC_ROOT`` if set, else the cwd.
    """
    if os.environ.get("DVC_STAGE"):
        return Path(os.getcwd())
    return store_root()


def store_root() -> Path:
    """Where the MLflow store lives: the user's workspace, also for an experiment DVC runs in a
    throw-away copy (``--temp``, ``--queue``), so ``sketchgan ui`` shows every run. DVC names
    that workspace in ``DVC_ROOT`` for every stage it runs; outside DVC it is the cwd."""
    return Path(os.environ.get("DVC_ROOT", os.getcwd()))


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SketchganError(f"{path}: parameter file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SketchganError(f"{path}: invalid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise SketchganError(f"{path}: expected a mapping at the top level")
    check_run_settings(data)
    return data


#: the fields of the ``tracking`` section and their types
TRACKING_FIELDS: dict[str, tuple[type, ...]] = {
    "enabled": (bool,),
    "uri": (str, type(None)),
    "register_models": (bool,),
    "required": (bool,),
}


def check_run_settings(params: dict[str, Any]) -> None:
    """The settings every stage reads before its own section (``seed``, ``device``,
    ``tracking``), checked once at load: a bad one names its field instead of failing later
    inside a stage (``seed: 1.5``, ``tracking: yes``)."""
    if "seed" in params:
        seed = params["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SketchganError(f"params: 'seed' must be an integer >= 0, got {seed!r}")
    if "device" in params and not isinstance(params["device"], str):
        raise SketchganError(
            f"params: 'device' must be auto, cpu or cuda[:N], got {params['device']!r}"
        )
    if "tracking" not in params:
        return
    tracking = params["tracking"]
    if not isinstance(tracking, dict):
        raise SketchganError(
            f"params: 'tracking' must be a section (enabled, uri, register_models, required), "
            f"got {tracking!r}"
        )
    for key, value in tracking.items():
        if key not in TRACKING_FIELDS:
            raise SketchganError(
                f"params: 'tracking.{key}' is not a setting (known: {', '.join(TRACKING_FIELDS)})"
            )
        if not isinstance(value, TRACKING_FIELDS[key]) or (
            bool not in TRACKING_FIELDS[key] and isinstance(value, bool)
        ):
            kinds = " or ".join(
                "null" if t is type(None) else t.__name__ for t in TRACKING_FIELDS[key]
            )
            raise SketchganError(f"params: 'tracking.{key}' must be {kinds}, got {value!r}")


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A named section of params.yaml, with a clear error when it is missing."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise SketchganError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value


def get_param(
    cfg: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    *,
    minimum: float | None = None,
    choices: tuple | None = None,
) -> Any:
    """Read and check one parameter; errors name the field as ``section.key``."""
    if key not in cfg:
        raise SketchganError(f"params: '{where}.{key}' is missing")
    value = cfg[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise SketchganError(f"params: '{where}.{key}' must be a number, got {value!r}")
    if not isinstance(value, kind):
        raise SketchganError(f"params: '{where}.{key}' has the wrong type: {value!r}")
    if minimum is not None and value < minimum:
        raise SketchganError(f"params: '{where}.{key}' must be >= {minimum}, got {value!r}")
    if choices is not None and value not in choices:
        raise SketchganError(f"params: '{where}.{key}' must be one of {choices}, got {value!r}")
    return value
