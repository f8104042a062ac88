import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

import sketchgan.data.prepare as prepare_mod
from sketchgan.data.prepare import SETS, contact_sheet, prepare_data, read_manifest
from sketchgan.data.world import ATTRIBUTE_COLUMNS, TargetSpec, matches_target, render
from sketchgan.errors import SketchganError

TARGET = TargetSpec.from_dict({"shape": "triangle", "cx": [0.4, 0.5], "scale": [0.5, 0.6]})
# Equal pretrain/image_reg counts: a seed stream shared by the two would repeat whole scenes.
SMALL = dict(size=16, n_pretrain=24, n_image_reg=24, n_eval=10, n_sketches=4, target=TARGET, seed=3)


def _snapshot(root):
    """Every file under root with its bytes' hash: "nothing changed" must be exact."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, prepare_data(root, **SMALL)


def test_layout_manifests_and_summary(prepared):
    root, summary = prepared
    want = {"pretrain": 24, "image_reg": 24, "eval": 10, "sketches": 4}
    assert summary["counts"] == want and set(summary["seconds"]) == {*SETS, "replace", "total"}
    assert summary["target"] == TARGET.to_dict() and summary["sources"]["sketches"] == "synthetic"
    assert sorted(p.name for p in root.iterdir()) == sorted(SETS)  # no temp folders left
    for name, n in want.items():
        frame = read_manifest(root / name)
        assert list(frame.columns[:2]) == ["path", "split"] and "sha256" in frame.columns
        assert (frame["split"] == name).all() and len(frame) == n
        files = sorted(p.name for p in (root / name / "images").iterdir())
        assert files == [f"{i:06d}.png" for i in range(n)]
        assert list(frame["path"]) == [f"images/{f}" for f in files]
        for rel, digest in zip(frame["path"], frame["sha256"], strict=True):
            assert hashlib.sha256((root / name / rel).read_bytes()).hexdigest() == digest
        assert set(ATTRIBUTE_COLUMNS) <= set(frame.columns)


def test_image_modes_and_contours(prepared):
    root, _ = prepared
    for name, mode in (
        ("pretrain", "RGB"),
        ("eval", "RGB"),
        ("image_reg", "RGB"),
        ("sketches", "L"),
    ):
        with Image.open(root / name / "images" / "000000.png") as img:
            assert img.mode == mode and img.size == (16, 16)
    frame = read_manifest(root / "pretrain")
    assert list(frame["contour"]) == [f"contours/{i:06d}.png" for i in range(24)]
    with Image.open(root / "pretrain" / "contours" / "000003.png") as img:
        assert img.mode == "L"
        _, contours = render(frame.iloc[[3]], 16)
        assert np.array_equal(np.asarray(img), contours[0])  # manifest row reproduces the file


def test_eval_and_sketches_show_the_target_and_sets_share_no_scene(prepared):
    root, summary = prepared
    for name in ("eval", "sketches"):
        assert matches_target(read_manifest(root / name), TARGET).all()
    hashes = [set(read_manifest(root / name)["sha256"]) for name in SETS]
    assert sum(len(h) for h in hashes) == len(set().union(*hashes))
    assert 0 <= summary["target_fraction_in_pretrain"] < 0.5


def test_same_seed_same_bytes_other_seed_differs(prepared, tmp_path):
    root, _ = prepared
    prepare_data(tmp_path / "again", **SMALL)
    assert _snapshot(tmp_path / "again") == _snapshot(root)
    prepare_data(tmp_path / "other", **{**SMALL, "seed": 4})
    assert (
        read_manifest(tmp_path / "other" / "eval")["sha256"].tolist()
        != read_manifest(root / "eval")["sha256"].tolist()
    )


def test_failure_midway_leaves_previous_outputs_intact(tmp_path, monkeypatch):
    root = tmp_path / "data"
    prepare_data(root, **SMALL)
    (root / "README.md").write_text("kept")
    before = _snapshot(root)
    build = prepare_mod._build_set

    def failing(name, *args):
        if name == "image_reg":  # the last set: the three others are complete by then
            raise SketchganError("disk full (simulated)")
        return build(name, *args)

    monkeypatch.setattr(prepare_mod, "_build_set", failing)
    with pytest.raises(SketchganError, match="simulated"):
        prepare_data(root, **{**SMALL, "seed": 9})
    assert _snapshot(root) == before
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_corrupt_user_sketch_fails_without_touching_data(tmp_path):
    root = tmp_path / "data"
    prepare_data(root, **SMALL)
    before = _snapshot(root)
    src = tmp_path / "mine"
    src.mkdir()
    (src / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(SketchganError, match="bad.png: not a readable image"):
        prepare_data(root, **SMALL, user_sketches=src)
    assert _snapshot(root) == before


def test_user_sketches_and_real_images_are_imported(tmp_path):
    sketches, photos = tmp_path / "mine", tmp_path / "photos"
    sketches.mkdir()
    photos.mkdir()
    for i in range(3):
        img = Image.new("L", (90, 60), 255)
        ImageDraw.Draw(img).polygon([(10, 50), (45, 5 + i), (80, 50)], outline=0, width=2)
        img.save(sketches / f"s{i}.png")
    for i in range(5):
        Image.new("RGB", (40, 30), (50 * i, 100, 200)).save(photos / f"p{i}.jpg")
    summary = prepare_data(
        tmp_path / "data",
        **{**SMALL, "n_image_reg": 4, "n_eval": 2},
        user_sketches=sketches,
        real_images=photos,
        eval_images=photos,
    )
    assert summary["counts"]["sketches"] == 3 and summary["counts"]["image_reg"] == 4
    assert summary["counts"]["eval"] == 2 and summary["sources"]["eval"] == str(photos)
    ev = read_manifest(tmp_path / "data" / "eval")
    assert [p.rsplit("/", 1)[-1] for p in ev["source"]] == ["p0.jpg", "p1.jpg"]
    frame = read_manifest(tmp_path / "data" / "sketches")
    assert [p.rsplit("/", 1)[-1] for p in frame["source"]] == ["s0.png", "s1.png", "s2.png"]
    reg = read_manifest(tmp_path / "data" / "image_reg")
    assert [p.rsplit("/", 1)[-1] for p in reg["source"]] == [f"p{i}.jpg" for i in range(4)]
    with Image.open(tmp_path / "data" / "image_reg" / "images" / "000001.png") as img:
        assert img.mode == "RGB" and img.size == (16, 16)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_eval": -1}, "'prepare.n_eval' must be an integer >= 0"),
        ({"n_pretrain": 2.5}, "'prepare.n_pretrain'"),
        ({"n_sketches": 0}, "'prepare.n_sketches' must be an integer >= 1"),
        ({"size": 4}, "'prepare.size'"),
        ({"target": {"shape": "star"}}, "'prepare.target' must be a TargetSpec"),
        ({"user_sketches": "/nonexistent/folder"}, "'prepare.user_sketches'"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_writing(tmp_path, change, message):
    with pytest.raises(SketchganError, match=message) as err:
        prepare_data(tmp_path / "data", **{**SMALL, **change})
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data").exists()


def test_empty_sets_are_allowed_with_header_only_manifests(tmp_path):
    prepare_data(tmp_path / "d", **{**SMALL, "n_pretrain": 0, "n_image_reg": 0})
    frame = read_manifest(tmp_path / "d" / "pretrain")
    assert len(frame) == 0 and "sha256" in frame.columns
    assert list((tmp_path / "d" / "pretrain" / "images").iterdir()) == []


def test_contact_sheet(prepared, tmp_path):
    root, _ = prepared
    out = contact_sheet(root, tmp_path / "sheet.png", per_row=6, tile=32)
    with Image.open(out) as img:
        arr = np.asarray(img)
    assert img.mode == "RGB" and arr.shape[0] == 5 * 36 + 4 and arr.shape[1] == 80 + 6 * 36 + 4
    assert arr.std() > 20  # images, not a blank page
    with pytest.raises(SketchganError, match="no prepared images"):
        contact_sheet(tmp_path / "empty", tmp_path / "x.png")


def test_read_manifest_errors(tmp_path):
    with pytest.raises(SketchganError, match="manifest not found"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("")
    with pytest.raises(SketchganError, match="unreadable manifest"):
        read_manifest(tmp_path)
