"""Milliseconds per fine-tuning iteration: the reference implementation vs ours, interleaved.

The reference is PeterWang512/GANSketching, given as a checkout (``--reference DIR``; it is not
part of this repository and nothing of it is copied here). Its training step runs as its
``GANTrainer.train_one_step`` does: ``GANModel`` in the modes 'discriminator',
'discriminator-regularize' (every ``d_reg_every`` iterations) and 'generator', each followed by
zero_grad / backward / Adam step, with the requires_grad switches in between. It runs in a
temporary copy of its ``training`` folder, on the CPU: by default with its own CPU code for the
resampling and activation ops (``--reference-ops own``: only the import-time build of its CUDA
extensions is skipped; its ``op`` functions take their plain-PyTorch branch for CPU tensors), or
with its ``op`` package replaced by a shim written here (``--reference-ops shim``: upfirdn2d by
zero insertion + padding + one depthwise convolution, bias + leaky ReLU + gain), which makes the
reference faster than its own code and so is the stricter comparison. Both are checked against
our ops before timing. At the embedded architecture that copy also gets the two changes the
reference has no option for: its channel tables capped at ``channel_max`` (GANSketching's are
fixed at 512 up to 32 px) and the PhotoSketch ``ngf``. Its ``torch.load``
calls read only files this script wrote, and only with ``weights_only=True``.

Both sides: random-init networks of the same architecture, batch 4, mapping-only tuning, the
image regulariser (l_image 0.7), translation augmentation, R1 every 16 iterations, style mixing
0.9. Rounds alternate (reference, ours, reference, ...) so that both see the same machine load;
the table gives the median over rounds of each round's ms/iteration.

    .venv/bin/python reports/bench_reference.py --reference /path/to/GANSketching \\
        [--config embedded|256] [--iters 16] [--rounds 3] [--threads 2] [--reference-ops own]
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sketchgan.models import stylegan2 as sg
from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import Discriminator, Generator
from sketchgan.runtime import load_params
from sketchgan.training import finetune as ft

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the only defaults
CONFIGS = {
    # the embedded default's architecture (params.yaml, models/pretrained/)
    "embedded": dict(size=32, style_dim=128, n_mlp=2, channel_max=32, ngf=16),
    # the paper's: LSUN 256 px config-f, PhotoSketch ngf 64
    "256": dict(size=256, style_dim=512, n_mlp=8, channel_max=512, ngf=64),
}
SETTINGS = dict(batch=4, l_image=0.7, r1=10.0, d_reg_every=16, mixing=0.9, lr=0.002)


# ------------------------------------------------------------------ the CPU shim of `op`


def _upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)):
    """Upsample by zero insertion, pad (negative = crop), FIR filter, keep every down-th."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h, up, w, up)
        z[:, :, :, 0, :, 0] = x
        x = z.reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down]


def _fused_leaky_relu(x, bias=None, negative_slope=0.2, scale=2**0.5):
    if bias is not None:
        x = x + bias.view((1, -1) + (1,) * (x.ndim - 2))
    return F.leaky_relu(x, negative_slope) * scale


class _FusedLeakyReLU(nn.Module):
    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2**0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x):
        return _fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


def _cpu_only_extensions(op_dir: Path) -> None:
    """Keep the reference's own ``op`` code but skip building its CUDA extensions.

    Its ``upfirdn2d`` and ``fused_leaky_relu`` take a plain-PyTorch branch for CPU tensors
    (``upfirdn2d_native``, ``F.leaky_relu``) and never touch the compiled modules there; only
    the import-time ``cpp_extension.load`` (which needs nvcc) has to go. A CUDA branch reached
    by mistake would fail on the ``None`` left in the extension's place.
    """
    line = "from torch.utils.cpp_extension import load"
    for name in ("upfirdn2d.py", "fused_act.py"):
        path = op_dir / name
        text = path.read_text()
        if line not in text:
            raise SystemExit(f"{path}: its extension import not found (another reference version?)")
        path.write_text(text.replace(line, "load = lambda *args, **kwargs: None  # CPU only"))


def _install_reference(
    src: Path, work: Path, channel_max: int, ngf: int, ops: str
) -> types.ModuleType:
    """A temporary copy of the reference's ``training`` package, importable, on the CPU."""
    if not (src / "training" / "gan_model.py").is_file():
        raise SystemExit(f"{src}: not a GANSketching checkout (no training/gan_model.py)")
    dst = work / "ref"
    shutil.copytree(src / "training", dst / "training")
    if ops == "own":
        _cpu_only_extensions(dst / "training" / "networks" / "op")
    else:
        shutil.rmtree(dst / "training" / "networks" / "op")
    sg = dst / "training" / "networks" / "stylegan2.py"
    text = sg.read_text()
    # cap the channel tables: "   16: 512," -> "   16: min(512, CAP),"
    text = re.sub(r"(\n\s+\d+): ([^,\n]+),", rf"\1: min({channel_max}, \2),", text)
    sg.write_text(text)
    tf = dst / "training" / "networks" / "transform.py"
    old = "pix2pix.ResnetGenerator(3, 1, n_blocks=9, use_dropout=False)"
    if old not in tf.read_text():
        raise SystemExit(f"{tf}: PhotoSketch construction not found (another reference version?)")
    tf.write_text(tf.read_text().replace(old, old[:-1] + f", ngf={ngf})"))
    if ops == "shim":
        op = types.ModuleType("training.networks.op")
        op.upfirdn2d, op.fused_leaky_relu, op.FusedLeakyReLU = (
            _upfirdn2d,
            _fused_leaky_relu,
            _FusedLeakyReLU,
        )
        sys.modules["training.networks.op"] = op
    sys.path.insert(0, str(dst))
    return importlib.import_module("training.gan_model")


def check_reference_ops() -> None:
    """Refuse to time a reference whose resampling or activation computes something else."""
    op = importlib.import_module("training.networks.op")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    bias = torch.randn(3)
    k, k4 = sg.make_kernel((1, 3, 3, 1)), sg.make_kernel((1, 3, 3, 1), gain=4)
    pairs = {
        "blur": (op.upfirdn2d(x, k, pad=(2, 1)), sg.blur2d(x, k, (2, 1))),
        "upsample": (op.upfirdn2d(x, k4, up=2, pad=(2, 1)), sg.upsample2d(x, k4)),
        "downsample": (
            op.upfirdn2d(x, k, down=2, pad=(1, 1)),
            sg.blur2d(x, k, (1, 1))[:, :, ::2, ::2],
        ),
        "bias + leaky ReLU": (op.fused_leaky_relu(x, bias), sg.fused_leaky_relu(x, bias)),
    }
    for name, (theirs, mine) in pairs.items():
        if theirs.shape != mine.shape or not torch.allclose(theirs, mine, atol=1e-6):
            raise SystemExit(f"reference op {name!r} differs from ours: timings would not compare")


# ------------------------------------------------------------------ both trainers


def _reference_trainer(gan_model, arch: dict, ps_path: Path, reg_dir: str):
    opt = argparse.Namespace(
        use_cpu=True,
        isTrain=True,
        size=arch["size"],
        z_dim=arch["style_dim"],
        n_mlp=arch["n_mlp"],
        channel_multiplier=2,
        lr_mlp=0.01,
        optim_param_g="style",
        g_pretrained="",
        d_pretrained="",
        dsketch_no_pretrain=False,
        beta1=0.0,
        beta2=0.99,
        gan_mode="softplus",
        l_weight=0.0,
        no_d_regularize=False,
        transform_real="to3ch",
        transform_fake="toSketch,to3ch",
        photosketch_path=str(ps_path),
        diffaug_policy="translation",
        dataroot_image=reg_dir,
        reduce_visuals=True,
        latent_avg_samples=8192,
        **SETTINGS,
    )
    load = torch.load
    torch.load = lambda f, *a, **k: load(f, map_location="cpu", weights_only=True)
    try:
        model = gan_model.GANModel(opt)
        optim_g, optim_d = model.create_optimizers(opt)
        model.create_loss_fns(opt)
    finally:
        torch.load = load
    return model, optim_g, optim_d, opt


def _reference_iteration(model, optim_g, optim_d, opt, data: dict, it: int) -> None:
    """What ``GANTrainer.train_one_step`` does, phase by phase."""

    def step(losses: dict, optim) -> None:
        loss = sum(losses.values()).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()

    model.set_requires_grad(False, True)
    step(model(data, mode="discriminator")[0], optim_d)
    if it % opt.d_reg_every == 0:
        step(model(data, mode="discriminator-regularize"), optim_d)
    model.set_requires_grad(True, False)
    step(model(data, mode="generator")[0], optim_g)


def _our_trainer(arch: dict, work: Path, sketches, images):
    g_arch = dict(
        size=arch["size"],
        style_dim=arch["style_dim"],
        n_mlp=arch["n_mlp"],
        channel_multiplier=2,
        channel_max=arch["channel_max"],
    )
    g = Generator(**g_arch)
    d = Discriminator(arch["size"], channel_multiplier=2, channel_max=arch["channel_max"])
    gpath, ppath = work / "generator.pt", work / "ours_photosketch.pt"
    torch.save(
        {"g_ema": g.state_dict(), "g": g.state_dict(), "d": d.state_dict(), "config": g_arch}, gpath
    )
    ps_cfg = dict(input_nc=3, output_nc=1, ngf=arch["ngf"], n_blocks=9)
    torch.save({"state": ResnetGenerator(**ps_cfg).state_dict(), "config": ps_cfg}, ppath)
    cfg = ft.FinetuneConfig.from_params(
        PARAMS,
        **SETTINGS,
        iters=10**6,
        tune="mapping",
        augment="translation",
        checkpoint_every=0,
        sample_every=0,
        eval_every=0,
        device="cpu",
        amp="off",
    )
    return ft._Trainer(cfg, gpath, ppath, sketches, images, ft.Parallel())


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _timed(fn, iters: int, first: int) -> float:
    t0 = time.perf_counter()
    for i in range(first, first + iters):
        fn(i)
    return 1000 * (time.perf_counter() - t0) / iters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, required=True, help="a GANSketching checkout")
    p.add_argument("--config", choices=sorted(CONFIGS), default="embedded")
    p.add_argument("--iters", type=int, default=16, help="iterations per round (R1 in each)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--reference-ops",
        choices=("own", "shim"),
        default="own",
        help="own: the reference's CPU code for upfirdn2d and the bias + leaky ReLU (what it runs"
        " on a CPU); shim: this script's grouped-convolution version of both (faster)",
    )
    p.add_argument(
        "--skip-r1",
        action="store_true",
        help="time only iterations without the lazy R1 (--iters < 16; for the slow 256 px rows)",
    )
    args = p.parse_args()
    if args.skip_r1 and args.iters >= SETTINGS["d_reg_every"]:
        raise SystemExit("--skip-r1 needs --iters < d_reg_every (16)")
    first = 1 if args.skip_r1 else 0
    torch.set_num_threads(args.threads)
    arch = CONFIGS[args.config]
    size = arch["size"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gan_model = _install_reference(
            args.reference, work, arch["channel_max"], arch["ngf"], args.reference_ops
        )
        check_reference_ops()
        ps_path = work / "photosketch.pth"
        torch.manual_seed(0)
        ref_ps = importlib.import_module("training.networks.pix2pix").ResnetGenerator(
            3, 1, ngf=arch["ngf"], n_blocks=9, use_dropout=False
        )
        torch.save(ref_ps.state_dict(), ps_path)
        gen = torch.Generator().manual_seed(1)
        sketches = torch.rand(8, 1, size, size, generator=gen) * 2 - 1
        images = torch.rand(16, 3, size, size, generator=gen) * 2 - 1
        ref = _reference_trainer(gan_model, arch, ps_path, str(work))
        ours = _our_trainer(arch, work, sketches, images)
        batch = SETTINGS["batch"]
        ref_model = ref[0]
        sizes = {
            "G": (_numel(ref_model.netG), _numel(ours.g)),
            "D sketch": (_numel(ref_model.netD_sketch), _numel(ours.d_sketch)),
            "D image": (_numel(ref_model.netD_image), _numel(ours.d_image)),
            "PhotoSketch": (_numel(ref_model.tf_fake), _numel(ours.branch.net)),
        }
        print("parameters (reference, ours):", sizes, flush=True)

        def ref_it(i: int) -> None:
            idx = torch.randint(0, 8, (batch,), generator=gen)
            data = {"sketch": sketches[idx].clone(), "image": images[idx % 16].clone()}
            _reference_iteration(*ref, data, i)

        def our_it(i: int) -> None:
            ours.iteration(ours.draw_inputs(i))

        ref_it(1), our_it(1)  # warm-up (allocations, oneDNN primitives)
        rows = {"reference": [], "ours": []}
        for r in range(args.rounds):
            rows["reference"].append(_timed(ref_it, args.iters, first))
            rows["ours"].append(_timed(our_it, args.iters, first))
            print(
                f"round {r}: reference {rows['reference'][-1]:.1f} ms/it, "
                f"ours {rows['ours'][-1]:.1f} ms/it",
                flush=True,
            )
    ref_ms, our_ms = (statistics.median(rows[k]) for k in ("reference", "ours"))
    print(
        f"| {args.config} | {ref_ms:.1f} | {our_ms:.1f} | {our_ms / ref_ms:.2f}x |"
        f"  (reference ops: {args.reference_ops}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, "
        f"{args.rounds} rounds x {args.iters} its{', no R1' if args.skip_r1 else ', R1 once'})"
    )
    assert math.isfinite(ref_ms) and math.isfinite(our_ms)


if __name__ == "__main__":
    main()
