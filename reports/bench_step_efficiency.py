"""Do the generator's steps add up, or cancel?  (A diagnostic of a fine-tuning run.)

The paper's mapping-only run moves w slowly and then stalls (`reports/mapping_long_run.md`). One
explanation is that the adversarial G steps change direction from batch to batch, so most of
each step is undone by the next ones. This measures it directly: from a checkpoint of a run (or
from the start), continue the same run for WINDOW iterations and record every G step (the change
of the tuned tensors made by Adam). For blocks of K consecutive steps, the *efficiency* is
|sum of the K steps| / sum of |each step| (L2 over all tuned tensors): 1 when every step points
the same way, ~1/sqrt(K) for steps in random directions, smaller still when they undo each other.

Run inside a project where `make demo` (or `sketchgan prepare && sketchgan pretrain`) has
written data/ and models/pretrained/:

    .venv/bin/python reports/bench_step_efficiency.py GEN START_CHECKPOINT|none WINDOW '{overrides}'

START_CHECKPOINT is a fine-tuning `checkpoint.pt` made with the same overrides (the resume
refuses any other run); `none` starts from iteration 0.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_finetune_curve import apply_diagnostics, continue_run

from sketchgan.checkpoints import load_checkpoint
from sketchgan.io import load_image_folder
from sketchgan.training import finetune as ft

BLOCKS = (1, 10, 100, 1000)  # K: steps per block


class StepRecorder:
    """Wraps a trainer's G optimiser: the change of the tuned tensors at every step."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def attach(self, trainer: ft._Trainer) -> None:
        params, optim = trainer.g_trained, trainer.g_optim
        original = optim.step

        def step(*args, **kwargs):
            before = torch.cat([p.detach().reshape(-1) for p in params]).clone()
            out = original(*args, **kwargs)
            after = torch.cat([p.detach().reshape(-1) for p in params])
            self.steps.append(after - before)
            return out

        optim.step = step


def efficiency(steps: list[torch.Tensor], k: int) -> float | None:
    """Mean over non-overlapping blocks of ``k`` steps of |sum| / sum of |step|."""
    blocks = [torch.stack(steps[i : i + k]) for i in range(0, len(steps) - k + 1, k)]
    ratios = []
    for b in blocks:
        total = float(b.norm(dim=1).sum())
        if total > 0:
            ratios.append(float(b.sum(0).norm()) / total)
    return round(sum(ratios) / len(ratios), 4) if ratios else None


def recording_trainer(recorder: StepRecorder) -> None:
    """Every trainer built from now on in this process has its G steps recorded."""
    build = ft._Trainer.__init__

    def init(self, *args, **kwargs) -> None:
        build(self, *args, **kwargs)
        recorder.attach(self)

    ft._Trainer.__init__ = init


def main() -> None:
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    gen, start_ckpt, window = sys.argv[1], sys.argv[2], int(sys.argv[3])
    over = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    settings = apply_diagnostics(over)
    out = Path(tempfile.mkdtemp(prefix="step_eff_"))
    start = 0
    if start_ckpt != "none":
        start = int(load_checkpoint(Path(start_ckpt))["step"])
        shutil.copyfile(start_ckpt, out / "checkpoint.pt")
    recorder = StepRecorder()
    recording_trainer(recorder)
    t0 = time.perf_counter()
    sketches = load_image_folder(Path("data/sketches/images"), "L")
    reg = load_image_folder(Path("data/image_reg/images"), "RGB")
    continue_run(gen, sketches, reg, out, start + window, settings, checkpoint_every=window)
    steps = recorder.steps
    row = {
        "start": start,
        "window": len(steps),
        "mean_step_norm": round(float(torch.stack(steps).norm(dim=1).mean()), 6),
        **{f"efficiency_{k}": efficiency(steps, k) for k in BLOCKS if k <= len(steps)},
        "overrides": over,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(row), flush=True)
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
