"""Benchmark formulations of the StyleGAN2 generator (forward + backward, ms per iteration).

Compares, on the same weights, the modulated-convolution forms (per-sample grouped conv as in
the reference port vs. batched modulate/conv/demodulate), the StyledConv epilogue (separate
demodulate/noise/bias/activation ops vs. the fused two-pass form), the up-sampling forms
(transposed conv + blur vs. zero-insert + blur + 3x3 conv) and channels_last. Each variant is
first checked against the reference form on fixed noise; a variant that disagrees is reported as
wrong rather than fast.

    python reports/bench_generator.py --size 32 --batch 4 --iters 5
    python reports/bench_generator.py --size 256 --batch 4 --iters 2 --warmup 1
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sketchgan.models.stylegan2 import (
    Generator,
    ModulatedConv2d,
    StyledConv,
    set_fused_modconv,
    use_channels_last,
)


def _zero_insert_batched(
    self: ModulatedConv2d, x: Tensor, weight: Tensor, s: Tensor
) -> tuple[Tensor, Tensor]:
    """Batched modconv whose 2x up-sampling filters first, then runs a 3x3 conv at 2H."""
    n, c = x.shape[:2]
    x = x * s.to(x.dtype).reshape(n, c, 1, 1)
    kernel = self.blur.kernel.to(x.dtype)[None, None].expand(c, 1, 4, 4)
    up = F.conv_transpose2d(x, kernel, stride=2, groups=c)  # zero insert + blur, 2H + 2 px
    out = F.conv2d(up, weight.flip([2, 3]).to(x.dtype))  # true convolution, as the transpose
    return out, self._demod(weight, s)


def _use_zero_insert(g: nn.Module) -> None:
    for m in g.modules():
        if isinstance(m, ModulatedConv2d) and m.upsample:
            m._forward_batched = types.MethodType(_zero_insert_batched, m)


def _unfused_epilogue(g: nn.Module) -> None:
    """Demodulate, add noise, add bias, leaky ReLU, gain: one element-wise op each."""
    for m in g.modules():
        if isinstance(m, StyledConv):
            m.fused_epilogue = False


REFERENCE = "grouped + unfused epilogue (reference form)"
VARIANTS: dict[str, tuple[bool, list[Callable[[nn.Module], None]]]] = {
    # name: (grouped per-sample-weight modconv?, extra modifications)
    REFERENCE: (True, [_unfused_epilogue]),
    "grouped + fused epilogue": (True, []),
    "batched + unfused epilogue": (False, [_unfused_epilogue]),
    "batched + fused epilogue (default)": (False, []),
    "default + zero-insert up": (False, [_use_zero_insert]),
    "default + channels_last": (False, [use_channels_last]),
}


def build_variant(base: Generator, name: str) -> Generator:
    fused, mods = VARIANTS[name]
    g = set_fused_modconv(copy.deepcopy(base), fused)
    for mod in mods:
        mod(g)
    return g


def set_trainable(g: Generator, trainable: str) -> None:
    """``style``: only the mapping network, as in GANSketching fine-tuning; ``all``: pretraining."""
    for name, p in g.named_parameters():
        p.requires_grad_(trainable == "all" or "style" in name)


def time_once(g: Generator, z: Tensor, sync: Callable[[], None]) -> tuple[float, float]:
    """One forward + backward (loss = mean square of the image): (wall ms, process CPU ms).

    CPU time is the steadier measure on a shared machine: it ignores time spent waiting for a
    core, but it counts OpenMP spin-waiting, so compare it between runs with --threads 1.
    """
    g.zero_grad(set_to_none=True)
    t0, c0 = time.perf_counter(), time.process_time()
    img, _ = g([z])
    img.square().mean().backward()
    sync()
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--channel-max", type=int, default=512)
    ap.add_argument("--channel-multiplier", type=int, default=2)
    ap.add_argument("--style-dim", type=int, default=512)
    ap.add_argument("--trainable", choices=("all", "style"), default="all")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    base = Generator(args.size, args.style_dim, 8, args.channel_multiplier, args.channel_max).to(
        device
    )
    z = torch.randn(args.batch, args.style_dim, device=device)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]

    with torch.no_grad():
        ref = build_variant(base, REFERENCE)([z], randomize_noise=False)[0]
    models, diffs = {}, {}
    for name in names:
        g = build_variant(base, name)
        with torch.no_grad():
            diffs[name] = (g([z], randomize_noise=False)[0] - ref).abs().max().item()
        set_trainable(g, args.trainable)
        models[name] = g
    # Round-robin over variants so load from other processes hits all of them alike.
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for i in range(args.warmup + args.iters):
        for name in names:
            w, c = time_once(models[name], z, sync)
            if i >= args.warmup:
                wall[name].append(w)
                cpu[name].append(c)
    rows = [
        (n, statistics.median(wall[n]), min(wall[n]), statistics.median(cpu[n]), diffs[n])
        for n in names
    ]

    print(
        f"size {args.size}, batch {args.batch}, device {device}, trainable {args.trainable}, "
        f"channel_max {args.channel_max}, cm {args.channel_multiplier}, style {args.style_dim}, "
        f"threads {torch.get_num_threads()}, iters {args.iters} (+{args.warmup} warm-up), "
        f"torch {torch.__version__}\n"
    )
    print("| variant | median wall ms | min wall ms | median CPU ms | max abs diff vs reference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, med, best, cpu_med, diff in rows:
        flag = "" if diff < 1e-4 else " (WRONG)"
        print(f"| {name} | {med:.0f} | {best:.0f} | {cpu_med:.0f} | {diff:.1e}{flag} |")
    print(f"\nload average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
