"""Sampling: per-index determinism, atomic folders, interpolation end points, GANSpace."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sketchgan.errors import SketchganError
from sketchgan.evaluation import sampling as S
from sketchgan.io import list_images
from sketchgan.models.stylegan2 import Generator

STYLE_DIM = 32


@pytest.fixture(scope="module")
def gen() -> Generator:
    torch.manual_seed(0)
    return Generator(16, STYLE_DIM, 2, channel_max=16).eval()


@pytest.fixture(scope="module")
def gen_ft(gen: Generator) -> Generator:
    """A "fine-tuned" model: mapping weights perturbed (as GANSketching trains) plus a w_shift."""
    torch.manual_seed(1)
    tuned = copy.deepcopy(gen)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if name.startswith("style."):
                p.add_(0.3 * torch.randn_like(p))
    return S.apply_w_shift(tuned, 0.2 * torch.randn(STYLE_DIM))


def _pngs(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)).astype(int) for p in list_images(folder)]


def test_inputs_depend_on_index_not_batch(gen: Generator) -> None:
    shapes = S.noise_shapes(gen)
    assert len(shapes) == gen.num_layers and shapes[-1] == (1, 16, 16)
    z_all, noise_all = S.draw_inputs(7, range(6), STYLE_DIM, shapes)
    z_one, noise_one = S.draw_inputs(7, [4], STYLE_DIM, shapes)
    assert torch.equal(z_all[4], z_one[0])
    assert all(torch.equal(a[4], b[0]) for a, b in zip(noise_all, noise_one, strict=True))
    assert not torch.equal(z_all[3], z_all[4])
    z_other, _ = S.draw_inputs(8, [4], STYLE_DIM, shapes)
    assert not torch.equal(z_other[0], z_one[0])
    with pytest.raises(SketchganError, match="seed"):
        S.draw_inputs(-1, [0], STYLE_DIM, shapes)


def test_sample_folder_same_samples_for_any_batch(gen: Generator, tmp_path: Path) -> None:
    S.sample_folder(gen, 5, tmp_path / "a", seed=3, batch=2, progress=False)
    S.sample_folder(gen, 5, tmp_path / "b", seed=3, batch=5, progress=False)
    S.sample_folder(gen, 5, tmp_path / "c", seed=3, batch=2, progress=False)
    names = [p.name for p in list_images(tmp_path / "a")]
    assert names == [f"{i:06d}.png" for i in range(5)]
    a, b, c = (_pngs(tmp_path / d) for d in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # Inputs are bitwise equal; the convolution backend may round differently per batch shape,
    # so allow at most one uint8 level on a few pixels.
    diffs = np.stack([np.abs(x - y) for x, y in zip(a, b, strict=True)])
    assert diffs.max() <= 1 and (diffs == 0).mean() > 0.99
    assert a[0].shape == (16, 16, 3) and not np.array_equal(a[0], a[1])
    single = S.generate_images(gen, [3], seed=3)
    batch = S.generate_images(gen, range(5), seed=3)
    torch.testing.assert_close(single[0], batch[3], atol=1e-4, rtol=0)


def test_sample_folder_failure_keeps_old_folder(
    gen: Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "samples"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    calls = []
    real_save = S.save_image_folder

    def failing_save(images, folder, start=0):
        calls.append(start)
        if start > 0:
            raise RuntimeError("disk full")
        real_save(images, folder, start)

    monkeypatch.setattr(S, "save_image_folder", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        S.sample_folder(gen, 4, out, seed=0, batch=2, progress=False)
    assert calls == [0, 2]
    assert sorted(p.name for p in out.iterdir()) == ["old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples"]


def test_bad_arguments_are_user_errors(gen: Generator, tmp_path: Path) -> None:
    with pytest.raises(SketchganError, match="truncation"):
        S.sample_folder(gen, 2, tmp_path / "x", seed=0, truncation=0.0, progress=False)
    with pytest.raises(SketchganError, match="sample.n"):
        S.sample_folder(gen, 0, tmp_path / "x", seed=0, progress=False)
    with pytest.raises(SketchganError, match="w_shift"):
        S.apply_w_shift(gen, torch.zeros(STYLE_DIM + 1))
    assert not (tmp_path / "x").exists()


def test_truncation_pulls_samples_together(gen: Generator) -> None:
    free = S.generate_images(gen, range(6), seed=1, noise_mode="const")
    tight = S.generate_images(gen, range(6), seed=1, truncation=0.05, noise_mode="const")
    assert tight.std(0).mean() < 0.2 * free.std(0).mean()


def test_w_shift_wrapper_adds_shift_after_mapping(gen: Generator) -> None:
    shift = torch.randn(STYLE_DIM)
    shifted = S.apply_w_shift(gen, shift)
    z = torch.randn(3, STYLE_DIM)
    with torch.no_grad():
        torch.testing.assert_close(shifted.get_latent(z), gen.get_latent(z) + shift)
        noise = [getattr(gen.noises, f"noise_{i}") for i in range(gen.num_layers)]
        a, _ = shifted([z], noise=noise)
        b, _ = gen([gen.get_latent(z) + shift], input_is_latent=True, noise=noise)
    torch.testing.assert_close(a, b)
    twice = S.apply_w_shift(shifted, shift)
    assert torch.allclose(twice.w_shift(), 2 * shift.reshape(1, -1))
    assert gen.w_shift() is None  # the original is left alone (shifted copies)
    assert f"style.{gen.n_mlp + 1}.w_shift" in shifted.state_dict()  # the reference's layout
    assert S.apply_checkpoint_shift(gen, {"g_ema": {}}) is gen


def test_weight_interpolation_is_linear_in_parameters(gen: Generator, gen_ft) -> None:
    mixed = S.interpolate_generators(gen, gen_ft, 0.25)
    w0, w1 = gen.style[1].weight, gen_ft.style[1].weight
    torch.testing.assert_close(mixed.style[1].weight, 0.75 * w0 + 0.25 * w1)
    torch.testing.assert_close(mixed.w_shift(), 0.25 * gen_ft.w_shift())
    assert mixed is not gen and gen.style[1].weight is w0 and gen.w_shift() is None


def test_model_interpolation_end_points(gen: Generator, gen_ft) -> None:
    rows = S.model_interpolation_images(gen, gen_ft, steps=3, seed=5, n_samples=2, truncation=0.5)
    original = S.generate_images(gen, range(2), seed=5, truncation=0.5)
    tuned = S.generate_images(gen_ft, range(2), seed=5, truncation=0.5)
    assert (original - tuned).abs().max() > 0.05
    for space in ("weight", "w"):
        assert rows[space].shape == (2, 3, 3, 16, 16)
        torch.testing.assert_close(rows[space][:, 0], original, atol=1e-5, rtol=0)
        torch.testing.assert_close(rows[space][:, -1], tuned, atol=1e-5, rtol=0)
        middle = rows[space][:, 1]
        assert (middle - original).abs().max() > 1e-3 and (middle - tuned).abs().max() > 1e-3


def test_model_interpolation_after_full_tuning_has_only_weight_rows(
    gen: Generator, tmp_path: Path
) -> None:
    """Whole-generator tuning changes the synthesis net, so a w path would not end at it."""
    full = copy.deepcopy(gen)
    with torch.no_grad():
        for p in full.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = S.model_interpolation_images(gen, full, steps=3, seed=5, n_samples=2)
    assert set(rows) == {"weight"}
    tuned = S.generate_images(full, range(2), seed=5, truncation=0.5)
    torch.testing.assert_close(rows["weight"][:, -1], tuned, atol=1e-5, rtol=0)
    both = S.model_interpolation_images(gen, S.apply_w_shift(gen, torch.ones(STYLE_DIM)), 3, 5, 2)
    assert set(both) == {"weight", "w"}
    path = S.weight_interpolation(gen, full, steps=3, seed=5, path=tmp_path / "m.png", n_samples=2)
    assert path.is_file()


def test_latent_interpolation_starts_at_samples(gen: Generator) -> None:
    for space in ("w", "z"):
        rows = S.latent_interpolation_images(gen, seed=2, steps=4, n_rows=2, space=space)
        assert rows.shape == (2, 4, 3, 16, 16)
        start = S.generate_images(gen, [0, 2], seed=2, truncation=0.5)
        torch.testing.assert_close(rows[:, 0], start, atol=1e-5, rtol=0)
    a, b = torch.randn(2, 8), torch.randn(2, 8)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)
    torch.testing.assert_close(S.slerp(a, b, 0.0), a)
    torch.testing.assert_close(S.slerp(a, b, 1.0), b)
    torch.testing.assert_close(S.slerp(a, b, 0.3).norm(dim=1), a.norm(dim=1))


def test_ganspace_directions_are_sorted_orthogonal_sigmas(gen: Generator, gen_ft) -> None:
    mean, comps = S.ganspace_directions(gen, n_samples=3000, k=4, seed=0)
    assert mean.shape == (STYLE_DIM,) and comps.shape == (4, STYLE_DIM)
    norms = comps.norm(dim=1)
    assert torch.all(norms[:-1] >= norms[1:])
    units = comps / norms[:, None]
    torch.testing.assert_close(units @ units.T, torch.eye(4), atol=1e-4, rtol=0)
    with torch.no_grad():  # fresh samples: spread along each direction is about its length
        w = gen.get_latent(torch.randn(3000, STYLE_DIM, generator=torch.Generator().manual_seed(9)))
    spread = ((w - mean) @ units.T).std(0)
    torch.testing.assert_close(spread, norms, rtol=0.1, atol=0)
    edits = S.ganspace_edit_images(
        gen_ft, (mean, comps), seed=4, component_ids=(0, 1), sigmas=(-2.0, 0.0, 2.0), n_samples=1
    )
    plain = S.generate_images(gen_ft, [0], seed=4, truncation=0.5)
    assert edits.shape == (2, 3, 3, 16, 16)
    torch.testing.assert_close(edits[0, 1], plain[0], atol=1e-5, rtol=0)
    assert (edits[0, 0] - edits[0, 2]).abs().max() > 1e-2


def test_write_visualisations_writes_every_figure(gen: Generator, gen_ft, tmp_path: Path) -> None:
    figures = S.write_visualisations(
        gen,
        gen_ft,
        tmp_path / "figs",
        seed=1,
        n_grid=4,
        steps=3,
        n_rows=2,
        ganspace_samples=200,
        ganspace_k=3,
    )
    assert len(figures) == 5
    for path in figures.values():
        image = Image.open(path)
        assert image.size[0] > 16 and image.size[1] >= 16
    strip = np.asarray(Image.open(tmp_path / "figs" / "model_interpolation.png"))
    # 3 samples x (weights row + w row) of 16 px images with 2 px padding
    assert strip.shape[0] == 6 * 18 + 2
