"""Bring a user's own sketches and photos into the layout the pipeline reads.

Users draw on paper, in paint programs and on tablets, so a sketch folder mixes formats, sizes,
alpha channels and polarities. Everything is normalised to what the sketch discriminator was
trained against (dark strokes on white, square, the model's size, 1 channel) so that the
fine-tuning signal is the *shape* of the strokes, not their file format.

Decisions (documented for users):
- Files whose suffix is not an image suffix (``README.txt``, ``Thumbs.db``) and sub-folders are
  skipped with a logged warning; dot-files are skipped silently. A file with an image suffix that
  cannot be decoded is an error: it was meant to be used, so dropping it silently would change
  the experiment.
- Polarity: a sketch is mostly background, so the median grey decides; a dark median means
  white-on-black and the image is inverted. The background level is then mapped to pure white.
- Sketches are padded (not cropped) to a square with white, so no stroke is cut; thin strokes are
  thickened before large downscales and the darkest ink is mapped to black, so a 2 px pen line on
  a 1024 px canvas survives at 32 px. Photos are centre-cropped (as LSUN exports usually are).
- Images smaller than ``MIN_SIDE`` on a side and sketches without any stroke are errors; so are
  images above ``MAX_PIXELS`` (checked from the header, before decoding). Large ones are shrunk
  first (a min-pool for sketches, so no stroke is lost; a box reduce for photos), so any size
  up to the limit imports in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from sketchgan.errors import SketchganError
from sketchgan.io import IMAGE_SUFFIXES, atomic_dir, open_image

log = logging.getLogger(__name__)

MIN_SIDE = 8  # pixels; anything smaller carries no usable shape
STROKE_CONTRAST = 0.25  # a stroke pixel is this much darker than the background (0..1 grey)
MIN_OUTPUT_SIZE = 8
MAX_PIXELS = 150_000_000  # above this an image is refused (a 12,000 x 12,000 scan is 144 MP)
#: images are shrunk cheaply down to this many times the output size before the careful resize
SHRINK_TO = 8


def _check_size(size: int, where: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_OUTPUT_SIZE:
        raise SketchganError(f"{where}: must be an integer >= {MIN_OUTPUT_SIZE}, got {size!r}")
    return int(size)


def list_source_images(src_dir: str | os.PathLike) -> list[Path]:
    """Image files of a user folder (sorted); other entries are skipped with a warning."""
    src = Path(src_dir)
    if not src.is_dir():
        raise SketchganError(f"{src}: not a folder")
    files = []
    for path in sorted(src.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            files.append(path)
        else:
            log.warning("%s: skipped (not an image file: %s)", path, ", ".join(IMAGE_SUFFIXES))
    if not files:
        raise SketchganError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


@contextlib.contextmanager
def _own_size_limit() -> Iterator[None]:
    """PIL's decompression-bomb guard raises an uncaught error of its own above ~179 MP; this
    module checks ``MAX_PIXELS`` from the header itself, with a message that says what to do."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _header_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as probe:
            return probe.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SketchganError(f"{path}: not a readable image ({exc.__class__.__name__})") from exc


def _open_checked(path: Path) -> Image.Image:
    with _own_size_limit():
        w, h = _header_size(path)
        if w * h > MAX_PIXELS:
            raise SketchganError(
                f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, above the import limit of "
                f"{MAX_PIXELS / 1e6:.0f}; downscale it first"
            )
        img = open_image(path)
    if min(w, h) < MIN_SIDE:
        raise SketchganError(
            f"{path}: image too small ({w}x{h}); need at least {MIN_SIDE} px a side"
        )
    return img


def _on_white(img: Image.Image) -> Image.Image:
    """Composite any transparency onto white: transparent pixels are paper, not ink."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return img


def _grey01(img: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1], also for 16-bit and float images."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return np.clip(arr / top, 0.0, 1.0)
    return np.asarray(_on_white(img).convert("L"), dtype=np.float64) / 255.0


def _pad_square(grey: np.ndarray, fill: float) -> np.ndarray:
    h, w = grey.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.full((side, side), fill)
    out[top : top + h, left : left + w] = grey
    return out


def _shrink_keeping_strokes(img: Image.Image, size: int) -> Image.Image:
    """A large sketch min-pooled (max-pooled for light-on-dark) by an integer factor down to
    about ``SHRINK_TO`` times the output size: any stroke pixel keeps its block dark, and the
    thickening filter that follows works on a small image (its cost grows with the square of
    the downscale factor)."""
    w, h = img.size
    k = max(w, h) // (size * SHRINK_TO)
    if k < 2:
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        grey = np.rint(_grey01(img) * 255).astype(np.uint8)
    else:
        grey = np.asarray(_on_white(img).convert("L"))
    light_paper = float(np.median(grey[::k, ::k])) >= 128
    pad_h, pad_w = (-h) % k, (-w) % k
    paper = 255 if light_paper else 0
    grey = np.pad(grey, ((0, pad_h), (0, pad_w)), constant_values=paper)
    blocks = grey.reshape(grey.shape[0] // k, k, grey.shape[1] // k, k)
    pooled = blocks.min(axis=(1, 3)) if light_paper else blocks.max(axis=(1, 3))
    return Image.fromarray(np.ascontiguousarray(pooled), "L")


def convert_sketch(img: Image.Image, size: int, name: str | os.PathLike = "sketch") -> np.ndarray:
    """One user sketch -> uint8 (size, size), dark strokes on white; ``name`` is for errors."""
    size = _check_size(size)
    grey = _grey01(_shrink_keeping_strokes(img, size))
    background = float(np.median(grey))
    if background < 0.5:  # white-on-black (chalkboard, inverted scan)
        grey, background = 1.0 - grey, 1.0 - background
    if not np.any(grey < background - STROKE_CONTRAST):
        raise SketchganError(f"{name}: blank sketch (no strokes darker than the background)")
    grey = np.clip(grey / max(background, 1e-6), 0.0, 1.0)
    square = Image.fromarray(np.rint(_pad_square(grey, 1.0) * 255).astype(np.uint8), "L")
    factor = square.size[0] / size
    grow = 2 * int(factor / 4) + 1
    if grow > 1:  # thicken so strokes keep about one output pixel of ink (1 would be a no-op,
        # and Pillow 12 crashes on MinFilter(1) with SIGFPE)
        square = square.filter(ImageFilter.MinFilter(grow))
    resized = square.resize((size, size), Image.BOX if factor > 1 else Image.BICUBIC)
    ink = 1.0 - np.asarray(resized, dtype=np.float64) / 255.0
    peak = ink.max()
    if peak < 0.05:
        raise SketchganError(f"{name}: strokes vanish when resized to {size} px")
    ink = np.clip(ink / peak, 0.0, 1.0)
    return np.rint(255.0 * (1.0 - ink)).astype(np.uint8)


def convert_photo(img: Image.Image, size: int) -> np.ndarray:
    """One photo -> uint8 (size, size, 3): centre crop to square, then resize."""
    size = _check_size(size)
    rgb = _on_white(img).convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    k = side // (size * SHRINK_TO)
    if k >= 2:  # a box reduce first: LANCZOS over the full image would take seconds per photo
        square = square.reduce(k)
        side = square.size[0]
    resample = Image.LANCZOS if side > size else Image.BICUBIC
    return np.asarray(square.resize((size, size), resample), dtype=np.uint8)


def iter_sketches(src_dir: str | os.PathLike, size: int) -> Iterator[tuple[Path, np.ndarray]]:
    """(source path, converted sketch) for each image of a folder, in sorted order."""
    for path in list_source_images(src_dir):
        yield path, convert_sketch(_open_checked(path), size, path)


def iter_photos(
    src_dir: str | os.PathLike, size: int, max_images: int | None = None
) -> Iterator[tuple[Path, np.ndarray]]:
    """(source path, converted photo) for the first ``max_images`` images of a folder."""
    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0
    ):
        raise SketchganError(f"max_images: must be an integer >= 0, got {max_images!r}")
    files = list_source_images(src_dir)
    for path in files if max_images is None else files[:max_images]:
        yield path, convert_photo(_open_checked(path), size)


def _guard_folders(src_dir: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Replacing ``out_dir`` must never delete the sources."""
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if src == out or out in src.parents:
        raise SketchganError(
            f"{out_dir}: output folder must not contain the source folder {src_dir}"
        )


def write_pngs(items: Iterator[tuple[Path, np.ndarray]], folder: Path) -> list[tuple[Path, Path]]:
    """Write converted images as ``NNNNNN.png`` into an existing (temporary) folder."""
    written = []
    for i, (src, arr) in enumerate(items):
        dst = folder / f"{i:06d}.png"
        Image.fromarray(arr).save(dst, format="PNG")
        written.append((src, dst))
    return written


def _import(items, src_dir, out_dir) -> list[Path]:
    _guard_folders(src_dir, out_dir)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        names = [dst.name for _, dst in write_pngs(items, tmp)]
    return [out / name for name in names]


def import_sketches(
    src_dir: str | os.PathLike, out_dir: str | os.PathLike, size: int
) -> list[Path]:
    """Convert a folder of user sketches into ``out_dir`` (replaced as a whole, only on success)."""
    size = _check_size(size)
    list_source_images(src_dir)  # fail on a missing/empty folder before touching anything
    return _import(iter_sketches(src_dir, size), src_dir, out_dir)


def load_real_images(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    size: int,
    max_images: int | None = None,
) -> list[Path]:
    """Convert a folder of real photos (e.g. an LSUN export) into RGB PNGs in ``out_dir``."""
    size = _check_size(size)
    return _import(iter_photos(src_dir, size, max_images), src_dir, out_dir)
