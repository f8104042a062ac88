"""Data-parallel fine-tuning under ``torchrun`` (gloo on CPU, NCCL on GPU).

Semantics: every process runs the same loop on its own batch of ``train.batch`` samples
(the effective batch is ``batch x world_size``), with its random streams seeded at
``seed + 10000 x rank``; gradients are averaged over processes before every optimiser step,
so all replicas stay identical (checked at the end). Rank 0 alone writes checkpoints, logs,
samples and the exported generator; the resumable checkpoint holds every rank's RNG state,
so a resumed run with the same number of processes continues exactly.

Entry point::

    torchrun --nproc_per_node 2 -m sketchgan.training.ddp --config params.yaml \\
        --generator models/pretrained/generator.pt --photosketch models/pretrained/photosketch.pt \\
        --sketches data/sketches/images --reg-images data/image_reg/images --out outputs/train
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from sketchgan.checkpoints import load_checkpoint, load_torch_file
from sketchgan.errors import SketchganError
from sketchgan.io import load_image_folder
from sketchgan.training.finetune import (
    EvalFn,
    FinetuneConfig,
    FinetuneResult,
    LogFn,
    Parallel,
    finetune,
    generator_arch,
)


class DistributedParallel(Parallel):
    """torch.distributed collectives for the fine-tuning loop's data-parallel hooks."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank = rank
        self.world_size = world_size

    def average_gradients(self, params: list[Tensor]) -> None:
        """One all-reduce over all gradients flattened together (not one per tensor).

        A parameter without a gradient (a D's last bias in the R1 step: it is not in the graph
        of dD/dx) keeps none, so Adam skips it as in a single process; every rank runs the same
        graph, so the set of such parameters is the same everywhere.
        """
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p)
            offset += n

    def sum_tensor(self, tensor: Tensor) -> Tensor:
        dist.all_reduce(tensor)
        return tensor

    def broadcast_module(self, module: nn.Module) -> None:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()

    def verify_replicas(self, tensors: list[Tensor]) -> None:
        """Every rank must end with bit-identical weights; anything else is a bug."""
        h = hashlib.sha256()
        for t in tensors:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        digests = self.gather(h.hexdigest())
        if len(set(digests)) != 1:
            raise SketchganError(f"ddp: replicas diverged (weight digests differ: {digests})")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError as exc:
        raise SketchganError(f"environment: {name}={value!r} is not an integer") from exc


def run_distributed(
    config: FinetuneConfig,
    generator_ckpt: str | Path,
    photosketch_ckpt: str | Path,
    sketches: Tensor,
    reg_images: Tensor | None,
    out_dir: str | Path,
    log_fn: LogFn | None = None,
    eval_fn: EvalFn | None = None,
) -> FinetuneResult:
    """Join the process group that torchrun describes in the environment and fine-tune.

    Works with a single process too (WORLD_SIZE unset), which is handy for debugging.
    """
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = config.device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        config = config.replace(device=f"cuda:{local_rank}")
    if world > 1 and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group(
            "nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=world,
            timeout=timedelta(minutes=30),  # rank 0 may be evaluating FID meanwhile
        )
    parallel = DistributedParallel(rank, world) if world > 1 else Parallel()
    try:
        return finetune(
            config,
            generator_ckpt,
            photosketch_ckpt,
            sketches,
            reg_images,
            out_dir,
            log_fn=log_fn if rank == 0 else None,
            eval_fn=eval_fn if rank == 0 else None,
            parallel=parallel,
        )
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def load_images_arg(path: str | Path, mode: str, size: int) -> Tensor:
    """A folder of images (resized to ``size``) or a ``.pt`` tensor, in [-1, 1]."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path, mode=mode, size=size)
    if path.suffix == ".pt" and path.is_file():
        data = load_torch_file(path)
        if not torch.is_tensor(data):
            raise SketchganError(f"{path}: expected a tensor, got {type(data).__name__}")
        return data
    raise SketchganError(f"{path}: expected an image folder or a .pt tensor file")


def load_config_arg(path: str | Path) -> FinetuneConfig:
    """A params file (YAML or JSON: params.yaml itself), or the ``train`` section with ``seed``
    and ``device`` in it (what ``FinetuneConfig.to_dict`` writes)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SketchganError(f"{path}: not a readable YAML/JSON config ({exc})") from exc
    if not isinstance(data, dict):
        raise SketchganError(f"{path}: expected a mapping (params or the train section)")
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        return FinetuneConfig.from_params(data)
    return FinetuneConfig.from_dict(data)


def _generator_size(path: str | Path) -> int:
    data = load_checkpoint(path)
    if not isinstance(data.get("config"), dict):
        raise SketchganError(f"{path}: expected a generator checkpoint with a 'config'")
    return generator_arch(data["config"], path)["size"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sketchgan.training.ddp", description=__doc__)
    p.add_argument("--config", required=True, help="params.yaml (or JSON of it; the train section)")
    p.add_argument("--generator", required=True, help="pretrained generator.pt")
    p.add_argument("--photosketch", required=True, help="photosketch.pt")
    p.add_argument("--sketches", required=True, help="sketch folder or .pt tensor (N,1,S,S)")
    p.add_argument("--reg-images", default=None, help="image folder or .pt tensor (N,3,S,S)")
    p.add_argument("--out", required=True, help="output folder (resumes from it)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry; one JSON line per log interval and a final summary from rank 0."""
    args = _parse(argv)
    rank = _env_int("RANK", 0)
    try:
        cfg = load_config_arg(args.config)
        size = _generator_size(args.generator)
        sketches = load_images_arg(args.sketches, "L", size)
        reg = load_images_arg(args.reg_images, "RGB", size) if args.reg_images else None

        def log(step: int, metrics: dict[str, float]) -> None:
            print(json.dumps({"step": step, **metrics}), flush=True)

        result = run_distributed(
            cfg, args.generator, args.photosketch, sketches, reg, args.out, log_fn=log
        )
    except SketchganError as exc:
        print(f"error: [rank {rank}] {exc}", file=sys.stderr, flush=True)
        return 1
    if rank == 0:
        summary = {
            "steps": result.steps,
            "resumed_from": result.resumed_from,
            "ms_per_iter": round(result.ms_per_iter, 2),
            "last_path": str(result.last_path),
            "device": result.device,
        }
        print(json.dumps({"result": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
