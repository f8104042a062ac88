import numpy as np
import pytest
import torch
from PIL import Image

from sketchgan.errors import SketchganError
from sketchgan.io import (
    atomic_dir,
    atomic_path,
    list_images,
    load_image_folder,
    make_grid,
    open_image,
    save_image_folder,
    save_torch,
    to_uint8,
)


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "a.png").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "b.png").write_text("new")
        raise RuntimeError("crash")
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    with atomic_dir(out) as tmp:
        (tmp / "b.png").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_save_torch_roundtrip_weights_only(tmp_path):
    save_torch({"w": torch.ones(2)}, tmp_path / "x.pt")
    loaded = torch.load(tmp_path / "x.pt", weights_only=True)
    assert torch.equal(loaded["w"], torch.ones(2))


def test_image_folder_roundtrip(tmp_path):
    x = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    save_image_folder(x, tmp_path)
    back = load_image_folder(tmp_path)
    assert back.shape == x.shape
    assert (back - x).abs().max() < 1 / 127.5 + 1e-6


def test_to_uint8_range():
    arr = to_uint8(torch.tensor([[[[-2.0, -1.0], [0.0, 3.0]]]]))
    assert arr.dtype == np.uint8 and arr.shape == (1, 2, 2, 1)
    assert arr.ravel().tolist() == [0, 0, 128, 255]


def test_make_grid_shape():
    grid = make_grid(torch.zeros(5, 1, 4, 4), nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(SketchganError, match="no images"):
        list_images(tmp_path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(SketchganError, match="broken.png"):
        open_image(bad)


def test_mixed_sizes_rejected(tmp_path):
    Image.new("L", (4, 4), 255).save(tmp_path / "a.png")
    Image.new("L", (5, 5), 255).save(tmp_path / "b.png")
    with pytest.raises(SketchganError, match="b.png"):
        load_image_folder(tmp_path, mode="L")


def test_atomic_outputs_are_not_owner_only(tmp_path):
    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a").write_text("x")
    assert (tmp_path / "f.txt").stat().st_mode & 0o044
    assert (tmp_path / "d").stat().st_mode & 0o055
