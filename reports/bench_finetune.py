"""Milliseconds per GANSketching fine-tuning iteration, per phase, at both configurations.

Random-init networks of the embedded architecture (``--config embedded``: StyleGAN2 32 px,
style_dim 128, channel_max 32, 2 mapping layers as in params.yaml; PhotoSketch ngf 16, 9
blocks) or of the paper's (``--config 256``: 256 px config-f, style_dim 512, 8 mapping layers;
PhotoSketch ngf 64), batch 4, run through the real ``finetune`` loop on the CPU with the
params.yaml settings (the paper's: mapping-only, l_image 0.7, translation). Each phase (D step,
lazy R1, G step) is timed by wrapping the trainer's methods (median over iterations after
warm-up); R1 runs every ``d_reg_every`` iterations, so "R1/it" is its amortised share. Times
in ms; "CPU" columns count this process's CPU time.

    .venv/bin/python reports/bench_finetune.py [--config embedded|256] [--iters 40]
        [--threads 1] [--repeats 3] [--rows default,no_augment,...]

The numbers depend on what else runs on the machine; report the command with them. The
reference implementation's step, timed beside ours, is ``reports/bench_reference.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import Discriminator, Generator
from sketchgan.runtime import load_params
from sketchgan.training import finetune as ft

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults
CONFIGS = {
    "embedded": (
        dict(size=32, style_dim=128, n_mlp=2, channel_multiplier=2, channel_max=32),
        dict(input_nc=3, output_nc=1, ngf=16, n_blocks=9),
    ),
    "256": (
        dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512),
        dict(input_nc=3, output_nc=1, ngf=64, n_blocks=9),
    ),
}
ROWS = {
    "default": {},  # params.yaml: the paper's method (mapping-only)
    "full": {"tune": "full"},  # the whole generator tuned
    "no_augment": {"augment": False},
    "l_image_0": {"l_image": 0.0},
    "w_shift": {"tune": "w_shift"},
    "l_weight_1": {"l_weight": 1.0},
    "d_unfrozen": {},  # D keeps requires_grad in the G step (the waste removed)
}


def _inputs(root: Path, config: str) -> tuple[Path, Path, torch.Tensor, torch.Tensor]:
    arch, ps_cfg = CONFIGS[config]
    size = arch["size"]
    torch.manual_seed(0)
    g = Generator(**arch)
    d = Discriminator(size, channel_multiplier=2, channel_max=arch["channel_max"])
    gpath, ppath = root / "generator.pt", root / "photosketch.pt"
    torch.save(
        {"g_ema": g.state_dict(), "g": g.state_dict(), "d": d.state_dict(), "config": arch}, gpath
    )
    torch.save({"state": ResnetGenerator(**ps_cfg).state_dict(), "config": ps_cfg}, ppath)
    gen = torch.Generator().manual_seed(1)
    sketches = torch.rand(30, 1, size, size, generator=gen) * 2 - 1
    images = torch.rand(64, 3, size, size, generator=gen) * 2 - 1
    return gpath, ppath, sketches, images


class _PhaseTimer:
    """Wrap the trainer's step methods to collect wall and CPU time per phase.

    CPU time (``time.process_time``: all threads of this process) is the steadier number on a
    shared machine: time slices lost to other users' processes do not count.
    """

    PHASES = ("d_step", "r1_step", "g_step")

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.wall: dict[str, list[float]] = {k: [] for k in self.PHASES}
        self.cpu: dict[str, list[float]] = {k: [] for k in self.PHASES}
        self.calls = dict.fromkeys(self.PHASES, 0)
        self.originals = {name: getattr(ft._Trainer, name) for name in self.PHASES}

    def __enter__(self) -> _PhaseTimer:
        for name, fn in self.originals.items():
            setattr(ft._Trainer, name, self._wrap(name, fn))
        return self

    def __exit__(self, *exc) -> None:
        for name, fn in self.originals.items():
            setattr(ft._Trainer, name, fn)

    def _wrap(self, name, fn):
        def timed(trainer, *args):
            w0, c0 = time.perf_counter(), time.process_time()
            out = fn(trainer, *args)
            self.calls[name] += 1
            if self.calls[name] > self.warmup or name == "r1_step":
                self.wall[name].append(time.perf_counter() - w0)
                self.cpu[name].append(time.process_time() - c0)
            return out

        return timed


def bench(row: str, iters: int, warmup: int, inputs, root: Path) -> dict[str, float]:
    cfg = ft.FinetuneConfig.from_params(
        PARAMS,
        iters=iters,
        batch=4,
        checkpoint_every=0,
        sample_every=0,
        eval_every=0,
        log_every=iters,
        device="cpu",
        **ROWS[row],
    )
    gpath, ppath, sketches, images = inputs
    keep = ft.set_requires_grad
    if row == "d_unfrozen":
        ft.set_requires_grad = lambda params, flag: keep(params, True)
    try:
        with _PhaseTimer(warmup) as timer:
            out = Path(tempfile.mkdtemp(prefix=f"out_{row}_", dir=root))  # never resume
            c0 = time.process_time()
            res = ft.finetune(cfg, gpath, ppath, sketches, images, out, handle_signals=False)
            cpu_total = time.process_time() - c0
    finally:
        ft.set_requires_grad = keep

    def med(d: list[float]) -> float:
        return 1000 * statistics.median(d) if d else 0.0

    return {
        "wall_ms": res.ms_per_iter,
        "cpu_ms": 1000 * cpu_total / iters,  # includes set-up (loading, first iterations)
        "d_cpu": med(timer.cpu["d_step"]),
        "g_cpu": med(timer.cpu["g_step"]),
        "r1_cpu": med(timer.cpu["r1_step"]),
        "r1_per_it": 1000 * sum(timer.cpu["r1_step"]) / iters,
        "d_wall": med(timer.wall["d_step"]),
        "g_wall": med(timer.wall["g_step"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="embedded")
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    p.add_argument("--repeats", type=int, default=1, help="runs per row; the fastest is shown")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    arch, ps_cfg = CONFIGS[args.config]
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, iters {args.iters}, "
        f"batch 4, {args.config}: {arch}, photosketch {ps_cfg}"
    )
    cols = (
        "config",
        "wall ms/it",
        "CPU ms/it",
        "D cpu",
        "G cpu",
        "R1 cpu",
        "R1/it",
        "D wall",
        "G wall",
    )
    header = f"{cols[0]:<12}" + "".join(f"{c:>11}" for c in cols[1:])
    print(header)
    print("-" * len(header))
    keys = ("wall_ms", "cpu_ms", "d_cpu", "g_cpu", "r1_cpu", "r1_per_it", "d_wall", "g_wall")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs = _inputs(root, args.config)
        for row in args.rows.split(","):
            runs = [bench(row, args.iters, args.warmup, inputs, root) for _ in range(args.repeats)]
            r = min(runs, key=lambda x: x["cpu_ms"])  # the least disturbed run on a shared box
            print(f"{row:<12}" + "".join(f"{r[k]:>11.1f}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
