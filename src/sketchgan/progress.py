"""Progress of the long steps (pretraining, fine-tuning): a tqdm bar on a terminal, one plain
line every so often in a log file or CI, so a researcher sees iteration, losses, the last FID
and the time left either way."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from tqdm import tqdm

SHOWN = 3  # losses in the bar's postfix (the first ones the loop reports)


class TrainingProgress:
    """``update(step, metrics)`` from a loop's log callback; ``note(fid=...)`` adds a value
    that stays shown until replaced; ``close()`` at the end (or use it as a context)."""

    def __init__(
        self,
        total: int,
        desc: str,
        stream: IO[str] | None = None,
        line_every_s: float = 30.0,
    ) -> None:
        self.total = int(total)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.line_every_s = line_every_s
        self.extra: dict[str, float] = {}
        self.step = 0
        self._start = time.monotonic()
        self._first_step: int | None = None
        self._last_line: float | None = None  # not 0: the monotonic clock may start near 0
        self.bar = (
            tqdm(total=self.total, desc=desc, file=self.stream, dynamic_ncols=True, leave=True)
            if self.tty
            else None
        )

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def note(self, **values: float) -> None:
        self.extra.update({k: float(v) for k, v in values.items()})

    def _postfix(self, metrics: Mapping[str, float]) -> dict[str, str]:
        shown = dict(list(metrics.items())[:SHOWN])
        shown.update(self.extra)
        return {k: f"{v:.3g}" for k, v in shown.items()}

    def eta_s(self) -> float | None:
        if self._first_step is None or self.step <= self._first_step:
            return None
        rate = (time.monotonic() - self._start) / (self.step - self._first_step)
        return rate * max(self.total - self.step, 0)

    def update(self, step: int, metrics: Mapping[str, float] | None = None) -> None:
        if self._first_step is None:  # a resumed run starts part-way
            self._first_step, self._start = step, time.monotonic()
        self.step = int(step)
        metrics = dict(metrics or {})
        if self.bar is not None:
            self.bar.n = self.step
            self.bar.set_postfix(self._postfix(metrics), refresh=True)
            return
        now = time.monotonic()
        due = self._last_line is None or now - self._last_line >= self.line_every_s
        if due or self.step >= self.total:
            self._last_line = now
            eta = self.eta_s()
            parts = [f"{k} {v}" for k, v in self._postfix(metrics).items()]
            tail = f", ETA {eta:.0f} s" if eta is not None and self.step < self.total else ""
            self.stream.write(
                f"{self.desc}: {self.step}/{self.total}"
                + (f" ({', '.join(parts)})" if parts else "")
                + tail
                + "\n"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
