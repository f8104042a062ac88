"""The one training loop of the project: phases with their own interval, then periodic work.

Every network sketchgan trains (StyleGAN2 pretraining, GANSketching fine-tuning, the sketch
net, the world evaluator, the SBIR embedding) runs through ``TrainingLoop``. One iteration is

1. ``draw(step)``: the iteration's data and random draws, in a fixed order (the seam a test
   drives with recorded inputs, and what a resumed run repeats exactly);
2. every ``Phase`` due at ``step`` (``step % every == 0``), in order, on those inputs; each
   returns its named terms. Lazy regularisation is a phase with a longer interval, as in
   NVlabs' StyleGAN2-ADA training loop (R1 every 16 D steps, path length every 4 G steps);
3. every ``Periodic`` action due at the new step count (logging, sample grids, checkpoints,
   evaluation), and all of them marked ``at_end`` after the last iteration.

``should_stop`` is asked before each iteration (a time limit, an interactive Stop). Every
iteration's terms go into the loop's ``Meter``, the one loss meter of every trainer: its
logging reads interval means from it (and checkpoints its open sums). What is particular to a
network (its state, data, resume rules, outputs) stays in its trainer.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sketchgan.config import Section
from sketchgan.errors import SketchganError
from sketchgan.io import write_text
from sketchgan.training.state import config_differences

Terms = dict[str, Any]


def due(step: int, every: int) -> bool:
    """``every`` > 0 divides ``step`` (0 disables a periodic action)."""
    return every > 0 and step % every == 0


@dataclass(frozen=True)
class Phase:
    """One part of an iteration: ``run(inputs) -> named terms``, at steps divisible by
    ``every`` (counted from 0, so iteration 0 runs every phase)."""

    name: str
    every: int
    run: Callable[[Any], Mapping[str, Any]]


@dataclass(frozen=True)
class Periodic:
    """``run(step)`` after the iteration that brings the count to a multiple of ``every``,
    and after the last iteration when ``at_end``."""

    every: int
    run: Callable[[int], None]
    at_end: bool


@dataclass
class LoopEnd:
    step: int  # iterations done in total (a resumed run counts the earlier ones)
    ran: int  # iterations this call ran
    stopped: bool  # ``should_stop`` ended it before ``iters``
    seconds: float  # wall time inside iterations, periodic work excluded
    last: Terms = field(default_factory=dict)  # the last iteration's terms


class Meter:
    """Means of named terms over a logging interval, each over the iterations that produced
    it (a lazy R1 term over its R1 steps; a term the objective does not compute is absent,
    not zero). Tensor terms are summed where they live, so adding costs no device sync;
    ``read`` syncs once. Its state is checkpointed, so a resumed run writes the same rows.

    ``names`` maps each logged name to the term's key in the phases' output (or lists names
    that are both)."""

    def __init__(
        self,
        names: Mapping[str, str] | Sequence[str],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        pairs = list(names.items() if isinstance(names, Mapping) else ((n, n) for n in names))
        self.names = tuple(name for name, _ in pairs)
        self.keys = tuple(key for _, key in pairs)
        self.device, self.dtype = torch.device(device), dtype
        self._present: dict[tuple[bool, ...], torch.Tensor] = {}
        self.reset()

    def reset(self) -> None:
        """Start a new interval."""
        self.sums = torch.zeros(len(self.names), device=self.device, dtype=self.dtype)
        self.counts = torch.zeros(len(self.names), device=self.device, dtype=self.dtype)
        self.steps = 0

    def add(self, terms: Mapping[str, Any]) -> None:
        """One iteration's terms (tensors or numbers; keys not in ``names`` are ignored)."""
        self.steps += 1
        present = tuple(k in terms for k in self.keys)
        if not any(present):
            return
        if present not in self._present:
            self._present[present] = torch.tensor(present, dtype=self.dtype).to(self.device)
        zero = self.sums.new_zeros(())
        values = [terms[k] if k in terms else zero for k in self.keys]
        self.sums += torch.stack(
            [v.detach().to(self.dtype) if isinstance(v, torch.Tensor) else zero + v for v in values]
        )
        self.counts += self._present[present]

    def read(
        self,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        flags: Sequence[float] = (),
    ) -> tuple[dict[str, float], list[float]]:
        """The interval's means (terms never seen are left out) and ``flags``, after one
        ``all_reduce`` (a sum over processes) of sums, counts and flags together when given."""
        flag_t = torch.tensor(list(flags), dtype=self.dtype).to(self.device)
        packed = torch.cat([self.sums, self.counts, flag_t])
        if all_reduce is not None:
            packed = all_reduce(packed)
        values = packed.tolist()
        n = len(self.names)
        sums, counts = values[:n], values[n : 2 * n]
        means = {k: s / c for k, s, c in zip(self.names, sums, counts, strict=True) if c > 0}
        return means, values[2 * n :]

    def take(self) -> dict[str, float]:
        """The interval's means (one process), and a new interval begins."""
        means = self.read()[0]
        self.reset()
        return means

    def state(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "sums": self.sums.detach().cpu(),
            "counts": self.counts.detach().cpu(),
            "steps": self.steps,
        }

    def load(self, st: Mapping[str, Any] | None, where: str, start_over: str) -> None:
        """An open interval saved by ``state`` (None: start a new one)."""
        if st is None:
            self.reset()
            return
        if list(st.get("names", ())) != list(self.names):
            raise SketchganError(f"{where}: its loss meter logs other terms; {start_over}")
        self.sums = st["sums"].to(self.device, self.dtype).clone()
        self.counts = st["counts"].to(self.device, self.dtype).clone()
        self.steps = int(st["steps"])


def run_phases(phases: Sequence[Phase], step: int, inputs: Any) -> Terms:
    """The phases due at ``step`` on one iteration's inputs, in order; their terms merged."""
    terms: Terms = {}
    for phase in phases:
        if step % phase.every == 0:
            terms.update(phase.run(inputs))
    return terms


class TrainingLoop:
    def __init__(
        self,
        draw: Callable[[int], Any],
        phases: Sequence[Phase],
        periodic: Sequence[Periodic] = (),
        should_stop: Callable[[int], bool] | None = None,
        after_iteration: Callable[[int, Any, Terms], None] | None = None,
        on_nonfinite: Callable[[int, list[str]], Exception] | None = None,
        meter: Meter | None = None,
    ) -> None:
        """``after_iteration(step, inputs, terms)`` runs after the phases and before the
        periodic work (e.g. an EMA update); ``step`` is the new count.
        With ``on_nonfinite(step, names)`` every iteration's plain-number terms are checked and
        a NaN/Inf raises what it returns, before any periodic work (so no checkpoint of the
        broken state is written). Tensor terms are not read here: a trainer that keeps them on
        the device checks them at its own sync points with ``nonfinite``. Every iteration's
        terms go into ``meter`` (the trainer's periodic logging reads and resets it)."""
        if not phases:
            raise ValueError("TrainingLoop: no phases")
        for phase in phases:
            if phase.every < 1:
                raise ValueError(f"TrainingLoop: phase {phase.name!r} has interval {phase.every}")
        self.draw = draw
        self.phases = tuple(phases)
        self.periodic = tuple(periodic)
        self.should_stop = should_stop
        self.after_iteration = after_iteration
        self.on_nonfinite = on_nonfinite
        self.meter = meter
        self.seconds = 0.0  # wall time inside this call's iterations (periodic work excluded)

    def run(self, start: int, iters: int) -> LoopEnd:
        step, stopped, last = start, False, {}
        self.seconds = 0.0
        while step < iters:
            if self.should_stop is not None and self.should_stop(step):
                stopped = True
                break
            t0 = time.perf_counter()
            inputs = self.draw(step)
            last = run_phases(self.phases, step, inputs)
            step += 1
            if self.meter is not None:
                self.meter.add(last)
            if self.after_iteration is not None:
                self.after_iteration(step, inputs, last)
            self.seconds += time.perf_counter() - t0
            if self.on_nonfinite is not None:
                bad = nonfinite({k: v for k, v in last.items() if isinstance(v, int | float)})
                if bad:
                    raise self.on_nonfinite(step, bad)
            final = step == iters
            for action in self.periodic:
                if due(step, action.every) or (final and action.at_end):
                    action.run(step)
        return LoopEnd(step, step - start, stopped, self.seconds, last)


def check_resume(
    where: str,
    saved: Mapping[str, Any],
    config: Section,
    saved_step: int,
    length_field: str,
    start_over: str,
) -> None:
    """The one resume policy: a state continues only the run that wrote it. A changed setting
    that matters (``saved`` holds the writer's settings; the config's ``RESUME_FREE`` may
    differ) or a state already past the run's length is one error naming the field and how to
    start over; more iterations, other logging or another device continue."""
    diffs = config_differences(saved, config.to_dict(), config.RESUME_FREE)
    if diffs:
        raise SketchganError(
            f"{where}: written with other settings ({'; '.join(diffs)}); restore them, or "
            f"{start_over}"
        )
    length = getattr(config, length_field)
    if saved_step > length:
        raise config.fail(
            length_field,
            f"is {length} but {where} is already at {saved_step}; raise it to continue, or "
            f"{start_over}",
        )


def check_same_inputs(
    where: str, saved: Mapping[str, str], current: Mapping[str, str], start_over: str
) -> None:
    """The data a state was trained on (fingerprints by name) must be the data given now."""
    changed = [k for k, v in current.items() if saved.get(k) != v]
    if changed:
        raise SketchganError(
            f"{where}: written for different inputs ({', '.join(changed)}); {start_over}"
        )


def time_limit(start: float, limit_s: float) -> Callable[[int], bool]:
    """A ``should_stop`` for "stop once ``limit_s`` seconds (> 0) have passed since start"."""
    return lambda _step: limit_s > 0 and time.perf_counter() - start > limit_s


def write_rows(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None, missing: Any
) -> None:
    """The loss log as CSV, written atomically. ``columns`` fixes them (extra keys dropped);
    None takes every key in first-seen order. Absent values are written as ``missing``."""
    if not rows:
        return
    if columns is None:
        names: list[str] = []
        for row in rows:
            names.extend(k for k in row if k not in names)
        columns = names
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(columns), restval=missing, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def nonfinite(metrics: Mapping[str, float]) -> list[str]:
    """Names of the NaN/Inf values: the one test every trainer's stop guard uses."""
    return [k for k, v in metrics.items() if not math.isfinite(float(v))]


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite values only (NaN marks "not computed this interval" in the CSV)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
