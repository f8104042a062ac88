"""Images per second of generator pretraining per setting (threads x batch), measured in-process.

Each setting builds a fresh 32 px GAN at the embedded default's architecture, warms up for
``--warmup`` steps and times ``--iters`` full pretraining steps (D step, lazy R1, G step, EMA) on
random "real" batches. Results are printed as one JSON line per setting; the table lives in
``reports/bench_pretrain.md``.

Usage:
    .venv/bin/python reports/bench_pretrain_throughput.py --threads 1,2 --batch 8,32
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from sketchgan.runtime import load_params
from sketchgan.training.pretrain import (
    GeneratorPretrainConfig,
    _build_gan,
    _train_step,
    ema_beta,
    update_ema,
)

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults


def measure(threads: int, batch: int, iters: int, warmup: int, cmax: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = GeneratorPretrainConfig.from_params(
        PARAMS, device="cpu", batch_size=batch, n_mlp=2, channel_max=cmax, iterations=iters
    )
    state = _build_gan(cfg, torch.device("cpu"))
    real = torch.rand(batch, 3, cfg.size, cfg.size) * 2 - 1
    t0 = 0.0
    for i in range(warmup + iters):
        if i == warmup:
            t0 = time.perf_counter()
        _train_step(state, cfg, real, torch.device("cpu"))
        update_ema(state.g_ema, state.g, ema_beta(batch, cfg.ema_kimg, cfg.ema_rampup, i * batch))
        state.iteration += 1
    wall = time.perf_counter() - t0
    return {
        "threads": threads,
        "batch": batch,
        "channel_max": cmax,
        "ms_per_iter": round(1000 * wall / iters, 1),
        "img_per_s": round(batch * iters / wall, 1),
        "load_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="8,32")
    ap.add_argument("--cmax", type=int, default=32)
    ap.add_argument("--iters", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=4)
    a = ap.parse_args()
    for b in (int(x) for x in a.batch.split(",")):
        for t in (int(x) for x in a.threads.split(",")):
            print(json.dumps(measure(t, b, a.iters, a.warmup, a.cmax)), flush=True)


if __name__ == "__main__":
    main()
