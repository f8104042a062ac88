"""The long, resumable pretraining run behind the shipped embedded generator (and its curve).

Trains ``train_generator`` on ``--scenes`` world renders in chunks of ``--chunk`` iterations
(each chunk resumes the previous one bit for bit from ``pretrain_state.pt``), and after every
chunk scores g_ema (psi 1) with the world evaluator: efid of ``--n-score`` samples against as
many fresh real renders, precision/recall (k=3), the predicted shape histogram and the share in
the embedded target pose. One JSON line per chunk goes to ``<out>/curve.jsonl`` (the efid-vs-kimg
curve in ``reports/pretrain_curve.md``). Killed at any point, the same command continues where
it stopped. It ends after ``--iters`` iterations or at the first chunk boundary past
``--deadline`` (a Unix time), whichever comes first.

Usage (one thread per run, as measured in reports/bench_pretrain.md):
    nohup .venv/bin/python reports/pretrain_long.py --out outputs/zoo/runA --iters 20000 \
        --over '{"batch_size": 32, "lr": 0.0025, "r1_gamma": 0.01}' > runA.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sketchgan.checkpoints import load_checkpoint, load_generator
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, save_evaluator, train_evaluator
from sketchgan.evaluation.zoo_quality import generator_quality
from sketchgan.runtime import load_params, seed_everything
from sketchgan.training import pretrain
from sketchgan.training.pretrain import GeneratorPretrainConfig, train_generator
from sketchgan.training.state import tensor_fingerprint

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults
# the evaluator these scripts score with: the zoo's recipe (zoo.yaml), seed 7
ZOO_EVALUATOR = dict(
    size=32,
    seed=7,
    device="cpu",
    **{k: v for k, v in PARAMS["evaluator"].items()},
)


def chunk_config(settings: dict, iterations: int) -> GeneratorPretrainConfig:
    """The pretraining settings of a chunk that ends at ``iterations``."""
    return GeneratorPretrainConfig.from_params(
        PARAMS,
        device="cpu",
        iterations=iterations,
        sample_every=0,
        checkpoint_every=250,
        **settings["over"],
    )


def seed_state(init: Path, cfg: GeneratorPretrainConfig, images: torch.Tensor, out: Path) -> None:
    """Write the resumable state of iteration 0 with ``init``'s weights (strictly loaded; fresh
    optimisers), so the first chunk continues from it exactly as ``train_generator`` would have
    started. A state already in ``out`` is kept: the run is resuming."""
    path = out / pretrain.GENERATOR_STATE_FILE
    if path.exists():
        return
    saved = load_checkpoint(init)
    seed_everything(cfg.seed)  # as train_generator seeds before building the networks
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)
    state = pretrain._build_gan(cfg, torch.device("cpu"))
    for name in ("g", "g_ema", "d"):
        getattr(state, name).load_state_dict(saved[name])
    pretrain._save_gan_state(state, cfg, path, data_gen, tensor_fingerprint(images.float()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--scenes", type=int, default=50000)
    ap.add_argument("--n-score", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=0.0)
    ap.add_argument("--evaluator", type=Path, default=Path("outputs/zoo/evaluator.pt"))
    ap.add_argument("--over", default="{}")
    ap.add_argument(
        "--init",
        type=Path,
        default=None,
        help="generator.pt (g_ema, g, d) the run starts from instead of StyleGAN2's init",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    over = json.loads(a.over)
    settings = {
        "command": shlex.join(["python", "reports/pretrain_long.py", *sys.argv[1:]]),
        "scenes": a.scenes,
        "threads": a.threads,
        "over": {"n_mlp": 2, **over},
        "init": str(a.init) if a.init else None,
    }
    (a.out / "settings.json").write_text(json.dumps(settings, indent=1))
    if not a.evaluator.exists():
        # The pipeline's evaluator settings (params.yaml `evaluator`, seed 0 + 7).
        a.evaluator.parent.mkdir(parents=True, exist_ok=True)
        save_evaluator(train_evaluator(**ZOO_EVALUATOR)[0], a.evaluator)
    evaluator = load_evaluator(a.evaluator)
    images = world.render_scenes(a.scenes, 32, seed=0)[0]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    del images
    if a.init is not None:
        seed_state(a.init, chunk_config(settings, min(a.chunk, a.iters)), x, a.out)
    curve = a.out / "curve.jsonl"
    done = set()
    if curve.exists():
        done = {json.loads(line)["it"] for line in curve.read_text().splitlines() if line}
    start = time.time()
    it = 0
    while it < a.iters:
        it = min(it + a.chunk, a.iters)
        if it in done:
            continue
        if a.deadline and time.time() > a.deadline:
            break
        cfg = chunk_config(settings, it)
        t0 = time.time()
        result = train_generator(x, cfg, a.out)
        train_s = time.time() - t0
        g = load_generator(a.out / "generator.pt")[0].eval()
        q = generator_quality(g, evaluator, n=a.n_score, seed=1)
        shutil.copy(a.out / "samples.png", a.out / f"samples_{it:06d}.png")
        shutil.copy(a.out / "generator.pt", a.out / f"generator_{it:06d}.pt")
        row = {
            "it": it,
            "kimg": it * cfg.batch_size / 1000,
            "chunk_train_s": round(train_s, 1),
            "ms_per_iter": round(result["ms_per_iter"], 1),
            "load": round(os.getloadavg()[0], 2),
            "elapsed_s": round(time.time() - start),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in q.items()},
        }
        with curve.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        # keep only every 4th chunk's generator snapshot (a few MB each)
        old = a.out / f"generator_{it - a.chunk:06d}.pt"
        if old.exists() and ((it - a.chunk) // a.chunk) % 4:
            old.unlink()
    np.save(a.out / "done.npy", np.array([it]))


if __name__ == "__main__":
    main()
