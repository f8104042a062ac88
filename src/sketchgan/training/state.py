"""Resumable-checkpoint helpers shared by the training loops (fine-tuning, pretraining).

A resumed run must continue *bit for bit* like an uninterrupted one, which means saving more
than weights: optimiser moments, every random-number stream that the loop draws from (global
CPU/CUDA, Python, NumPy and the loop's own named generators), and the step. Everything is
stored as plain tensors/containers so that ``torch.load(..., weights_only=True)`` can read it.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchgan.errors import SketchganError
from sketchgan.io import save_torch

CHECKPOINT_NAME = "checkpoint.pt"


def capture_rng(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Snapshot every RNG stream the training loop may touch."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "python": _python_state_to_tensor(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Inverse of :func:`capture_rng`; a named generator missing from ``state`` is an error."""
    torch.set_rng_state(state["torch_cpu"])
    random.setstate(_python_state_from_tensor(state["python"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = state["torch_cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    for name, gen in (generators or {}).items():
        if name not in state["generators"]:
            raise SketchganError(f"checkpoint: RNG stream '{name}' is missing")
        gen.set_state(state["generators"][name])


def _python_state_to_tensor(st: tuple) -> dict[str, Any]:
    version, internal, gauss = st
    return {
        "version": int(version),
        "internal": torch.tensor(internal, dtype=torch.int64),
        "gauss": gauss,
    }


def _python_state_from_tensor(st: Mapping[str, Any]) -> tuple:
    return (st["version"], tuple(int(v) for v in st["internal"].tolist()), st["gauss"])


def checkpoint_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / CHECKPOINT_NAME


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before the newest one is kept (the fallback of a damaged one)."""
    path = Path(path)
    return path.with_name(f"{path.stem}_prev{path.suffix}")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomic write that keeps the last two checkpoints: the newest at ``path``, the one before
    at ``previous_path(path)``. A kill at any moment leaves at least one good file, and
    leftovers of earlier killed saves are removed."""
    path = Path(path)
    if path.is_file():
        os.replace(path, previous_path(path))
    save_torch(dict(state), path)


def _nonfinite(obj: Any, where: str = "") -> str | None:
    """The first floating-point tensor holding NaN/Inf, by its key path, else None."""
    if torch.is_tensor(obj):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            return where or "tensor"
        return None
    items = (
        obj.items()
        if isinstance(obj, Mapping)
        else enumerate(obj)
        if isinstance(obj, (list, tuple))
        else ()
    )
    for key, value in items:
        found = _nonfinite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _load_verified(path: Path) -> dict[str, Any]:
    """CRC-checked, weights-only, with a step and finite numbers everywhere."""
    from sketchgan.checkpoints import load_checkpoint as load_file  # the one torch.load

    state = load_file(path)
    if "step" not in state:
        raise SketchganError(f"{path}: not a training checkpoint (no 'step')")
    bad = _nonfinite(state)
    if bad:
        raise SketchganError(f"{path}: non-finite values in '{bad}'")
    return dict(state)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The newest good checkpoint: ``path``, or the previous one when ``path`` is damaged
    (truncated, a flipped byte, NaN/Inf), with a warning naming the file; None when there is
    none. When every copy is damaged the error names them and how to start over."""
    path = Path(path)
    candidates = [p for p in (path, previous_path(path)) if p.is_file()]
    if not candidates:
        return None
    problems = []
    for candidate in candidates:
        try:
            state = _load_verified(candidate)
        except SketchganError as exc:
            problems.append(str(exc))
            continue
        if problems:
            warnings.warn(
                f"{problems[0]}; resuming from the previous checkpoint {candidate.name} "
                f"(step {state['step']})",
                stacklevel=2,
            )
        return state
    raise SketchganError(
        f"{'; '.join(problems)}; no good checkpoint left: delete them (or use --fresh) "
        "to start over"
    )


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """Fields whose values differ, as ``name: saved -> current`` lines (ignored keys skipped)."""
    skip = set(ignore)
    keys = sorted((set(saved) | set(current)) - skip)
    return [
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


def tensor_fingerprint(tensor: torch.Tensor | None) -> str:
    """sha256 of a tensor's shape and bytes: detects a resume against different data."""
    if tensor is None:
        return "none"
    t = tensor.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


class StopRequest:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at its next safe point.

    A second Ctrl-C falls through to the default behaviour, so a hung save can still be
    interrupted. Handlers can only be installed from the main thread; elsewhere this is inert.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if self.enabled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    @property
    def requested(self) -> bool:
        return self.signal is not None
