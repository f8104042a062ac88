"""Pretraining: tiny StyleGAN2 and sketch-net runs on synthetic shapes (16 px, a few iterations)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from conftest import repo_params
from torch import nn

from sketchgan.errors import SketchganError
from sketchgan.training import loop, pretrain
from sketchgan.training.pretrain import (
    GeneratorPretrainConfig,
    SketchNetConfig,
    ema_beta,
    train_generator,
    train_sketch_net,
    update_ema,
)

stylegan2 = pytest.importorskip("sketchgan.models.stylegan2")
photosketch = pytest.importorskip("sketchgan.models.photosketch")


pytestmark = pytest.mark.usefixtures("one_thread")


def _shapes(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Discs and squares of random colours on flat backgrounds, with their 1-px outlines."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.empty(n, 3, size, size)
    contours = torch.empty(n, 1, size, size)
    for i in range(n):
        cx, cy = (torch.rand(2, generator=gen) * size * 0.4 + size * 0.3).tolist()
        r = float(torch.rand((), generator=gen) * size * 0.15 + size * 0.15)
        if i % 2:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        else:
            mask = ((xx - cx).abs() <= r) & ((yy - cy).abs() <= r)
        bg, fg = torch.rand(2, 3, generator=gen) * 2 - 1
        images[i] = torch.where(mask, fg[:, None, None], bg[:, None, None])
        inner = mask.clone()
        inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]
        inner[1:-1, 1:-1] &= mask[1:-1, :-2] & mask[1:-1, 2:]
        contours[i, 0] = torch.where(mask & ~inner, -1.0, 1.0)
    return images, contours


def _tiny_cfg(**overrides) -> GeneratorPretrainConfig:
    base = dict(
        size=16,
        style_dim=16,
        n_mlp=8,
        channel_max=16,
        iterations=4,
        batch_size=4,
        d_reg_every=2,
        path_reg_weight=1.0,
        g_reg_every=2,
        ema_kimg=0.01,
        ema_rampup=0.0,
        log_every=1,
        sample_every=2,
        checkpoint_every=2,
        n_sample=8,
        device="cpu",
    )
    base.update(overrides)
    return GeneratorPretrainConfig.from_params(repo_params(), **base)


def _sketch_cfg(**overrides) -> SketchNetConfig:
    return SketchNetConfig.from_params(repo_params(), **overrides)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, torch.Tensor]:
    images, _ = _shapes(32)
    out = tmp_path_factory.mktemp("gen")
    summary = train_generator(images, _tiny_cfg(), out)
    return out, summary, images


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", -1.0),
        ("size", 24),
        ("batch_size", 6),
        ("mixing_prob", 1.5),
        ("r1_gamma", float("nan")),
        ("iterations", 0),
        ("device", "tpu"),
        ("xflip", "yes"),
        ("style_dim", True),
    ],
)
def test_generator_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(SketchganError, match=rf"'pretrain\.{field}'"):
        _tiny_cfg(**{field: value})


def test_config_from_dict_rejects_unknown_keys_and_accepts_ints_for_floats() -> None:
    with pytest.raises(SketchganError, match=r"'pretrain\.learning_rate'"):
        GeneratorPretrainConfig.from_params(repo_params(), learning_rate=0.1)
    cfg = GeneratorPretrainConfig.from_params(repo_params(), r1_gamma=1, iterations=7)
    assert cfg.r1_gamma == 1 and cfg.iterations == 7
    assert cfg.model_config() == {
        "size": 32,
        "style_dim": cfg.style_dim,
        "n_mlp": repo_params()["pretrain"]["n_mlp"],
        "channel_multiplier": 2,
        "channel_max": cfg.channel_max,
    }


def test_sketch_config_errors_name_the_field() -> None:
    with pytest.raises(SketchganError, match=r"'pretrain_sketch\.ngf'"):
        _sketch_cfg(ngf=0)
    with pytest.raises(SketchganError, match=r"'pretrain_sketch\.batch_size'"):
        _sketch_cfg(batch_size=1)
    with pytest.raises(SketchganError, match=r"'pretrain_sketch\.typo'"):
        _sketch_cfg(typo=1)


def test_images_of_the_wrong_size_are_rejected(tmp_path: Path) -> None:
    images, _ = _shapes(4, size=16)
    with pytest.raises(SketchganError, match=r"pretrain\.size"):
        train_generator(images, _tiny_cfg(size=32), tmp_path)


# ---------------------------------------------------------------------------- building blocks


def test_ema_beta_is_a_half_life_in_images() -> None:
    beta = ema_beta(batch_size=8, ema_kimg=2.0, ema_rampup=0.0, cur_nimg=10**6)
    assert beta ** (2000 / 8) == pytest.approx(0.5)
    # The ramp shortens the half-life early on, so the EMA forgets the random init quickly.
    early = ema_beta(batch_size=8, ema_kimg=2.0, ema_rampup=0.05, cur_nimg=800)
    assert early ** (40 / 8) == pytest.approx(0.5)
    assert early < beta


def test_update_ema_moves_towards_the_model() -> None:
    torch.manual_seed(0)
    model, ema = nn.Linear(4, 4), nn.Linear(4, 4)
    before = (ema.weight - model.weight).abs().sum().item()
    update_ema(ema, model, beta=0.9)
    after = (ema.weight - model.weight).abs().sum().item()
    assert after == pytest.approx(0.9 * before, rel=1e-5)
    update_ema(ema, model, beta=0.0)
    assert torch.equal(ema.weight, model.weight)


def test_r1_penalty_matches_analytic_gradient() -> None:
    # D(x) = sum(w * x): grad wrt x is w for every sample, so the penalty is |w|^2.
    lin = nn.Linear(12, 1, bias=False)
    real = torch.randn(5, 3, 2, 2)

    def disc(x: torch.Tensor) -> torch.Tensor:
        return lin(x.flatten(1))

    penalty, pred = pretrain.r1_penalty(disc, real)
    assert pred.shape == (5, 1)
    assert penalty.item() == pytest.approx(lin.weight.pow(2).sum().item(), rel=1e-5)


def test_lazy_regularisation_corrects_adam() -> None:
    p = [nn.Parameter(torch.zeros(1))]
    opt = pretrain.adam_for(p, 0.002, (0.0, 0.99), reg_every=16)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 16 / 17)
    assert group["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert pretrain.adam_for(p, 0.002, (0.0, 0.99), None).param_groups[0]["lr"] == 0.002


def test_amp_is_a_no_op_on_cpu() -> None:
    with pretrain.amp_context(torch.device("cpu"), enabled=True):
        assert not torch.is_autocast_enabled()


# ---------------------------------------------------------------------------- generator


def test_generator_run_writes_finite_losses_and_samples(tiny_run) -> None:
    out, summary, _ = tiny_run
    assert summary["iterations"] == 4 and not summary["stopped_early"]
    rows = _read_rows(out / "losses.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    for col in ("d_loss", "g_loss"):
        assert all(math.isfinite(float(r[col])) for r in rows)
    assert any(math.isfinite(float(r["r1"])) for r in rows)  # R1 ran (d_reg_every=2)
    assert any(math.isfinite(float(r["path_loss"])) for r in rows)
    assert (out / "samples" / "iter_000002.png").is_file()
    assert (out / "samples.png").is_file()


def test_checkpoint_loads_strictly_and_ema_differs_from_g(tiny_run) -> None:
    out, _, _ = tiny_run
    ckpt = torch.load(out / "generator.pt", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"g_ema", "g", "d", "config"}
    cfg = ckpt["config"]
    g = stylegan2.Generator(
        cfg["size"], cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"], cfg["channel_max"]
    )
    g.load_state_dict(ckpt["g_ema"], strict=True)
    g.load_state_dict(ckpt["g"], strict=True)
    d = stylegan2.Discriminator(cfg["size"], cfg["channel_multiplier"], cfg["channel_max"])
    d.load_state_dict(ckpt["d"], strict=True)
    assert _max_diff(ckpt["g_ema"], ckpt["g"]) > 0
    with torch.no_grad():
        img, _ = g([torch.randn(2, cfg["style_dim"])])
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()


def test_ema_lags_behind_training(tmp_path: Path) -> None:
    images, _ = _shapes(16)
    cfg = _tiny_cfg(
        iterations=3, path_reg_weight=0.0, sample_every=0, checkpoint_every=0, reuse_fakes=True
    )
    train_generator(images, cfg, tmp_path)
    ckpt = torch.load(tmp_path / "generator.pt", weights_only=True)
    torch.manual_seed(cfg.seed)  # same init as the run (seed_everything(seed) before building)
    init = stylegan2.Generator(16, 16, 8, 2, 16).state_dict()
    g_moved = _max_diff(ckpt["g"], init)
    ema_moved = _max_diff(ckpt["g_ema"], init)
    assert 0 < ema_moved < g_moved


def test_resume_continues_exactly(tmp_path: Path) -> None:
    images, _ = _shapes(16)
    kw = dict(path_reg_weight=0.0, sample_every=0, checkpoint_every=2)
    straight = tmp_path / "straight"
    train_generator(images, _tiny_cfg(iterations=4, **kw), straight)
    parts = tmp_path / "parts"
    train_generator(images, _tiny_cfg(iterations=2, **kw), parts)
    summary = train_generator(images, _tiny_cfg(iterations=4, **kw), parts)
    assert summary["resumed_from"] == 2 and summary["iterations_this_run"] == 2
    a = torch.load(straight / "generator.pt", weights_only=True)
    b = torch.load(parts / "generator.pt", weights_only=True)
    assert _max_diff(a["g_ema"], b["g_ema"]) < 1e-5
    assert [r["iteration"] for r in _read_rows(parts / "losses.csv")] == ["1", "2", "3", "4"]
    # A different training setting is one error naming it (the one resume policy), and
    # resume: false starts over.
    with pytest.raises(SketchganError, match=r"other settings \(lr: 0.006 -> 0.001\)"):
        train_generator(images, _tiny_cfg(iterations=4, lr=0.001, **kw), parts)
    with pytest.raises(SketchganError, match=r"'pretrain\.iterations' is 3 but .* at 4"):
        train_generator(images, _tiny_cfg(iterations=3, **kw), parts)
    with pytest.raises(SketchganError, match=r"different inputs \(images\)"):
        train_generator(images.flip(0), _tiny_cfg(iterations=4, **kw), parts)
    other = train_generator(images, _tiny_cfg(iterations=4, lr=0.001, resume=False, **kw), parts)
    assert other["resumed_from"] == 0


def test_rows_are_interval_means_and_survive_a_resume_inside_an_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logged values are the meter's means over each log interval (R1 over its lazy
    steps only); a state saved mid-interval carries the open sums, so the resumed run writes
    the rows an uninterrupted one does."""
    images, _ = _shapes(16)
    kw = dict(path_reg_weight=0.0, sample_every=0, checkpoint_every=2, log_every=3)
    per_step_cfg = _tiny_cfg(iterations=6, **{**kw, "log_every": 1})
    every = train_generator(images, per_step_cfg, tmp_path / "a")
    straight = train_generator(images, _tiny_cfg(iterations=6, **kw), tmp_path / "b")
    with monkeypatch.context() as m:  # stopped (as by its time limit) after iteration 2
        m.setattr(loop, "time_limit", lambda _start, _limit: lambda step: step >= 2)
        first = train_generator(images, _tiny_cfg(iterations=6, **kw), tmp_path / "c")
    assert first["stopped_early"] and first["iterations"] == 2
    resumed = train_generator(images, _tiny_cfg(iterations=6, **kw), tmp_path / "c")
    assert straight["iterations"] == resumed["iterations"] == every["iterations"] == 6
    per_step = _read_rows(tmp_path / "a" / "losses.csv")
    rows_b = _read_rows(tmp_path / "b" / "losses.csv")
    rows_c = _read_rows(tmp_path / "c" / "losses.csv")
    assert [r["iteration"] for r in rows_b] == [r["iteration"] for r in rows_c] == ["3", "6"]
    for name in ("d_loss", "g_loss", "real_score"):
        steps = [float(r[name]) for r in per_step]
        for row_b, row_c, window in zip(rows_b, rows_c, (steps[:3], steps[3:]), strict=True):
            assert float(row_b[name]) == pytest.approx(sum(window) / 3, rel=1e-5)
            assert float(row_c[name]) == pytest.approx(float(row_b[name]), rel=1e-5)
    # d_reg_every 2: R1 ran at iterations 1 and 3 of the first interval, so its mean is theirs
    r1 = [float(r["r1"]) for r in per_step[:3]]
    assert math.isnan(r1[1]) and float(rows_b[0]["r1"]) == pytest.approx((r1[0] + r1[2]) / 2)


def test_time_limit_stops_early_but_writes_outputs(tmp_path: Path) -> None:
    images, _ = _shapes(8)
    cfg = _tiny_cfg(iterations=1000, time_limit_s=1e-9, sample_every=0, checkpoint_every=0)
    summary = train_generator(images, cfg, tmp_path)
    assert summary["stopped_early"] and summary["iterations"] < 1000
    assert (tmp_path / "generator.pt").is_file()


# ---------------------------------------------------------------------------- sketch net


def _train_mode_l1(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.train()
    with torch.no_grad():
        return float(sum((net(x[i : i + 4]) - y[i : i + 4]).abs().mean() for i in range(0, 8, 4)))


def test_sketch_net_overfits_a_tiny_set(tmp_path: Path) -> None:
    images, contours = _shapes(8, size=16, seed=1)
    cfg = _sketch_cfg(
        ngf=4, n_blocks=2, iterations=60, lr=0.005, n_val=0, input_noise=0.0, device="cpu"
    )
    summary = train_sketch_net(images, contours, cfg, tmp_path)
    assert summary["iterations"] == 60 and math.isfinite(summary["final_loss"])
    ckpt = torch.load(tmp_path / "photosketch.pt", weights_only=True)
    assert ckpt["config"] == {"input_nc": 3, "output_nc": 1, "ngf": 4, "n_blocks": 2}
    trained = photosketch.ResnetGenerator(**ckpt["config"])
    trained.load_state_dict(ckpt["state"], strict=True)
    torch.manual_seed(cfg.seed)
    fresh = photosketch.ResnetGenerator(**ckpt["config"])
    assert _train_mode_l1(trained, images, contours) < 0.6 * _train_mode_l1(fresh, images, contours)
    assert (tmp_path / "photosketch_samples.png").is_file()


def test_sketch_net_accepts_uint8_contours_and_rejects_mismatch(tmp_path: Path) -> None:
    images, contours = _shapes(8, size=16)
    as_uint8 = ((contours[:, 0] + 1) * 127.5).round().to(torch.uint8)
    cfg = _sketch_cfg(ngf=4, n_blocks=1, iterations=2, n_val=4, device="cpu")
    summary = train_sketch_net(images, as_uint8, cfg, tmp_path)
    assert summary["n_val"] == 4 and math.isfinite(summary["val_l1_after"])
    with pytest.raises(SketchganError, match="contours"):
        train_sketch_net(images, as_uint8[:4], cfg, tmp_path)


def test_log_fn_gets_step_and_finite_metrics(tmp_path: Path) -> None:
    images, contours = _shapes(8)
    calls: list[tuple[int, dict[str, float]]] = []
    cfg = _tiny_cfg(iterations=2, path_reg_weight=0.0, sample_every=0, checkpoint_every=0)
    train_generator(images, cfg, tmp_path / "g", log_fn=lambda s, m: calls.append((s, m)))
    assert [s for s, _ in calls] == [1, 2]
    assert all("g_loss" in m and all(math.isfinite(v) for v in m.values()) for _, m in calls)
    calls.clear()
    sketch_cfg = _sketch_cfg(ngf=4, n_blocks=1, iterations=2, log_every=1, n_val=4, device="cpu")
    train_sketch_net(
        images, contours, sketch_cfg, tmp_path / "s", log_fn=lambda s, m: calls.append((s, m))
    )
    assert any("sketch_val_l1" in m for _, m in calls)


def test_a_non_finite_loss_stops_pretraining_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sketchgan.training import pretrain

    images, _ = _shapes(8)
    cfg = _tiny_cfg(iterations=4, path_reg_weight=0.0, sample_every=0, checkpoint_every=2)
    real_d_step = pretrain._d_step

    def broken_after_two(state, *args):
        out = real_d_step(state, *args)
        return {**out, "d_loss": float("nan")} if state.iteration == 2 else out

    monkeypatch.setattr(pretrain, "_d_step", broken_after_two)
    with pytest.raises(SketchganError, match=r"non-finite loss \(d_loss\) at step 3"):
        train_generator(images, cfg, tmp_path)
    saved = torch.load(tmp_path / "pretrain_state.pt", weights_only=True)
    assert int(saved["step"]) == 2  # the state before the broken step, not overwritten
