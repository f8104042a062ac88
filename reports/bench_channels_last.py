"""The frozen sketch net alone, NCHW vs channels_last (NHWC), CPU, embedded size.

Forward plus backward to the input (what the G step does), batch 4, 32 px, ngf 16 x 9 blocks,
train-mode BatchNorm, 2 threads. Results and the whole-loop comparison: bench_finetune.md.

    .venv/bin/python reports/bench_channels_last.py
"""

from __future__ import annotations

import time

import torch

from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import use_channels_last


def _ms_per_call(net: torch.nn.Module, channels_last: bool, n: int = 40) -> float:
    x = torch.randn(4, 3, 32, 32, requires_grad=True)

    def call() -> None:
        xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        net(xi).sum().backward()

    for _ in range(5):
        call()
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    torch.set_num_threads(2)
    net = ResnetGenerator(input_nc=3, output_nc=1, ngf=16, n_blocks=9).train()
    for p in net.parameters():
        p.requires_grad_(False)
    nchw = _ms_per_call(net, False)
    nhwc = _ms_per_call(use_channels_last(net), True)
    print(f"sketch net fwd+bwd, batch 4, 32 px: NCHW {nchw:.2f} ms, channels_last {nhwc:.2f} ms")


if __name__ == "__main__":
    main()
