import pytest
import torch

from sketchgan.errors import SketchganError
from sketchgan.runtime import get_param, load_params, pick_device, seed_everything


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(SketchganError, match="device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SketchganError, match="CUDA"):
            pick_device("cuda")


def test_seed_everything_repeatable():
    seed_everything(3)
    a = torch.randn(3)
    seed_everything(3)
    assert torch.equal(a, torch.randn(3))


def test_load_params_errors(tmp_path):
    with pytest.raises(SketchganError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "p.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(SketchganError, match="invalid YAML"):
        load_params(bad)


def test_get_param_checks():
    cfg = {"lr": 0.1, "n": -1, "flag": True, "mode": "x"}
    assert get_param(cfg, "lr", float, "train") == 0.1
    with pytest.raises(SketchganError, match="'train.n' must be >= 0"):
        get_param(cfg, "n", int, "train", minimum=0)
    with pytest.raises(SketchganError, match="'train.flag' must be a number"):
        get_param(cfg, "flag", int, "train")
    with pytest.raises(SketchganError, match="'train.mode' must be one of"):
        get_param(cfg, "mode", str, "train", choices=("a", "b"))
    with pytest.raises(SketchganError, match="'train.missing' is missing"):
        get_param(cfg, "missing", int, "train")


def test_repo_root_is_the_stage_workdir_under_dvc(tmp_path, monkeypatch):
    """`dvc exp run --temp/--queue` runs stages in .dvc/tmp/exps/<x> with DVC_ROOT = parent."""
    from sketchgan.runtime import repo_root

    exp = tmp_path / ".dvc/tmp/exps/run1"
    exp.mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(exp)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert repo_root() == tmp_path  # outside DVC: DVC_ROOT as set
    monkeypatch.setenv("DVC_STAGE", "train")
    assert repo_root() == exp  # inside a DVC stage: its own workspace copy
