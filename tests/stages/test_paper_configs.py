"""The paper's LSUN settings cannot run here (GPU, downloads); test every step that can."""

from __future__ import annotations

import functools
import http.server
import importlib
import threading
from pathlib import Path

import pytest
import torch
import yaml

from sketchgan.checkpoints import known_checkpoint, load_generator, save_generator_checkpoint
from sketchgan.errors import SketchganError
from sketchgan.training.finetune import FinetuneConfig, build_discriminator, build_generator

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("paper_*.yaml"))


def test_there_are_paper_configs():
    assert {p.stem for p in CONFIGS} >= {
        "paper_horse_riders",
        "paper_standing_cat",
        "paper_gabled_church",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_paper_config_is_valid(path):
    params = yaml.safe_load(path.read_text())
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params) == set(default), "a paper config must define every section"
    cfg = FinetuneConfig.from_params(params)
    assert cfg.iters == 75_001 and cfg.batch == 4 and cfg.tune == "mapping"  # spec defaults
    assert cfg.l_image == 0.7 and cfg.lr == 0.002
    g = known_checkpoint(params["checkpoints"]["generator"])
    d = known_checkpoint(params["checkpoints"]["generator"] + "-d")
    ps = known_checkpoint(params["checkpoints"]["photosketch"])
    assert g["config"]["size"] == params["prepare"]["size"] == 256
    assert g["config"]["style_dim"] == 512 and g["config"]["channel_multiplier"] == 2
    assert d["config"]["size"] == 256
    assert ps["config"]["ngf"] == 64 and ps["config"]["n_blocks"] == 9
    assert params["prepare"]["target"] is None and params["prepare"]["user_sketches"]
    assert params["sample"]["n"] == params["baselines"]["top_n"] == 2500
    assert params["evaluate"]["features"] == "inception"


def test_paper_generator_shapes_match_the_published_layout():
    shapes_file = ROOT.parent / "shared/fixtures/reference/reference_state_shapes.json"
    if not shapes_file.is_file():
        pytest.skip("shared fixtures not beside the checkout")
    import json

    ref = json.loads(shapes_file.read_text())["stylegan2_g_256_cm2"]
    cfg = known_checkpoint("gansketching-stylegan2-horse")["config"]
    with torch.device("meta"):
        g = build_generator(cfg)
    assert {k: list(v.shape) for k, v in g.state_dict().items()} == ref


def test_target_is_required_without_user_folders():
    with pytest.raises(SketchganError, match="prepare.target"):
        importlib.import_module("stages.prepare").run(
            {
                "prepare": {
                    "size": 16,
                    "n_pretrain": 1,
                    "n_image_reg": 1,
                    "n_eval": 1,
                    "n_sketches": 1,
                    "target": None,
                },
                "tracking": {"enabled": False},
            }
        )


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over ``tmp_path/www`` (no internet involved)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_pretrain_stage_imports_published_style_checkpoints(served, tiny_project):
    """GANSketching ships netG.pth and netD.pth as bare state dicts: fetch, verify, re-layout."""
    www, url = served
    root, params = tiny_project
    cfg = {"size": 16, "style_dim": 16, "n_mlp": 8, "channel_multiplier": 2, "channel_max": 16}
    g = build_generator(cfg)
    d = build_discriminator({k: cfg[k] for k in ("size", "channel_multiplier", "channel_max")})
    torch.save(g.state_dict(), www / "netG.pth")
    torch.save(d.state_dict(), www / "netD.pth")
    save_generator_checkpoint(www / "full.pt", g, d=d, config=cfg)  # our/rosinality layout
    from sketchgan.checkpoints import save_sketch_checkpoint
    from sketchgan.models.photosketch import ResnetGenerator

    net_cfg = {"input_nc": 3, "output_nc": 1, "ngf": 4, "n_blocks": 2}
    save_sketch_checkpoint(www / "photosketch.pt", ResnetGenerator(**net_cfg), net_cfg)

    stage = importlib.import_module("stages.pretrain")
    params["checkpoints"].update(
        source="registry",
        generator=f"{url}/full.pt",
        photosketch=f"{url}/photosketch.pt",
        evaluator=None,
    )
    params["prepare"]["real_images"] = "photos"  # no world evaluator for real data
    params["tracking"]["enabled"] = False
    stage.run(params)
    loaded, loaded_cfg = load_generator(root / "models/pretrained/generator.pt")
    assert loaded_cfg == cfg
    assert torch.equal(loaded.state_dict()["style.1.weight"], g.state_dict()["style.1.weight"])
    assert list((root / "models/cache").glob("*/full.pt"))  # downloaded into the cache

    # a bare netG.pth without a discriminator or config is a one-line error, not a crash
    params["checkpoints"].update(generator=f"{url}/netG.pth")
    with pytest.raises(SketchganError):
        stage.run(params)
