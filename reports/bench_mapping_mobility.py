"""How far does one Adam step at the paper's lr move w, for our mapping network and the paper's?

The paper tunes StyleGAN2's mapping network (8 layers of 512, lr multiplier 0.01) with Adam at
lr 0.002, betas (0, 0.99), for 75,001 iterations. The embedded default's mapping is 2 layers of
128 (`params.yaml` `pretrain.n_mlp`, `style_dim`), with the same multiplier and optimiser. An
equalised layer's effective weight moves by about lr x 0.01 / sqrt(fan_in) per Adam step, and a
coherent change of a layer's n inputs adds up over n of them, so the same step budget may move
w further in a wider and deeper mapping. This measures it, without a discriminator: the
mapping's tensors are tuned to push every w along one fixed random direction (a gradient that
keeps its direction: the most a step budget can do), or along a new random direction each step
(a gradient that is all noise), and after each budget the mean distance 2,000 fixed z's w
travelled is reported as a fraction of the original w's spread (`w_move` of
`bench_mapping_capacity.py`).

    .venv/bin/python reports/bench_mapping_mobility.py [--steps 1000] [--generator GEN.pt]

Every architecture starts from StyleGAN2's initialisation (seeded); ``--generator`` adds a row
for a trained mapping (the shipped generator's, loaded strictly).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from functools import partial

import torch
from fixed_samples import w_move
from torch import nn

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.models.stylegan2 import Generator

PAPER_LR = 0.002
BETAS = (0.0, 0.99)  # the paper's (StyleGAN2's) Adam betas
ARCHS = ((128, 2), (128, 8), (512, 2), (512, 8))  # (style_dim, n_mlp); ours first, paper's last


def mapping(style_dim: int, n_mlp: int, seed: int) -> nn.Module:
    """StyleGAN2's mapping network as the library builds it (PixelNorm + equalised layers)."""
    torch.manual_seed(seed)
    return Generator(8, style_dim, n_mlp, channel_max=4).style


def spread(w: torch.Tensor) -> float:
    """Mean distance of a w to the mean w, relative to the mean w's length: how much of w's
    length varies from z to z (a deep random mapping makes its outputs alike)."""
    mean = w.mean(0, keepdim=True)
    return float((w - mean).norm(dim=1).mean() / mean.norm())


def push(
    style: nn.Module, steps: list[int], coherent: bool, seed: int
) -> tuple[dict[int, float], float]:
    """Adam on the mapping's tensors, loss = -mean(w . u); ``u`` fixed or redrawn each step.
    The w moves after each budget, and the original w's relative spread."""
    dim = style[1].weight.shape[1]
    gen = torch.Generator().manual_seed(seed)
    z_fixed = torch.randn(2000, dim, generator=gen)
    with torch.no_grad():
        w0 = style(z_fixed)
    params = [p for p in style.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=PAPER_LR, betas=BETAS)
    u = nn.functional.normalize(torch.randn(dim, generator=gen), dim=0)
    out, done = {}, 0
    for target in steps:
        for _ in range(target - done):
            if not coherent:
                u = nn.functional.normalize(torch.randn(dim, generator=gen), dim=0)
            z = torch.randn(4, dim, generator=gen)  # the paper's batch
            loss = -(style(z) @ u).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        done = target
        out[target] = round(w_move(style, w0, z_fixed), 4)
    return out, spread(w0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="100,1000,10000", help="budgets (Adam steps), ascending")
    ap.add_argument("--generator", default=None, help="also a trained mapping (a generator .pt)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = [int(s) for s in args.steps.split(",")]
    nets: list[tuple[str, Callable[[], nn.Module]]] = [
        (f"{d}x{n} (init)", partial(mapping, d, n, args.seed)) for d, n in ARCHS
    ]
    if args.generator:
        g = load_finetuned_generator(args.generator, "cpu")
        trained = partial(copy.deepcopy, g.style)  # a fresh copy for each gradient kind
        nets.insert(1, (f"{g.style_dim}x{g.n_mlp} (trained)", trained))
    for label, build in nets:
        for coherent in (True, False):
            t0 = time.perf_counter()
            moved, rel_spread = push(build(), steps, coherent, args.seed + 1)
            row = {"mapping": label, "gradient": "fixed" if coherent else "random each step"}
            row |= {"w_move": {str(k): v for k, v in moved.items()}}
            row |= {
                "relative_spread": round(rel_spread, 4),
                "lr": PAPER_LR,
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
