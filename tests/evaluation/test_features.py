"""Feature extraction: clean-fid's own folder path, our fallback path, and provenance of numbers."""

from __future__ import annotations

import logging
import os
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sketchgan.errors import SketchganError
from sketchgan.evaluation import evaluator, features, metrics

# clean-fid's own frechet_distance passes an argument SciPy deprecates; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")

SIZE = 16


def _write_folder(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    return folder


def _random_images(n: int, seed: int, offset: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, 200, (n, SIZE, SIZE, 3)) + offset, 0, 255).astype(np.uint8)


def _pooled_extractor(resize_to: int | None = None) -> features.FeatureExtractor:
    """A deterministic stand-in network: 4x4 average-pooled pixels (48-D)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    if resize_to is None:
        resize = features._cleanfid_resizer()  # clean-fid's own 299 px "clean" resize
        size = 299
    else:
        size = resize_to
        resize = lambda img: features._pil_float_resize(img, size)  # noqa: E731
    return features.FeatureExtractor("test-pool", size, resize, fn, torch.device("cpu"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("feat")
    return (
        _write_folder(root / "a", _random_images(24, seed=0)),
        _write_folder(root / "b", _random_images(24, seed=1, offset=40)),
    )


@pytest.fixture(scope="module")
def tiny_evaluator() -> evaluator.WorldEvaluator:
    torch.manual_seed(0)
    return evaluator.WorldEvaluator(evaluator._default_config(SIZE, 8)).eval()


def test_cleanfid_imports_without_torchvision():
    fid_module = features.load_cleanfid()
    if fid_module is None:
        pytest.skip("clean-fid is not installed/importable in this environment")
    assert hasattr(fid_module, "compute_fid")
    # the stand-in module never leaks to the rest of the program
    shim = sys.modules.get("torchvision")
    assert shim is None or not getattr(shim, "__version__", "").endswith("sketchgan-shim")


def test_shim_to_tensor_matches_torchvision_semantics():
    to_tensor = features._ToTensor()
    u8 = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = to_tensor(u8)
    assert out.shape == (3, 2, 3) and out.dtype == torch.float32
    assert torch.allclose(out[:, 1, 2], torch.from_numpy(u8[1, 2]).float() / 255)
    f32 = np.full((2, 2, 3), 250.0, np.float32)
    assert torch.equal(to_tensor(f32), torch.full((3, 2, 2), 250.0))


def test_cleanfid_compute_fid_with_custom_extractor_matches_ours(folders):
    """The real clean-fid entry point on CPU, offline, against our metrics on the same features."""
    fid_module = features.load_cleanfid()
    if fid_module is None:
        pytest.skip("clean-fid is not importable here")
    a, b = folders
    extractor = _pooled_extractor()
    theirs = fid_module.compute_fid(
        str(a),
        str(b),
        mode="clean",
        custom_feat_extractor=extractor,
        device=torch.device("cpu"),
        num_workers=0,
        batch_size=8,
        verbose=False,
    )
    ours = features.compare_folders(b, a, extractor, batch_size=8, kid_subsets=5)
    assert theirs > 1.0
    assert ours["fid"] == pytest.approx(float(theirs), rel=1e-5)
    assert ours["features"] == "test-pool" and ours["n_gen"] == ours["n_ref"] == 24


def test_folder_paths_and_tensor_path_agree(folders):
    a, _ = folders
    extractor = _pooled_extractor(resize_to=8)
    via_cleanfid = features.extract_features(a, extractor, batch_size=5)
    via_ours = features.extract_features(a, extractor, batch_size=7, use_cleanfid=False)
    arr = _random_images(24, seed=0)
    via_tensor = features.extract_features(
        torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0, extractor
    )
    assert via_ours.shape == (24, 48)
    np.testing.assert_allclose(via_cleanfid, via_ours, atol=1e-4)
    np.testing.assert_allclose(via_tensor, via_ours, atol=1e-4)


def test_inception_download_failure_falls_back_quickly(
    monkeypatch, tmp_path, caplog, tiny_evaluator
):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(features.urllib.request, "urlopen", offline)
    monkeypatch.setattr(features, "CLEANFID_INCEPTION_DIR", tmp_path / "cleanfid-cache")
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger=features.__name__):
        assert features.inception_extractor(cpu, inception_dir=tmp_path) is None
        chosen = features.select_extractor(
            "auto", cpu, evaluator=tiny_evaluator, inception_dir=tmp_path
        )
    assert chosen.name == features.EVALUATOR_NAME
    assert "Inception weights unavailable" in caplog.text
    assert "falling back" in caplog.text
    assert not (tmp_path / features.INCEPTION_FILE).exists()  # no partial download left
    with pytest.raises(SketchganError, match="Inception weights not available"):
        features.select_extractor("inception", cpu, inception_dir=tmp_path)
    with pytest.raises(SketchganError, match="evaluator"):
        features.select_extractor("auto", cpu, evaluator=None, inception_dir=tmp_path)


@pytest.mark.skipif(
    features._find_inception(features.CLEANFID_INCEPTION_DIR) is None,
    reason=f"{features.INCEPTION_FILE} not cached (offline machine)",
)
def test_real_inception_features(folders):
    extractor = features.inception_extractor(torch.device("cpu"), download=False)
    assert extractor is not None and extractor.name == features.INCEPTION_NAME
    feats = features.extract_features(folders[0], extractor, batch_size=8)
    assert feats.shape == (24, 2048) and np.isfinite(feats).all()


def test_compare_folders_with_evaluator_writes_outputs_and_reuses_cache(
    folders, tiny_evaluator, tmp_path, monkeypatch
):
    a, b = folders
    extractor = features.evaluator_extractor(tiny_evaluator, torch.device("cpu"))
    out = tmp_path / "eval"
    same = features.compare_folders(a, a, extractor, out_dir=out, kid_subsets=5)
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    assert same["precision"] == same["recall"] == 1.0
    assert same["features"] == features.EVALUATOR_NAME
    assert {p.name for p in out.iterdir()} == {
        "gen_features.npz",
        "ref_features.npz",
        "metrics.json",
    }
    calls = []
    real_extract = features.extract_features
    monkeypatch.setattr(
        features, "extract_features", lambda *a, **k: calls.append(a[0]) or real_extract(*a, **k)
    )
    diff = features.compare_folders(b, a, extractor, out_dir=out, kid_subsets=5)
    assert calls == [b]  # the reference features came from the cache
    assert diff["fid"] > 0
    assert diff["fid"] == pytest.approx(
        metrics.fid_from_features(
            features.extract_features(b, extractor), features.extract_features(a, extractor)
        ),
        rel=1e-6,
    )


def test_nothing_written_into_cleanfid_package(folders, tiny_evaluator, tmp_path):
    fid_module = features.load_cleanfid()
    if fid_module is None:
        pytest.skip("clean-fid is not importable here")
    package = Path(fid_module.__file__).parent
    before = sorted(os.listdir(package))
    extractor = features.evaluator_extractor(tiny_evaluator, torch.device("cpu"))
    features.compare_folders(folders[0], folders[1], extractor, out_dir=tmp_path, kid_subsets=5)
    assert sorted(os.listdir(package)) == before


def test_missing_folder_is_user_error(tmp_path, tiny_evaluator):
    extractor = features.evaluator_extractor(tiny_evaluator, torch.device("cpu"))
    with pytest.raises(SketchganError, match="not a folder"):
        features.extract_features(tmp_path / "nope", extractor)


def test_subfolders_are_ignored_by_both_paths(tmp_path):
    folder = _write_folder(tmp_path / "gen", _random_images(5, seed=2))
    _write_folder(folder / "grids", _random_images(2, seed=3))  # e.g. a sample sheet
    extractor = _pooled_extractor(resize_to=8)
    assert features.extract_features(folder, extractor).shape[0] == 5
    assert features.extract_features(folder, extractor, use_cleanfid=False).shape[0] == 5


class _FakeInceptionLayers(torch.nn.Module):
    """Stands in for the TorchScript Inception trunk: (N, 3, 299, 299) -> (N, 2048, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 1)  # (N, 3, 1, 1)
        return pooled.repeat(1, 683, 1, 1)[:, :2048]


class _FakeInception(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = _FakeInceptionLayers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_inception_download_cache_and_clean_forward(monkeypatch, tmp_path, folders):
    """The download -> cache -> TorchScript -> 2048-D path, with a scripted stand-in file."""
    import io

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(_FakeInception()), buffer)
    payload = buffer.getvalue()
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append((url, timeout))
        return io.BytesIO(payload)

    monkeypatch.setattr(features.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(features, "CLEANFID_INCEPTION_DIR", tmp_path / "cleanfid-cache")
    cache = tmp_path / "cache"
    extractor = features.inception_extractor(torch.device("cpu"), cache, timeout_s=3.0)
    assert extractor is not None and extractor.name == features.INCEPTION_NAME
    assert urls == [(features.INCEPTION_URL, 3.0)]
    assert (cache / features.INCEPTION_FILE).read_bytes() == payload
    feats = features.extract_features(folders[0], extractor, batch_size=8)
    assert feats.shape == (24, 2048)
    # clean mode normalises (x - 128) / 128 after the 299 px resize: check one image by hand
    first = np.asarray(Image.open(sorted(folders[0].iterdir())[0]).convert("RGB"))
    resized = features._cleanfid_resizer()(first)
    expected = (resized.mean(axis=(0, 1)) - 128) / 128
    np.testing.assert_allclose(feats[0, :3], expected, atol=1e-4)
    again = features.inception_extractor(torch.device("cpu"), cache, download=False)
    assert again is not None and len(urls) == 1  # served from the cache
