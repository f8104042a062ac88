"""Atomic file output and image I/O shared by every stage.

Outputs are written to a temporary sibling and renamed into place, so a crash or Ctrl-C never
leaves a half-written checkpoint, PNG or folder where a previous good one used to be.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sketchgan.errors import SketchganError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clear_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what killed atomic writes of ``path`` left beside it: temp files/folders
    (``.<name>.<pid>.*.tmp``) of processes that no longer run, and put back a folder that
    ``atomic_dir`` had moved aside (``.<name>.old-<pid>``) when the kill fell between its two
    renames. Temps of a writer that is still alive are left alone. Returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed: list[Path] = []
    for entry in sorted(path.parent.glob(f".{path.name}.*")):
        owner = entry.name[len(path.name) + 2 :].split(".", 1)[0].removeprefix("old-")
        if not owner.isdigit() or _pid_alive(int(owner)):
            continue
        if entry.name.endswith(".tmp"):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(True)
            removed.append(entry)
        elif ".old-" in entry.name:
            if not path.exists():
                os.replace(entry, path)
            else:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the result the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``path`` as a whole.

    The old folder is only removed after the new one is complete, so a failure part-way
    leaves the previous contents untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(path)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    )
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file (checkpoints must never be half-written)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Map generator output in [-1, 1] (N, C, H, W) to uint8 (N, H, W, C)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Save one uint8 image (H, W), (H, W, 1) or (H, W, 3) as PNG."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder in sorted order; a missing or empty folder is a user error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SketchganError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SketchganError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image, turning decoder failures into one-line errors."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SketchganError(f"{path}: not a readable image ({exc.__class__.__name__})") from exc


def load_image_folder(
    folder: str | os.PathLike, mode: str = "RGB", size: int | None = None
) -> torch.Tensor:
    """Load a folder of same-size images into a float tensor in [-1, 1], (N, C, H, W)."""
    return load_image_files(list_images(folder), mode, size)


def load_image_files(files: list[Path], mode: str = "RGB", size: int | None = None) -> torch.Tensor:
    """Load same-size image files into a float tensor in [-1, 1], (N, C, H, W)."""
    arrays = []
    for path in files:
        img = open_image(path).convert(mode)
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        arr = np.asarray(img)
        if arrays and arr.shape != arrays[0].shape:
            raise SketchganError(f"{path}: size {arr.shape} differs from {arrays[0].shape}")
        arrays.append(arr)
    data = np.stack(arrays)
    if data.ndim == 3:
        data = data[:, :, :, None]
    return torch.from_numpy(data).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def save_image_folder(images: torch.Tensor, folder: str | os.PathLike, start: int = 0) -> None:
    """Write a batch in [-1, 1] as numbered PNGs (``000000.png``...) into an existing folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(to_uint8(images)):
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(
            folder / f"{start + i:06d}.png"
        )


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Tile a batch in [-1, 1] into one uint8 image (white padding), like a sample sheet."""
    arr = to_uint8(images)
    if arr.shape[3] == 1:
        arr = np.repeat(arr, 3, axis=3)
    n, h, w, c = arr.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8) -> None:
    save_png(make_grid(images, nrow=nrow), path)
