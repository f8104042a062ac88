"""Does ``torch.compile`` help the CPU fine-tuning step? (No: see reports/bench_finetune.md.)

Times the costly part of a G step at the embedded size: generator forward, frozen sketch net,
frozen discriminators, backward to the generator; eager vs ``torch.compile`` (Inductor) on the
sketch net and the discriminator. Prints eager ms/step, compile seconds, compiled ms/step.

    .venv/bin/python reports/bench_compile.py
"""

from __future__ import annotations

import time

import torch

from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import Discriminator, Generator


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = _frozen(ResnetGenerator(input_nc=3, output_nc=1, ngf=16, n_blocks=9).train())
    g = Generator(32, 128, 2, 2, 32)
    d = _frozen(Discriminator(32, 2, 32))

    def step(sketch_net: torch.nn.Module, disc: torch.nn.Module) -> None:
        img, _ = g([torch.randn(4, 128)])
        loss = disc(sketch_net(img).repeat(1, 3, 1, 1)).sum() + disc(img).sum()
        loss.backward()

    def bench(sketch_net: torch.nn.Module, disc: torch.nn.Module, n: int = 30) -> float:
        for _ in range(5):
            step(sketch_net, disc)
        start = time.perf_counter()
        for _ in range(n):
            step(sketch_net, disc)
        return (time.perf_counter() - start) / n * 1000

    print(f"eager ms/step {bench(net, d):.1f}")
    start = time.perf_counter()
    c_net, c_d = torch.compile(net), torch.compile(d)
    step(c_net, c_d)
    print(f"compile s {time.perf_counter() - start:.1f}")
    print(f"compiled ms/step {bench(c_net, c_d):.1f}")


if __name__ == "__main__":
    main()
