"""The shipped generator with the paper's mapping depth: 8 layers instead of 2, same function.

The paper's mapping-only method stalls on the embedded default (`reports/mapping_long_run.md`),
and `bench_mapping_mobility.py` measured that one Adam step at the paper's lr moves the w of an
8-layer mapping about 14x further than our 2-layer one (both 128 wide). The direct test is the
paper's method, at its own lr, on a converged generator whose mapping has the paper's depth.
Pretraining one from scratch costs hours here, so this script builds it from the shipped one:
the synthesis network, noise buffers and discriminator are copied unchanged, and a fresh
8-layer mapping (StyleGAN2's initialisation, seeded) is regressed onto the shipped mapping's
output, w, for fresh z. The result samples (almost) the same images as the shipped generator;
only how w is parametrised differs, so a fine-tuning run from it isolates the mapping's depth.

Deviation from the paper, on purpose: its mapping is 512 wide (ours 128, the synthesis
network's style width; the mobility measurement puts most of the 8x512 factor in the depth),
and it is trained adversarially, not regressed.

    .venv/bin/python reports/deep_mapping.py GEN.pt OUT.pt [--n-mlp 8] [--steps 4000]

Prints one JSON line: the relative w error on held-out z, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from sketchgan.checkpoints import load_checkpoint, load_generator
from sketchgan.io import save_torch
from sketchgan.models.stylegan2 import Generator


def deep_copy_of(shallow: Generator, config: dict, n_mlp: int, seed: int) -> Generator:
    """A generator of ``config`` (``shallow``'s architecture) with an ``n_mlp``-layer mapping at
    StyleGAN2's init and every other tensor (synthesis, noise buffers) copied from ``shallow``."""
    torch.manual_seed(seed)
    deep = Generator(
        config["size"],
        config["style_dim"],
        n_mlp,
        config["channel_multiplier"],
        config["channel_max"],
    )
    rest = {k: v for k, v in shallow.state_dict().items() if not k.startswith("style.")}
    missing, unexpected = deep.load_state_dict(rest, strict=False)
    if unexpected or any(not k.startswith("style.") for k in missing):
        raise SystemExit(f"deep_mapping: layouts differ: {unexpected or missing}")
    return deep


def _relative_mse(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Mean squared w error over the mean squared spread of the target w (0: same w)."""
    spread = (want - want.mean(0, keepdim=True)).pow(2).sum(1).mean()
    return (got - want).pow(2).sum(1).mean() / spread


def relative_w_error(deep: nn.Module, shallow: nn.Module, z: torch.Tensor) -> float:
    """``deep``'s w error against ``shallow``'s on ``z`` (0: same mapping)."""
    with torch.no_grad():
        return float(_relative_mse(deep(z), shallow(z)))


def distil(
    deep: nn.Module, shallow: nn.Module, steps: int, batch: int, lr: float, seed: int
) -> list[tuple[int, float]]:
    """Regress ``deep`` onto ``shallow`` (both z -> w) with Adam and a cosine lr decay.

    The loss is the relative w error; the lr is for the stored (lr-multiplied) parameters, so
    it is large beside the paper's fine-tuning lr on purpose. Returns (step, held-out error)."""
    gen = torch.Generator().manual_seed(seed)
    held_out = torch.randn(4096, deep[1].weight.shape[1], generator=gen)
    opt = torch.optim.Adam(deep.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    trace = []
    for step in range(1, steps + 1):
        z = torch.randn(batch, held_out.shape[1], generator=gen)
        with torch.no_grad():
            want = shallow(z)
        loss = _relative_mse(deep(z), want)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 8) == 0 or step == steps:
            trace.append((step, relative_w_error(deep, shallow, held_out)))
    return trace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("generator", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n-mlp", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    start = time.time()
    shallow, shallow_config = load_generator(a.generator)
    shallow.eval()
    deep = deep_copy_of(shallow, shallow_config, a.n_mlp, a.seed)
    init_error = relative_w_error(deep.style, shallow.style, torch.randn(4096, deep.style_dim))
    trace = distil(deep.style, shallow.style, a.steps, a.batch, a.lr, a.seed + 1)
    state = deep.state_dict()
    config = {**shallow_config, "n_mlp": a.n_mlp}
    # g and g_ema both get the distilled mapping on g_ema's synthesis: fine-tuning starts
    # from g_ema (the sampled model), as the paper starts from the pretrained G_ema
    d = load_checkpoint(a.generator)["d"]  # the discriminator, unchanged
    save_torch({"g_ema": state, "g": state, "d": d, "config": config}, a.out)
    row = {
        "from": str(a.generator),
        "n_mlp": a.n_mlp,
        "steps": a.steps,
        "batch": a.batch,
        "lr": a.lr,
        "seed": a.seed,
        "w_error_init": round(init_error, 4),
        "w_error": [(s, round(e, 6)) for s, e in trace],
        "wall_s": round(time.time() - start, 1),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
