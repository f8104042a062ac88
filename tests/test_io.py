import numpy as np
import pytest
import torch
from PIL import Image

from sketchgan.errors import SketchganError
from sketchgan.io import (
    atomic_dir,
    atomic_path,
    clear_leftovers,
    list_images,
    load_image_folder,
    make_grid,
    open_image,
    save_image_folder,
    save_torch,
    to_uint8,
    write_text,
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


def test_leftovers_of_killed_atomic_writes_are_cleared_and_a_moved_folder_comes_back(tmp_path):
    import os

    dead = 999_999_999  # above any pid_max: no such process
    target = tmp_path / "losses.csv"
    (tmp_path / f".losses.csv.{dead}.x1.tmp").write_text("half")
    (tmp_path / f".losses.csv.{os.getpid()}.x2.tmp").write_text("a live writer's")
    (tmp_path / f".other.csv.{dead}.x3.tmp").write_text("another file's")
    write_text(target, "step\n")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        [f".losses.csv.{os.getpid()}.x2.tmp", f".other.csv.{dead}.x3.tmp", "losses.csv"]
    )
    # a kill between atomic_dir's two renames: the old folder was moved aside, the new not in
    out = tmp_path / "finetuned"
    moved = tmp_path / f".finetuned.old-{dead}"
    moved.mkdir()
    (moved / "generator.pt").write_text("the last good one")
    (tmp_path / f".finetuned.{dead}.y.tmp").mkdir()
    assert [p.name for p in clear_leftovers(out)] == [f".finetuned.{dead}.y.tmp"]
    assert (out / "generator.pt").read_text() == "the last good one"
    assert not moved.exists()
