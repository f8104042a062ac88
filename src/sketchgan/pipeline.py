"""What every stage module shares: its MLflow run, its timing, its summary file.

Stage modules in ``stages/`` stay thin: they read their params, call the library and hand the
result to ``finish``. The summary goes to ``reports/stages/<stage>.json`` (a DVC metrics file),
which the report stage reads for timings and counts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sketchgan import tracking
from sketchgan.io import write_json
from sketchgan.runtime import pick_device, repo_root, seed_everything, store_root

SUMMARY_DIR = Path("reports/stages")
USER_SKETCHES = Path("data/sketches/images")
PHOTO_SKETCHES = Path("data/photo_sketches")


def user_sketch_dir(params: dict[str, Any]) -> Path:
    """The sketches the user asked for: drawn ones (``prepare``: synthetic or
    ``prepare.user_sketches``) or, with ``photosketch.user_photos``, the sketches the photosketch
    stage made from their photos. Training, the Chamfer baseline, the sketch metrics and the
    report all read this one folder, so they never disagree about what "the sketches" are."""
    if (params.get("photosketch") or {}).get("user_photos"):
        return PHOTO_SKETCHES
    return USER_SKETCHES


def stage_params(params: dict[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """The slice of params.yaml a stage depends on (what its MLflow run records)."""
    out: dict[str, Any] = {k: params[k] for k in ("seed", "device") if k in params}
    for name in sections:
        if name in params:
            out[name] = params[name]
    return out


@contextlib.contextmanager
def tracked_stage(
    stage: str, params: dict[str, Any], sections: tuple[str, ...]
) -> Iterator[dict[str, Any]]:
    """Seed, pick the device, open the stage's MLflow run; yields a mutable summary dict.

    The summary (plus ``seconds``) is written to ``reports/stages/<stage>.json`` and logged to
    the run as metrics when the body succeeds.
    """
    cfg = params.get("tracking") or {}
    seed = int(params.get("seed", 0))
    seed_everything(seed)
    summary: dict[str, Any] = {"stage": stage}
    started = time.perf_counter()
    with tracking.stage_run(
        stage,
        stage_params(params, sections),
        enabled=bool(cfg.get("enabled", True)),
        required=bool(cfg.get("required", True)),
        uri=cfg.get("uri"),
        root=store_root(),
    ):
        yield summary
        summary["seconds"] = round(time.perf_counter() - started, 2)
        tracking.log_step_metrics(
            {k: v for k, v in _flat(summary).items() if isinstance(v, int | float)}, step=0
        )
        write_json(repo_root() / SUMMARY_DIR / f"{stage}.json", summary)


def device_of(params: dict[str, Any]):
    return pick_device(str(params.get("device", "auto")))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif not isinstance(v, bool):
            out[key] = v
    return out
