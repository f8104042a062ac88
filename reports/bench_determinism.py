"""Does a short fine-tuning run give the same weights twice on this machine?

The demo's results are compared across clean clones byte for byte, so it matters whether the CPU
path is deterministic, and under what load. This runs the paper's method (``params.yaml``
``train``, evaluations off) for ``--iters`` iterations in a fresh folder, ``--repeats`` times,
and prints a digest of each run's fine-tuned g_ema: equal digests, bit-identical weights. Run it
once on an idle machine and once beside another CPU job to compare.

Run inside a project where `make demo` (or `sketchgan prepare` + `sketchgan pretrain`) has
written data/ and models/pretrained/:

    .venv/bin/python reports/bench_determinism.py --iters 60 --repeats 2 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import torch
from bench_finetune_curve import continue_run

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.io import load_image_folder


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, in name order: equal iff bit-identical."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, required=True)
    ap.add_argument("--repeats", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--augment", choices=("on", "off"), default="on")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sketches = load_image_folder(Path("data/sketches/images"), "L")
    reg = load_image_folder(Path("data/image_reg/images"), "RGB")
    over = {"checkpoint_every": args.iters, "augment": args.augment == "on"}
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            continue_run("models/pretrained/generator.pt", sketches, reg, out, args.iters, over)
            g = load_finetuned_generator(out / "generator_last.pt", "cpu")
            print(f"run {i}: {args.threads} threads, {args.iters} its: {weights_digest(g)}")


if __name__ == "__main__":
    main()
