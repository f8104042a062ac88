"""Milliseconds per forward / backward of each network of one fine-tuning iteration (CPU).

Random-init networks of the embedded architecture (32 px, style 128, n_mlp 2, channel cap 32;
PhotoSketch ngf 16, 9 blocks in train mode, frozen), batch 4, one torch thread:

    .venv/bin/python reports/bench_parts.py [threads]
"""

from __future__ import annotations

import sys
import time

import torch

from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import Discriminator, Generator


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    torch.manual_seed(0)
    g = Generator(size=32, style_dim=128, n_mlp=2, channel_multiplier=2, channel_max=32)
    for name, p in g.named_parameters():
        p.requires_grad_(name.startswith("style"))  # mapping-only
    d = Discriminator(32, channel_multiplier=2, channel_max=32)
    ps = ResnetGenerator(input_nc=3, output_nc=1, ngf=16, n_blocks=9).train()
    for p in ps.parameters():
        p.requires_grad_(False)
    z, x = torch.randn(4, 128), torch.randn(4, 3, 32, 32)

    def g_nograd() -> None:
        with torch.no_grad():
            g([z])

    def g_backward() -> None:
        g([z])[0].sum().backward()

    def ps_nograd() -> None:
        with torch.no_grad():
            ps(x)

    def ps_backward() -> None:
        ps(x.clone().requires_grad_(True)).sum().backward()

    def d_params() -> None:
        d(x).sum().backward()

    def d_input() -> None:
        for p in d.parameters():
            p.requires_grad_(False)
        d(x.clone().requires_grad_(True)).sum().backward()
        for p in d.parameters():
            p.requires_grad_(True)

    rows = [
        ("G forward, no graph (D step fakes)", g_nograd),
        ("G forward + backward to the mapping (G step)", g_backward),
        ("PhotoSketch forward, no graph (D step)", ps_nograd),
        ("PhotoSketch forward + backward to its input (G step)", ps_backward),
        ("D forward + backward, parameter gradients (D step)", d_params),
        ("D forward + backward to the input only (G step)", d_input),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch 4, 32 px")
    for name, fn in rows:
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        for _ in range(30):
            fn()
        print(f"| {name} | {1000 * (time.perf_counter() - t0) / 30:.1f} |")


if __name__ == "__main__":
    main()
