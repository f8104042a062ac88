"""Two-process data-parallel fine-tuning on the CPU (gloo) through torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, repo_params

from sketchgan.errors import SketchganError
from sketchgan.io import save_image_folder
from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import Discriminator, Generator
from sketchgan.training import ddp
from sketchgan.training.finetune import FinetuneConfig

ARCH = dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
PS_CFG = dict(input_nc=3, output_nc=1, ngf=4, n_blocks=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_inputs")
    torch.manual_seed(0)
    g, d = Generator(**ARCH), Discriminator(16, channel_multiplier=1, channel_max=16)
    sd = {"g_ema": g.state_dict(), "g": g.state_dict(), "d": d.state_dict(), "config": ARCH}
    torch.save(sd, root / "generator.pt")
    torch.save({"state": ResnetGenerator(**PS_CFG).state_dict(), "config": PS_CFG}, root / "ps.pt")
    gen = torch.Generator().manual_seed(1)
    save_image_folder(torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1, root / "sketches")
    torch.save(torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1, root / "reg.pt")
    return root


def _torchrun(files, out, iters):
    cfg = dict(
        iters=iters,
        batch=2,
        d_reg_every=2,
        checkpoint_every=2,
        sample_every=0,
        eval_every=0,
        log_every=1,
        n_sample=2,
    )
    params = repo_params()
    params["train"].update(cfg)
    params["device"] = "cpu"
    cfg_path = out.parent / f"{out.name}.json"
    cfg_path.write_text(json.dumps(params))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sketchgan.training.ddp",
        "--config",
        str(cfg_path),
        "--generator",
        str(files / "generator.pt"),
        "--photosketch",
        str(files / "ps.pt"),
        "--sketches",
        str(files / "sketches"),
        "--reg-images",
        str(files / "reg.pt"),
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return lines


def test_two_process_gloo_run_writes_rank0_outputs_and_resumes(files, tmp_path):
    out = tmp_path / "run"
    lines = _torchrun(files, out, iters=2)
    assert [x["step"] for x in lines if "step" in x] == [1, 2]  # rank 0 logs, once per step
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["local"]) == 2
    # ranks draw different batches: their random streams must differ
    assert not torch.equal(
        ckpt["local"][0]["rng"]["generators"]["latent"],
        ckpt["local"][1]["rng"]["generators"]["latent"],
    )
    lines = _torchrun(files, out, iters=3)  # resumes from step 2; replicas verified at the end
    result = next(x["result"] for x in lines if "result" in x)
    assert result["resumed_from"] == 2 and result["steps"] == 3
    exported = torch.load(out / "generator_last.pt", weights_only=True)
    assert exported["step"] == 3 and exported["config"] == ARCH


def test_image_argument_loading(files, tmp_path):
    sk = ddp.load_images_arg(files / "sketches", "L", 16)
    assert sk.shape == (4, 1, 16, 16) and sk.min() >= -1 and sk.max() <= 1
    assert ddp.load_images_arg(files / "reg.pt", "RGB", 16).shape == (4, 3, 16, 16)
    with pytest.raises(SketchganError, match="nope"):
        ddp.load_images_arg(tmp_path / "nope", "L", 16)
    assert ddp.load_config_arg(ROOT / "params.yaml") == FinetuneConfig.from_params(repo_params())
    params = repo_params()
    params["train"]["lr"] = -1
    bad = tmp_path / "cfg.json"
    bad.write_text(json.dumps(params))
    with pytest.raises(SketchganError, match=r"'train\.lr' must be > 0"):
        ddp.load_config_arg(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(SketchganError, match="cfg.json: expected a mapping"):
        ddp.load_config_arg(bad)
