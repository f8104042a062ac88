"""Feature extraction for FID/KID/precision-recall, with clean-fid's path and a declared fallback.

Two extractors share one interface (:class:`FeatureExtractor`):

* ``clean-fid/inception-v3``: clean-fid's "clean" mode, i.e. its PIL bicubic float resize to
  299 px and the Inception-v3 TorchScript file that clean-fid downloads
  (``inception-2015-12-05.pt``). Folders are read by clean-fid's own ``get_files_features``.
* ``world-evaluator``: the penultimate layer of the world attribute network
  (:mod:`sketchgan.evaluation.evaluator`); used when the Inception weights cannot be had
  (offline machines) and always available for the embedded world.

Every result carries the extractor's name, so a report can say which network produced each
number; numbers from different extractors are not comparable with each other.

Why a torchvision shim: ``import cleanfid.fid`` imports torchvision, whose compiled ops do not
load beside the CPU torch wheel ("operator torchvision::nms does not exist"), and this project
never imports torchvision. clean-fid only needs torchvision for ``ToTensor`` in its dataset and
for its legacy PyTorch-Inception mode, so a small stand-in module is placed in ``sys.modules``
for the duration of the import (and removed afterwards); the legacy mode stays unavailable.

Inception weights cache: ``<inception_dir>/inception-2015-12-05.pt``. clean-fid itself uses the
system temp folder (``/tmp`` on Linux); that folder is also searched, so a file clean-fid
downloaded earlier is reused. Nothing is written into clean-fid's package folder: feature
arrays go where the caller says (``out_dir`` / ``cache_path``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import shutil
import sys
import tempfile
import types
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sketchgan.errors import SketchganError
from sketchgan.evaluation import metrics
from sketchgan.io import atomic_path, list_images, open_image, sha256_file, to_uint8, write_json

log = logging.getLogger(__name__)

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/" + INCEPTION_FILE
)
#: Where clean-fid itself caches the Inception file (``feature_extractor`` uses /tmp on Linux).
CLEANFID_INCEPTION_DIR = Path(tempfile.gettempdir())
INCEPTION_NAME = "clean-fid/inception-v3"
EVALUATOR_NAME = "world-evaluator"

#: (H, W, 3) uint8 image -> (S, S, 3) float32 in [0, 255], the extractor's input size.
ResizeFn = Callable[[np.ndarray], np.ndarray]
#: (N, 3, S, S) float32 in [0, 255] -> (N, D) features.
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FeatureExtractor:
    """A feature network plus the resize that defines its input, under a reportable name."""

    name: str
    input_size: int
    resize: ResizeFn
    fn: FeatureFn
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Called by clean-fid's loop with float32 NCHW in [0, 255]."""
        with torch.no_grad():
            return self.fn(batch.to(self.device, torch.float32))


# --------------------------------------------------------------------------- clean-fid import


class _ToTensor:
    """Stand-in for torchvision's ToTensor as clean-fid uses it: HWC -> CHW, uint8 scaled to 1."""

    def __call__(self, pic: np.ndarray) -> torch.Tensor:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if tensor.dtype == torch.uint8:
            return tensor.float().div(255)
        return tensor


class _Unavailable(torch.nn.Module):
    """Base class for clean-fid's legacy-Inception blocks; constructing one is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("clean-fid legacy_pytorch mode needs torchvision (not used here)")


def _torchvision_shim() -> dict[str, types.ModuleType]:
    """The few torchvision names clean-fid touches at import time, as plain modules."""
    root = types.ModuleType("torchvision")
    root.__version__ = "0.0.0+sketchgan-shim"
    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor = _ToTensor
    models = types.ModuleType("torchvision.models")
    inception = types.ModuleType("torchvision.models.inception")
    for block in ("InceptionA", "InceptionC", "InceptionE", "Inception3"):
        setattr(inception, block, type(block, (_Unavailable,), {}))
    models.inception = inception
    models.inception_v3 = inception.Inception3
    root.transforms, root.models = transforms, models
    return {
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.models": models,
        "torchvision.models.inception": inception,
    }


@contextlib.contextmanager
def _shimmed_torchvision() -> Iterator[None]:
    """Install the shim only where no torchvision module is loaded, and take it out again."""
    if "torchvision" in sys.modules:
        yield
        return
    shim = _torchvision_shim()
    sys.modules.update(shim)
    try:
        yield
    finally:
        for name, module in shim.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def load_cleanfid() -> types.ModuleType | None:
    """``cleanfid.fid`` imported without torchvision, or None (with a log line) if impossible."""
    if "cleanfid.fid" in sys.modules:
        return sys.modules["cleanfid.fid"]
    try:
        with _shimmed_torchvision():
            return importlib.import_module("cleanfid.fid")
    except Exception as exc:  # any import-time failure means: use our own loader
        log.warning("features: clean-fid not importable (%s: %s)", type(exc).__name__, exc)
        return None


# --------------------------------------------------------------------------- resizing


def _pil_float_resize(image: np.ndarray, size: int) -> np.ndarray:
    """clean-fid's "clean" resize: bicubic per channel on float32 (no uint8 re-quantisation)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image.astype(np.float32)
    channels = [
        np.asarray(
            Image.fromarray(image[:, :, c].astype(np.float32), mode="F").resize(
                (size, size), Image.BICUBIC
            )
        )
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.float32)


def _cleanfid_resizer() -> ResizeFn:
    """clean-fid's own resizer when importable (the definition of mode="clean"), else ours."""
    try:
        resize = importlib.import_module("cleanfid.resize")
        return resize.build_resizer("clean")
    except Exception:  # cleanfid.resize needs no torchvision; this is belt and braces
        return lambda image: _pil_float_resize(image, 299)


# --------------------------------------------------------------------------- extractors


def _find_inception(inception_dir: Path) -> Path | None:
    for folder in (inception_dir, CLEANFID_INCEPTION_DIR):
        candidate = folder / INCEPTION_FILE
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def _download_inception(inception_dir: Path, timeout_s: float) -> Path:
    """Fetch the TorchScript file into the cache; a failed transfer leaves no partial file."""
    target = inception_dir / INCEPTION_FILE
    log.info("features: downloading %s to %s", INCEPTION_URL, target)
    with urllib.request.urlopen(INCEPTION_URL, timeout=timeout_s) as response:
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    return target


def _inception_fn(path: Path, device: torch.device) -> FeatureFn:
    """clean-fid's "clean" forward: (x - 128) / 128 through the TorchScript layers, 2048-D."""
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.x, but it is the format clean-fid's file ships in.
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
        model = torch.jit.load(str(path), map_location=device).eval()
    layers = model.layers

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.shape[2:] != (299, 299):
            raise SketchganError(f"inception: expected 299x299 input, got {tuple(x.shape[2:])}")
        return layers.forward((x - 128) / 128).view(x.shape[0], 2048)

    return forward


def inception_extractor(
    device: torch.device,
    inception_dir: str | Path = CLEANFID_INCEPTION_DIR,
    download: bool = True,
    timeout_s: float = 15.0,
) -> FeatureExtractor | None:
    """clean-fid's Inception extractor, or None when its weights cannot be loaded or fetched.

    Offline the download fails at once (URLError) or after ``timeout_s``; the reason is logged
    and the caller falls back.
    """
    inception_dir = Path(inception_dir)
    try:
        path = _find_inception(inception_dir)
        if path is None:
            if not download:
                log.warning(
                    "features: %s not in %s and download disabled", INCEPTION_FILE, inception_dir
                )
                return None
            path = _download_inception(inception_dir, timeout_s)
        fn = _inception_fn(path, device)
    except (urllib.error.URLError, OSError, RuntimeError, TimeoutError) as exc:
        log.warning(
            "features: clean-fid Inception weights unavailable (%s: %s)", type(exc).__name__, exc
        )
        return None
    return FeatureExtractor(INCEPTION_NAME, 299, _cleanfid_resizer(), fn, device)


def evaluator_extractor(model: torch.nn.Module, device: torch.device) -> FeatureExtractor:
    """Penultimate features of the world evaluator, fed like Inception (uint8 -> float)."""
    size = int(model.config["size"])
    model = model.to(device).eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.features(x / 127.5 - 1.0)

    return FeatureExtractor(
        EVALUATOR_NAME, size, lambda image: _pil_float_resize(image, size), forward, device
    )


def select_extractor(
    kind: str,
    device: torch.device,
    evaluator: torch.nn.Module | None = None,
    inception_dir: str | Path = CLEANFID_INCEPTION_DIR,
    download: bool = True,
    timeout_s: float = 15.0,
) -> FeatureExtractor:
    """``inception`` (must work), ``evaluator``, or ``auto``: Inception, else the evaluator."""
    if kind not in ("auto", "inception", "evaluator"):
        raise SketchganError(f"features: expected auto, inception or evaluator, got {kind!r}")
    if kind in ("auto", "inception"):
        extractor = inception_extractor(device, inception_dir, download, timeout_s)
        if extractor is not None:
            return extractor
        if kind == "inception":
            raise SketchganError(
                f"features: clean-fid Inception weights not available; put {INCEPTION_FILE} "
                f"into {inception_dir} or choose the evaluator extractor"
            )
    if evaluator is None:
        raise SketchganError("features: fallback needs the world evaluator (evaluator.pt)")
    if kind == "auto":
        log.warning(
            "features: falling back to '%s' features (numbers not comparable with Inception FID)",
            EVALUATOR_NAME,
        )
    return evaluator_extractor(evaluator, device)


# --------------------------------------------------------------------------- extraction


def _batched_features(
    images: list[np.ndarray] | np.ndarray, extractor: FeatureExtractor, batch_size: int
) -> np.ndarray:
    """Resize each uint8 HWC image like clean-fid, then run the network in batches."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = [extractor.resize(img) for img in images[start : start + batch_size]]
        batch = torch.from_numpy(np.stack(chunk).transpose(0, 3, 1, 2).copy())
        out.append(extractor(batch).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def _tensor_to_rgb_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] NCHW tensors are quantised exactly as saving them to PNG would."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise SketchganError(
                f"features: expected (N, C, H, W) images, got {tuple(images.shape)}"
            )
        arr = to_uint8(images)
    else:
        arr = np.asarray(images)
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise SketchganError("features: arrays must be uint8 (N, H, W, C)")
    if arr.shape[3] == 1:
        arr = np.repeat(arr, 3, axis=3)
    return arr


def _folder_images(files: list[Path]) -> list[np.ndarray]:
    return [np.asarray(open_image(p).convert("RGB")) for p in files]


def extract_features(
    source: str | Path | torch.Tensor | np.ndarray,
    extractor: FeatureExtractor,
    batch_size: int = 64,
    use_cleanfid: bool = True,
) -> np.ndarray:
    """Features (N, D) of a folder of images, a [-1, 1] NCHW tensor or a uint8 NHWC array.

    Folders go through clean-fid's ``get_files_features`` (its loader, "clean" quantisation and
    the extractor's resize) when clean-fid imports, and through our own loader otherwise.
    """
    if batch_size < 1:
        raise SketchganError(f"features: batch_size must be >= 1, got {batch_size}")
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return _batched_features(_tensor_to_rgb_uint8(source), extractor, batch_size)
    folder = Path(source)
    files = list_images(folder)  # one-line error for a missing or empty folder
    fid_module = load_cleanfid() if use_cleanfid else None
    if fid_module is None:
        return _batched_features(_folder_images(files), extractor, batch_size)
    # The file list is ours (flat, sorted, image suffixes) so that both paths see the same set;
    # clean-fid's folder glob would also descend into subfolders.
    feats = fid_module.get_files_features(
        [str(p) for p in files],
        extractor,
        num_workers=0,
        batch_size=batch_size,
        device=extractor.device,
        mode="clean",
        custom_fn_resize=extractor.resize,
        verbose=False,
    )
    return np.asarray(feats, dtype=np.float32)


def folder_fingerprint(folder: str | Path) -> str:
    """Hash of the folder's image names and contents: decides whether cached features are stale."""
    digest = hashlib.sha256()
    for path in list_images(folder):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def save_features(
    path: str | Path, feats: np.ndarray, extractor_name: str, fingerprint: str
) -> None:
    """``.npz`` with the array and what produced it, so a stale or foreign cache is detected."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                feats=feats,
                extractor=np.array(extractor_name),
                fingerprint=np.array(fingerprint),
            )


def cached_features(
    folder: str | Path, extractor: FeatureExtractor, cache_path: str | Path, batch_size: int = 64
) -> np.ndarray:
    """Features of ``folder``, reused from ``cache_path`` when extractor and images are unchanged.

    The reference folder is shared by every method and baseline; caching it in the stage's
    output folder (not clean-fid's package folder) keeps it visible to DVC.
    """
    cache_path, fingerprint = Path(cache_path), folder_fingerprint(folder)
    if cache_path.is_file():
        try:
            with np.load(cache_path) as data:
                if (
                    str(data["extractor"]) == extractor.name
                    and str(data["fingerprint"]) == fingerprint
                ):
                    return data["feats"]
        except (OSError, KeyError, ValueError):
            log.warning("features: ignoring unreadable cache %s", cache_path)
    feats = extract_features(folder, extractor, batch_size)
    save_features(cache_path, feats, extractor.name, fingerprint)
    return feats


# --------------------------------------------------------------------------- comparison


def compare_features(
    gen_feats: np.ndarray,
    ref_feats: np.ndarray,
    extractor_name: str,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """FID, KID and precision/recall of generated vs reference features, with provenance."""
    pr = metrics.precision_recall(ref_feats, gen_feats, k=k)
    return {
        "fid": metrics.fid_from_features(gen_feats, ref_feats),
        "kid": metrics.kid_from_features(gen_feats, ref_feats, kid_subsets, kid_subset_size, seed),
        "precision": pr["precision"],
        "recall": pr["recall"],
        "n_gen": int(len(gen_feats)),
        "n_ref": int(len(ref_feats)),
        "features": extractor_name,
    }


def compare_folders(
    gen_dir: str | Path,
    ref_dir: str | Path,
    extractor: FeatureExtractor,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of a generated folder against a reference folder.

    With ``out_dir``, the feature arrays (``gen_features.npz``, ``ref_features.npz``) and the
    result (``metrics.json``) are written there; the reference features are reused from it
    when the reference images and the extractor are unchanged.
    """
    if out_dir is None:
        ref_feats = extract_features(ref_dir, extractor, batch_size)
        gen_feats = extract_features(gen_dir, extractor, batch_size)
    else:
        out_dir = Path(out_dir)
        ref_feats = cached_features(ref_dir, extractor, out_dir / "ref_features.npz", batch_size)
        gen_feats = cached_features(gen_dir, extractor, out_dir / "gen_features.npz", batch_size)
    result = compare_features(
        gen_feats, ref_feats, extractor.name, k, kid_subsets, kid_subset_size, seed
    )
    if out_dir is not None:
        write_json(Path(out_dir) / "metrics.json", result)
    return result
