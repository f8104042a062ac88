"""PhotoSketch ResNet generator: reference numerics, old checkpoints, train-mode BatchNorm."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from conftest import shared_fixtures

from sketchgan.errors import SketchganError
from sketchgan.models.photosketch import ResnetGenerator, load_photosketch_state, to3ch

FIXTURES = shared_fixtures()
PS_FIXTURE = FIXTURES / "photosketch_small.pt"
needs_fixtures = pytest.mark.skipif(not PS_FIXTURE.is_file(), reason="reference fixtures absent")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(PS_FIXTURE, weights_only=True)


def loaded(fx) -> ResnetGenerator:
    net = ResnetGenerator(**fx["config"])
    net.load_state_dict(fx["state"], strict=True)
    return net


def train_then_eval(net: ResnetGenerator, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixture's order: its y_eval was recorded after the train-mode pass, which moved the
    BatchNorm running averages (momentum 0.1) even under no_grad."""
    with torch.no_grad():
        return net.train()(x), net.eval()(x)


@needs_fixtures
def test_matches_reference_in_train_and_eval_mode(fixture):
    fresh = loaded(fixture).eval()
    with torch.no_grad():
        y_fresh_eval = fresh(fixture["x"])
    assert (y_fresh_eval - fixture["y_eval"]).abs().max() > 1e-3  # see train_then_eval
    y_train, y_eval = train_then_eval(loaded(fixture), fixture["x"])
    assert y_train.shape == fixture["y_train"].shape == (2, 1, 32, 32)
    assert (y_train - fixture["y_train"]).abs().max().item() < 1e-4
    assert (y_eval - fixture["y_eval"]).abs().max().item() < 1e-4
    # the two modes really differ, so each comparison checks its own BatchNorm path
    assert (fixture["y_train"] - fixture["y_eval"]).abs().max() > 1e-3


@needs_fixtures
def test_full_size_state_dict_layout_matches_reference():
    shapes = json.loads((FIXTURES / "reference_state_shapes.json").read_text())[
        "photosketch_resnet9"
    ]
    with torch.device("meta"):
        net = ResnetGenerator()  # defaults: 3 -> 1 channels, ngf 64, 9 blocks
    got = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert list(got) == list(shapes)
    assert got == shapes


@needs_fixtures
def test_old_published_checkpoint_format_loads_strictly(fixture):
    """latest_net_G.pth files lack num_batches_tracked and carry _metadata."""
    old = OrderedDict(
        (f"module.{k}", v) for k, v in fixture["state"].items() if "num_batches_tracked" not in k
    )
    old._metadata = OrderedDict()  # what torch.save of a state_dict keeps
    with pytest.raises(SketchganError, match="PhotoSketch: missing '"):
        ResnetGenerator(**fixture["config"]).load_state_dict(old)
    old_with_key = OrderedDict(old)
    old_with_key["_metadata"] = {}
    for raw in (old, old_with_key):
        sd = load_photosketch_state(raw)
        assert not hasattr(sd, "_metadata") and "_metadata" not in sd
        net = ResnetGenerator(**fixture["config"])
        net.load_state_dict(sd, strict=True)
        y_train, y_eval = train_then_eval(net, fixture["x"])
        assert (y_train - fixture["y_train"]).abs().max().item() < 1e-4
        assert (y_eval - fixture["y_eval"]).abs().max().item() < 1e-4


def test_load_photosketch_state_rejects_non_tensors():
    with pytest.raises(SketchganError, match="model.1.weight"):
        load_photosketch_state({"model.1.weight": [1.0, 2.0]})
    with pytest.raises(SketchganError, match="mapping"):
        load_photosketch_state([1, 2])


@needs_fixtures
def test_wrong_shaped_state_dict_raises(fixture):
    net = ResnetGenerator(ngf=4)
    with pytest.raises(SketchganError, match="PhotoSketch: 'model.1.weight' has shape"):
        net.load_state_dict(fixture["state"])


def test_frozen_train_mode_uses_batch_statistics_and_passes_gradients():
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=4, n_blocks=2).requires_grad_(False).train()
    x = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = net(x)
    assert y.shape == (2, 1, 16, 16) and y.abs().max() <= 1
    # batch statistics: a sample's sketch depends on what else is in the batch
    assert not torch.allclose(net(x[:1]), y[:1])
    y.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_to3ch():
    x = torch.randn(2, 1, 8, 8)
    y = to3ch(x)
    assert y.shape == (2, 3, 8, 8)
    assert all(torch.equal(y[:, i : i + 1], x) for i in range(3))
    with pytest.raises(SketchganError, match="to3ch"):
        to3ch(torch.randn(2, 3, 8, 8))
