"""The prepare stage: every data set the pipeline reads, built from the embedded world.

Four sets mirror the paper's data: ``pretrain`` (the unconditioned world a StyleGAN2 learns,
with exact contours for training the sketch network), ``sketches`` (the user's hand-drawn
sketches of one pose, or a folder the user brings), ``eval`` (real scenes of that pose with
random appearance: the FID reference) and ``image_reg`` (unconditioned real images for the
image-space regulariser, or the user's photos). Each set draws from its own seed stream, so no
scene appears in two sets.

All sets are built in temporary folders and only renamed into place when every one of them is
complete, so a failure part-way leaves the previous data exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from sketchgan.data.sketch_import import iter_photos, iter_sketches, list_source_images
from sketchgan.data.strokes import hand_drawn_sketches
from sketchgan.data.world import (
    TargetSpec,
    matches_target,
    render,
    sample_attributes,
)
from sketchgan.errors import SketchganError
from sketchgan.io import atomic_dir, save_png

SETS: tuple[str, ...] = ("pretrain", "sketches", "eval", "image_reg")
_STREAM = {"pretrain": 0, "sketches": 1, "eval": 2, "image_reg": 3, "strokes": 4}
_BATCH = 4096  # scenes rendered and written per batch: bounded memory at any size
PNG_COMPRESS_LEVEL = 1  # 2x faster than PIL's default 6 for ~13 % larger files at 32 px
_WRITERS = max(1, min(4, os.cpu_count() or 1))  # PIL's encoder releases the GIL


def set_rng(seed: int, stream: str) -> np.random.Generator:
    """Independent generator per set: the same seed never reuses a scene across sets."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM[stream]]))


def _stroke_seed(seed: int) -> int:
    return int(np.random.SeedSequence([int(seed), _STREAM["strokes"]]).generate_state(1)[0])


# --------------------------------------------------------------------------- writing
def _png_bytes(arr: np.ndarray) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _write_one(path: Path, arr: np.ndarray) -> str:
    data = _png_bytes(arr)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _write_batch(folder: Path, arrays: np.ndarray, start: int) -> list[str]:
    """Write numbered PNGs into a temporary folder; returns their sha256 (hashed in memory)."""
    paths = [folder / f"{start + i:06d}.png" for i in range(len(arrays))]
    if len(arrays) < 64 or _WRITERS == 1:
        return [_write_one(p, a) for p, a in zip(paths, arrays, strict=True)]
    with ThreadPoolExecutor(_WRITERS) as pool:
        return list(pool.map(_write_one, paths, arrays, chunksize=256))


def _manifest(rows: dict[str, Any], attrs: pd.DataFrame | None) -> pd.DataFrame:
    """path, split, <attributes>, sha256 [, extra columns]: one row per file of a set."""
    front = pd.DataFrame({"path": rows.pop("path"), "split": rows.pop("split")})
    parts = [front]
    if attrs is not None:
        parts.append(attrs.reset_index(drop=True))
    parts.append(pd.DataFrame(rows))
    return pd.concat(parts, axis=1)


def _write_manifest(set_dir: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(set_dir / "manifest.csv", index=False)


def read_manifest(set_dir: str | os.PathLike) -> pd.DataFrame:
    """A set's manifest; paths in it are relative to the set folder."""
    path = Path(set_dir) / "manifest.csv"
    if not path.is_file():
        raise SketchganError(f"{path}: manifest not found (run the prepare stage)")
    try:
        return pd.read_csv(path, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SketchganError(f"{path}: unreadable manifest ({exc.__class__.__name__})") from exc


# --------------------------------------------------------------------------- the sets
def _build_world_set(
    set_dir: Path, split: str, attrs: pd.DataFrame, size: int, contours: bool
) -> pd.DataFrame:
    """Render scenes in batches into ``images/`` (and ``contours/``) and return the manifest."""
    img_dir = set_dir / "images"
    img_dir.mkdir()
    con_dir = set_dir / "contours"
    if contours:
        con_dir.mkdir()
    rows: dict[str, list] = {"path": [], "split": [], "sha256": []}
    if contours:
        rows.update(contour=[], contour_sha256=[])
    for start in range(0, len(attrs), _BATCH):
        batch = attrs.iloc[start : start + _BATCH]
        images, cons = render(batch, size)
        rows["sha256"] += _write_batch(img_dir, images, start)
        if contours:
            rows["contour_sha256"] += _write_batch(con_dir, cons, start)
            rows["contour"] += [f"contours/{start + i:06d}.png" for i in range(len(batch))]
    rows["path"] = [f"images/{i:06d}.png" for i in range(len(attrs))]
    rows["split"] = [split] * len(attrs)
    return _manifest(rows, attrs)


def _build_synthetic_sketches(
    set_dir: Path, n: int, size: int, target: TargetSpec, seed: int
) -> pd.DataFrame:
    attrs = sample_attributes(n, set_rng(seed, "sketches"), target)
    sketches = hand_drawn_sketches(attrs, size, _stroke_seed(seed))
    img_dir = set_dir / "images"
    img_dir.mkdir()
    rows = {
        "path": [f"images/{i:06d}.png" for i in range(n)],
        "split": ["sketches"] * n,
        "sha256": _write_batch(img_dir, sketches, 0),
        "source": ["synthetic"] * n,
    }
    return _manifest(rows, attrs)


def _build_imported(set_dir: Path, split: str, items: Iterable[tuple[Path, np.ndarray]]):
    """Write converted user files; the manifest records where each came from."""
    img_dir = set_dir / "images"
    img_dir.mkdir()
    rows: dict[str, list] = {"path": [], "split": [], "sha256": [], "source": []}
    for i, (src, arr) in enumerate(items):
        rows["sha256"] += _write_batch(img_dir, arr[None], i)
        rows["path"].append(f"images/{i:06d}.png")
        rows["source"].append(str(src))
    rows["split"] = [split] * len(rows["path"])
    return _manifest(rows, None)


# --------------------------------------------------------------------------- validation
def _count(value: Any, name: str, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SketchganError(
            f"params: '{where}.{name}' must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _source_folder(value: str | os.PathLike | None, name: str, where: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        raise SketchganError(f"params: '{where}.{name}': {path} is not a folder")
    list_source_images(path)  # empty folder -> error before anything is written
    return path


# --------------------------------------------------------------------------- entry point
def prepare_data(
    out_root: Path,
    size: int,
    n_pretrain: int,
    n_image_reg: int,
    n_eval: int,
    n_sketches: int,
    target: TargetSpec | None,
    seed: int,
    user_sketches: Path | None = None,
    real_images: Path | None = None,
    eval_images: Path | None = None,
    *,
    where: str = "prepare",
) -> dict[str, Any]:
    """Build all four sets under ``out_root``; all of them are replaced together or not at all.

    ``user_sketches`` replaces the synthetic sketches (``n_sketches`` is then ignored: every
    sketch of the folder is used). ``real_images`` replaces the synthetic image_reg set, taking at
    most ``n_image_reg`` photos; ``eval_images`` (e.g. the authors' curated LSUN subset of the
    sketched pose) replaces the synthetic eval set, taking at most ``n_eval`` photos. ``where``
    prefixes parameter names in error messages.
    """
    size = _count(size, "size", where, minimum=8)
    counts = {
        "pretrain": _count(n_pretrain, "n_pretrain", where),
        "image_reg": _count(n_image_reg, "n_image_reg", where),
        "eval": _count(n_eval, "n_eval", where),
        "sketches": _count(n_sketches, "n_sketches", where, minimum=0 if user_sketches else 1),
    }
    seed = _count(seed, "seed", where)
    sketch_dir = _source_folder(user_sketches, "user_sketches", where)
    photo_dir = _source_folder(real_images, "real_images", where)
    eval_dir = _source_folder(eval_images, "eval_images", where)
    if target is None and (sketch_dir is None or eval_dir is None):
        raise SketchganError(
            f"params: '{where}.target' is needed unless both '{where}.user_sketches' and "
            f"'{where}.eval_images' are given"
        )
    if target is not None and not isinstance(target, TargetSpec):
        raise SketchganError(f"params: '{where}.target' must be a TargetSpec (use from_dict)")
    out_root = Path(out_root)
    seconds: dict[str, float] = {}
    manifests: dict[str, pd.DataFrame] = {}
    t_all = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_dir(out_root / name)) for name in SETS}
        for name in SETS:
            t0 = time.perf_counter()
            manifests[name] = _build_set(
                name, tmp[name], size, counts, target, seed, sketch_dir, photo_dir, eval_dir
            )
            _write_manifest(tmp[name], manifests[name])
            seconds[name] = round(time.perf_counter() - t0, 3)
        t_commit = time.perf_counter()
    # Swapping in the new sets includes deleting the previous ones (slow on some disks).
    seconds["replace"] = round(time.perf_counter() - t_commit, 3)
    seconds["total"] = round(time.perf_counter() - t_all, 3)
    pretrain = manifests["pretrain"]
    fraction = (
        float(matches_target(pretrain, target).mean())
        if len(pretrain) and target is not None
        else float("nan")
    )
    return {
        "size": size,
        "seed": seed,
        "counts": {name: len(frame) for name, frame in manifests.items()},
        "seconds": seconds,
        "sources": {
            "sketches": str(sketch_dir) if sketch_dir else "synthetic",
            "image_reg": str(photo_dir) if photo_dir else "synthetic",
            "eval": str(eval_dir) if eval_dir else "synthetic",
        },
        "target": target.to_dict() if target is not None else None,
        "target_fraction_in_pretrain": fraction,
    }


def _build_set(
    name, set_dir, size, counts, target, seed, sketch_dir, photo_dir, eval_dir=None
) -> pd.DataFrame:
    """One set into its temporary folder; user folders take the place of synthetic data."""
    if name == "eval" and eval_dir is not None:
        return _build_imported(set_dir, name, iter_photos(eval_dir, size, counts[name]))
    if name == "pretrain":
        attrs = sample_attributes(counts[name], set_rng(seed, name))
        return _build_world_set(set_dir, name, attrs, size, contours=True)
    if name == "eval":
        attrs = sample_attributes(counts[name], set_rng(seed, name), target)
        return _build_world_set(set_dir, name, attrs, size, contours=False)
    if name == "image_reg":
        if photo_dir is not None:
            return _build_imported(set_dir, name, iter_photos(photo_dir, size, counts[name]))
        attrs = sample_attributes(counts[name], set_rng(seed, name))
        return _build_world_set(set_dir, name, attrs, size, contours=False)
    if sketch_dir is not None:
        return _build_imported(set_dir, name, iter_sketches(sketch_dir, size))
    return _build_synthetic_sketches(set_dir, counts[name], size, target, seed)


# --------------------------------------------------------------------------- contact sheet
_ROWS = (
    ("pretrain", "images", "pretrain"),
    ("pretrain", "contours", "contours"),
    ("sketches", "images", "sketches"),
    ("eval", "images", "eval"),
    ("image_reg", "images", "image_reg"),
)


def _first_images(folder: Path, n: int, tile: int) -> list[np.ndarray]:
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")[:n]
    tiles = []
    for path in files:
        with Image.open(path) as img:
            tiles.append(np.asarray(img.convert("RGB").resize((tile, tile), Image.NEAREST)))
    return tiles


def contact_sheet(
    data_root: str | os.PathLike, out_png: str | os.PathLike, per_row: int = 12, tile: int = 64
) -> Path:
    """One PNG with a labelled row per set, for a person to check the data at a glance."""
    root = Path(data_root)
    label_w, pad = 80, 4
    rows = [(label, _first_images(root / s / sub, per_row, tile)) for s, sub, label in _ROWS]
    rows = [(label, tiles) for label, tiles in rows if tiles]
    if not rows:
        raise SketchganError(f"{root}: no prepared images found (run the prepare stage)")
    width = label_w + per_row * (tile + pad) + pad
    sheet = Image.new("RGB", (width, len(rows) * (tile + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, tiles) in enumerate(rows):
        y = pad + r * (tile + pad)
        draw.text((pad, y + tile // 2 - 6), label, fill="black")
        for c, arr in enumerate(tiles):
            sheet.paste(Image.fromarray(arr), (label_w + pad + c * (tile + pad), y))
    save_png(np.asarray(sheet), out_png)
    return Path(out_png)
