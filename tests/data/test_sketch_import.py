import logging

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sketchgan.data.sketch_import import import_sketches, load_real_images
from sketchgan.errors import SketchganError


def _sketch(w=120, h=120, ink=0, paper=255, width=3, mode="L"):
    """A circle outline centred on the canvas, as a person would draw one."""
    img = Image.new(mode, (w, h), paper)
    r = min(w, h) * 0.35
    ImageDraw.Draw(img).ellipse(
        (w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r), outline=ink, width=width
    )
    return img


def _load(path):
    img = Image.open(path)
    return img.mode, np.asarray(img)


def _check_circle(arr, size=32):
    assert arr.shape == (size, size) and arr.dtype == np.uint8
    ys, xs = np.nonzero(arr < 128)
    assert len(ys) > 10
    # Ink forms a ring around the centre with white paper inside and in the corners.
    radius = np.hypot(xs + 0.5 - size / 2, ys + 0.5 - size / 2)
    assert radius.min() > 0.2 * size and radius.max() < 0.5 * size
    assert arr[size // 2, size // 2] > 200 and arr[0, 0] == 255 and arr[-1, -1] == 255
    assert arr.min() < 60  # strokes stay dark after resizing


def _import_one(tmp_path, img, name="a.png", size=32, **save):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    img.save(src / name, **save)
    paths = import_sketches(src, tmp_path / "out", size)
    assert [p.name for p in paths] == ["000000.png"]
    mode, arr = _load(paths[0])
    assert mode == "L"
    return arr


def test_black_on_white_grey(tmp_path):
    _check_circle(_import_one(tmp_path, _sketch()))


def test_rgba_transparent_background_becomes_white(tmp_path):
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))  # transparent *black* paper
    r = 35
    ImageDraw.Draw(img).ellipse((50 - r, 50 - r, 50 + r, 50 + r), outline=(0, 0, 0, 255), width=3)
    _check_circle(_import_one(tmp_path, img))


def test_white_on_black_is_inverted(tmp_path):
    arr = _import_one(tmp_path, _sketch(ink=255, paper=0).convert("RGB"))
    _check_circle(arr)
    (tmp_path / "b").mkdir()
    plain = _import_one(tmp_path / "b", _sketch())
    assert np.abs(arr.astype(int) - plain.astype(int)).max() <= 2


def test_non_square_is_padded_not_cropped(tmp_path):
    arr = _import_one(tmp_path, _sketch(w=240, h=100))  # ring spans the full height
    size = 32
    ys, xs = np.nonzero(arr < 128)
    # The whole ring survives (nothing cropped) inside the central band of the padded square.
    assert ys.min() >= size * 0.25 and ys.max() <= size * 0.75
    assert xs.max() - xs.min() >= 8 and ys.max() - ys.min() >= 8
    assert (arr[: int(size * 0.25)] == 255).all() and (arr[-int(size * 0.25) :] == 255).all()


@pytest.mark.parametrize(
    ("name", "save"),
    [
        ("a.jpg", {"quality": 85}),
        ("a.bmp", {}),
        ("a.webp", {"quality": 90}),
        ("a.JPEG", {}),
    ],
)
def test_other_formats(tmp_path, name, save):
    _check_circle(_import_one(tmp_path, _sketch(200, 200, width=4).convert("RGB"), name, **save))


def test_large_thin_pencil_sketch_survives_downscaling(tmp_path):
    arr = _import_one(tmp_path, _sketch(1024, 1024, ink=90, paper=235, width=2))
    _check_circle(arr)


def test_a_huge_scan_imports_in_seconds_and_keeps_its_thin_strokes(tmp_path):
    import time

    img = _sketch(8000, 8000, ink=60, paper=240, width=3)
    inverted = Image.eval(_sketch(6000, 4000, width=3), lambda v: 255 - v)  # chalk on black
    started = time.perf_counter()
    arr = _import_one(tmp_path, img)
    assert time.perf_counter() - started < 20  # was minutes: the thickening grew with size^2
    _check_circle(arr)
    _check_circle(_import_one(tmp_path, inverted, name="a.png"))


def test_images_above_the_pixel_limit_are_refused_from_the_header(tmp_path, monkeypatch):
    from sketchgan.data import sketch_import

    monkeypatch.setattr(sketch_import, "MAX_PIXELS", 1_000_000)
    src = tmp_path / "src"
    src.mkdir()
    _sketch(1200, 1000).save(src / "big.png")
    with pytest.raises(SketchganError) as exc:
        import_sketches(src, tmp_path / "out", 32)
    text = str(exc.value)
    assert "big.png" in text and "1200x1000" in text and "downscale it first" in text
    assert "\n" not in text and not (tmp_path / "out").exists()
    # above PIL's own bomb limit (~179 MP) the message is ours, not DecompressionBombError
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(SketchganError, match="megapixels"):
        import_sketches(src, tmp_path / "out", 32)


def test_a_huge_photo_imports_quickly(tmp_path):
    import time

    src = tmp_path / "src"
    src.mkdir()
    photo = Image.new("RGB", (6000, 4000), (200, 40, 40))
    photo.paste((20, 20, 220), (2500, 1500, 3500, 2500))
    photo.save(src / "p.png")
    started = time.perf_counter()
    (path,) = load_real_images(src, tmp_path / "out", 32)
    assert time.perf_counter() - started < 20
    arr = np.asarray(Image.open(path))
    assert arr.shape == (32, 32, 3) and tuple(arr[16, 16]) == (20, 20, 220)
    assert tuple(arr[2, 2]) == (200, 40, 40)


def test_several_files_sorted_and_non_images_skipped_with_warning(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    _sketch(60, 60).save(src / "b.png")
    _sketch(80, 40).save(src / "a.bmp")
    (src / "notes.txt").write_text("my sketches")
    (src / ".DS_Store").write_bytes(b"\0\1")
    with caplog.at_level(logging.WARNING, logger="sketchgan.data.sketch_import"):
        paths = import_sketches(src, tmp_path / "out", 16)
    assert [p.name for p in paths] == ["000000.png", "000001.png"]
    assert "notes.txt" in caplog.text and "DS_Store" not in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.png", "000001.png"]


def _prefilled_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "000000.png").write_bytes(b"previous sketch")
    return out


def _assert_untouched(tmp_path, out):
    assert [p.name for p in out.iterdir()] == ["000000.png"]
    assert (out / "000000.png").read_bytes() == b"previous sketch"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "no images"),
        (
            lambda d: (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"),
            "broken.png: not a readable image",
        ),
        (
            lambda d: Image.new("L", (1, 1), 0).save(d / "dot.png"),
            r"dot.png: image too small \(1x1\)",
        ),
        (lambda d: Image.new("RGB", (64, 64), "white").save(d / "white.png"), "white.png: blank"),
        (lambda d: Image.new("L", (64, 64), 0).save(d / "black.png"), "black.png: blank"),
        (
            lambda d: Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(d / "clear.png"),
            "clear.png: blank",
        ),
    ],
)
def test_bad_sketch_inputs_fail_cleanly_and_keep_old_output(tmp_path, make, message):
    src = tmp_path / "src"
    src.mkdir()
    _sketch().save(src / "0_good.png")  # a good file first: failure happens mid-way
    if message == "no images":
        (src / "0_good.png").unlink()
    make(src)
    out = _prefilled_out(tmp_path)
    with pytest.raises(SketchganError, match=message) as err:
        import_sketches(src, out, 32)
    assert "\n" not in str(err.value)
    _assert_untouched(tmp_path, out)


def test_missing_folder_bad_size_and_self_overwrite(tmp_path):
    with pytest.raises(SketchganError, match="not a folder"):
        import_sketches(tmp_path / "nope", tmp_path / "out", 32)
    src = tmp_path / "src"
    src.mkdir()
    _sketch().save(src / "a.png")
    with pytest.raises(SketchganError, match="size"):
        import_sketches(src, tmp_path / "out", 0)
    with pytest.raises(SketchganError, match="must not contain the source"):
        import_sketches(src, src, 32)
    assert (src / "a.png").is_file()


def _photo(w, h):
    """Left third red, middle green, right third blue: the centre crop must be all green."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 3, 0] = 255
    arr[:, w // 3 : 2 * w // 3, 1] = 255
    arr[:, 2 * w // 3 :, 2] = 255
    return Image.fromarray(arr)


def test_real_images_centre_cropped_rgb(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    _photo(300, 100).save(src / "a.png")
    _photo(300, 100).convert("L").save(src / "b.jpg")
    rgba = _photo(300, 100).convert("RGBA")
    rgba.putalpha(255)
    rgba.save(src / "c.webp", lossless=True)
    paths = load_real_images(src, tmp_path / "out", 16)
    assert len(paths) == 3
    a = np.asarray(Image.open(paths[0]))
    assert Image.open(paths[0]).mode == "RGB" and a.shape == (16, 16, 3)
    assert a[:, :, 1].min() > 240 and a[:, :, 0].max() < 15 and a[:, :, 2].max() < 15
    grey = np.asarray(Image.open(paths[1]))
    assert grey.shape == (16, 16, 3) and np.ptp(grey.astype(int), axis=2).max() <= 1
    assert np.abs(np.asarray(Image.open(paths[2])).astype(int) - a).max() <= 2
    assert len(load_real_images(src, tmp_path / "out2", 16, max_images=2)) == 2


def test_bad_real_image_inputs(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    _photo(60, 60).save(src / "a.png")
    out = _prefilled_out(tmp_path)
    with pytest.raises(SketchganError, match="max_images"):
        load_real_images(src, out, 16, max_images=-1)
    (src / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(SketchganError, match="b.jpg: not a readable image"):
        load_real_images(src, out, 16)
    (src / "b.jpg").unlink()
    Image.new("RGB", (1, 1)).save(src / "c.png")
    with pytest.raises(SketchganError, match=r"c.png: image too small \(1x1\)"):
        load_real_images(src, out, 16)
    _assert_untouched(tmp_path, out)
