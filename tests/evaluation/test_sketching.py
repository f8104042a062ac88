import pytest
import torch

from sketchgan.errors import SketchganError
from sketchgan.evaluation.sketching import sketch_folder, sketch_images
from sketchgan.io import load_image_folder, save_image_folder
from sketchgan.models.photosketch import ResnetGenerator


@pytest.fixture
def net():
    torch.manual_seed(0)
    return ResnetGenerator(input_nc=3, output_nc=1, ngf=4, n_blocks=1)


def test_eval_mode_sketches_are_cached_by_content(net, tmp_path):
    save_image_folder(torch.rand(5, 3, 16, 16) * 2 - 1, tmp_path / "imgs")
    first = sketch_folder(net, tmp_path / "imgs", tmp_path / "a", "net", tmp_path / "cache", 2)
    again = sketch_folder(net, tmp_path / "imgs", tmp_path / "b", "net", tmp_path / "cache", 2)
    assert (first["computed"], again["cached"]) == (5, 5)
    a, b = load_image_folder(tmp_path / "a", "L"), load_image_folder(tmp_path / "b", "L")
    assert a.shape == (5, 1, 16, 16) and torch.equal(a, b)
    # train mode depends on the batch: never cached
    train = sketch_folder(
        net, tmp_path / "imgs", tmp_path / "c", "net", tmp_path / "cache", 2, mode="train"
    )
    assert train["computed"] == 5


def test_sketch_images_restores_mode_and_rejects_bad_mode(net):
    net.eval()
    out = sketch_images(net, torch.zeros(3, 3, 16, 16), batch=2, mode="train")
    assert out.shape == (3, 1, 16, 16) and not net.training
    with pytest.raises(SketchganError, match="photosketch.mode"):
        sketch_images(net, torch.zeros(1, 3, 16, 16), mode="test")
