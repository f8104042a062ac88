"""GANSketching fine-tuning loop: parameter selection, resume, NaN stop, signals, best/last."""

import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import repo_params

from sketchgan.checkpoints import load_finetuned_generator
from sketchgan.errors import SketchganError
from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import Discriminator, Generator
from sketchgan.training import finetune as ft
from sketchgan.training import losses, state

ARCH = dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
PS_CFG = dict(input_nc=3, output_nc=1, ngf=4, n_blocks=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft_inputs")
    torch.manual_seed(0)
    g, d = Generator(**ARCH), Discriminator(16, channel_multiplier=1, channel_max=16)
    gpath, ppath = root / "generator.pt", root / "photosketch.pt"
    torch.save(
        {"g_ema": g.state_dict(), "g": g.state_dict(), "d": d.state_dict(), "config": ARCH}, gpath
    )
    torch.save({"state": ResnetGenerator(**PS_CFG).state_dict(), "config": PS_CFG}, ppath)
    gen = torch.Generator().manual_seed(1)
    sketches = torch.rand(5, 1, 16, 16, generator=gen) * 2 - 1
    images = torch.rand(6, 3, 16, 16, generator=gen) * 2 - 1
    return gpath, ppath, sketches, images


def _cfg(**kw):
    base = dict(
        iters=3,
        batch=2,
        d_reg_every=2,
        checkpoint_every=0,
        sample_every=0,
        eval_every=0,
        log_every=1,
        n_sample=2,
        device="cpu",
    )
    base.update(kw)
    return ft.FinetuneConfig.from_params(repo_params(), **base)


def _run(inputs, out, cfg, **kw):
    gpath, ppath, sketches, images = inputs
    return ft.finetune(cfg, gpath, ppath, sketches, images, out, **kw)


def _assert_same(a, b, path="state"):
    """Exact equality of nested checkpoint contents (tensors bit for bit)."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("lr", 0),
        ("batch", 6),
        ("tune", "encoder"),
        ("augment", "color"),
        ("mixing", 1.5),
        ("sketch_d_init", "zeros"),
        ("amp", "fp8"),
        ("iters", 0),
        ("device", "tpu"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(SketchganError, match=rf"'train\.{field}'"):
        _cfg(**{field: value})


def test_config_comes_from_params_yaml_only():
    params = repo_params()
    cfg = ft.FinetuneConfig.from_params(params)
    assert cfg.to_dict() == {**params["train"], "seed": params["seed"], "device": params["device"]}
    assert ft.FinetuneConfig.from_params(params, lr=0.001).lr == 0.001
    with pytest.raises(SketchganError, match=r"'train\.learning_rate' is not a setting"):
        ft.FinetuneConfig.from_params(params, learning_rate=0.001)
    del params["train"]["lr"]
    with pytest.raises(SketchganError, match=r"'train\.lr' is missing"):
        ft.FinetuneConfig.from_params(params)


def test_bad_inputs_are_one_line_errors(inputs, tmp_path):
    gpath, ppath, sketches, images = inputs
    with pytest.raises(SketchganError, match="reg"):
        ft.finetune(_cfg(), gpath, ppath, sketches, None, tmp_path)
    with pytest.raises(SketchganError, match="sketches"):
        ft.finetune(_cfg(), gpath, ppath, sketches[:, :, :8], images, tmp_path)
    with pytest.raises(SketchganError, match="sketches"):
        ft.finetune(_cfg(), gpath, ppath, sketches * 3, images, tmp_path)
    with pytest.raises(SketchganError, match="missing.pt: photosketch"):
        ft.finetune(_cfg(), gpath, gpath.with_name("missing.pt"), sketches, images, tmp_path)


# -- which parameters move -------------------------------------------------------------------


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_mapping_mode_changes_only_style_parameters(inputs, tmp_path):
    res = _run(inputs, tmp_path, _cfg(iters=2, l_image=0.7, amp="bf16"))
    assert res.amp == "off" and res.device == "cpu"  # autocast is CUDA-only
    before, out = _load(inputs[0]), _load(res.last_path)
    changed = _changed(before["g_ema"], out["g_ema"])
    assert changed and all(k.startswith("style.") for k in changed)
    assert len(changed) == 2 * ARCH["n_mlp"]  # every mapping weight and bias moved
    assert _changed(before["d"], out["d"]) and _changed(before["d"], out["d_image"])
    assert torch.equal(out["g"]["style.1.weight"], out["g_ema"]["style.1.weight"])
    assert out["config"] == ARCH and "w_shift" not in out
    groups = _load(tmp_path / "checkpoint.pt")["shared"]
    (g_group,), (d_group,) = groups["g_optim"]["param_groups"], groups["d_optim"]["param_groups"]
    assert g_group["lr"] == pytest.approx(0.002) and g_group["betas"] == (0.0, 0.99)
    assert d_group["lr"] == pytest.approx(0.002 * 2 / 3)  # d_reg_every 2 -> ratio 2/3
    assert d_group["betas"] == pytest.approx((0.0, 0.99 ** (2 / 3)))


def test_g_lr_sets_only_the_generator_optimiser(inputs, tmp_path):
    res = _run(inputs, tmp_path, _cfg(iters=1, g_lr=0.15))
    groups = _load(tmp_path / "checkpoint.pt")["shared"]
    assert groups["g_optim"]["param_groups"][0]["lr"] == pytest.approx(0.15)
    assert groups["d_optim"]["param_groups"][0]["lr"] == pytest.approx(0.002 * 2 / 3)
    assert res.steps == 1
    with pytest.raises(SketchganError, match=r"'train\.g_lr'"):
        _cfg(g_lr=0)


def test_w_shift_mode_learns_only_the_shift(inputs, tmp_path):
    res = _run(inputs, tmp_path, _cfg(iters=2, tune="w_shift", l_image=0.0))
    before, out = _load(inputs[0]), _load(res.last_path)
    key = f"style.{ARCH['n_mlp'] + 1}.w_shift"  # the reference's layout: WShift after the MLP
    assert set(out["g_ema"]) == set(before["g_ema"]) | {key}
    assert not _changed(before["g_ema"], out["g_ema"])
    shift = out["g_ema"][key]
    assert shift.shape == (1, ARCH["style_dim"]) and shift.abs().sum() > 0
    assert "w_shift" not in out and "d_image" not in out
    gen = load_finetuned_generator(res.last_path)
    base = Generator(**ARCH)
    base.load_state_dict(before["g_ema"])
    z = torch.randn(3, ARCH["style_dim"])
    with torch.no_grad():
        torch.testing.assert_close(gen.get_latent(z), base.get_latent(z) + shift)


def test_reference_layout_w_shift_checkpoint_loads_and_shifts_every_w(tmp_path):
    """A reference GANSketching w_shift netG: rosinality keys plus style.<n_mlp+1>.w_shift."""
    from sketchgan.checkpoints import load_generator

    torch.manual_seed(3)
    base = Generator(**ARCH)
    sd = dict(base.state_dict())
    key = f"style.{ARCH['n_mlp'] + 1}.w_shift"
    sd[key] = torch.randn(1, ARCH["style_dim"])
    path = tmp_path / "netG_w_shift.pth"
    torch.save(sd, path)  # a bare state dict, as the reference saves it
    gen, _ = load_generator(path, config=ARCH)
    assert gen.w_shift() is not None and torch.equal(gen.state_dict()[key], sd[key])
    z1, z2 = torch.randn(2, ARCH["style_dim"]), torch.randn(2, ARCH["style_dim"])
    with torch.no_grad():
        torch.testing.assert_close(gen.get_latent(z1), base.get_latent(z1) + sd[key])
        # both styles of a mixed batch are shifted (the module sits inside the mapping)
        img, lat = gen([z1, z2], inject_index=2, return_latents=True, randomize_noise=False)
        torch.testing.assert_close(lat[:, 3], base.get_latent(z2) + sd[key])
    wrong = dict(sd)
    wrong[key] = torch.zeros(1, ARCH["style_dim"] + 1)
    torch.save(wrong, path)
    with pytest.raises(SketchganError, match="w_shift"):
        load_generator(path, config=ARCH)


def test_full_mode_changes_synthesis_too(inputs, tmp_path):
    res = _run(inputs, tmp_path, _cfg(iters=1, tune="full", l_image=0.0, l_weight=1.0))
    changed = _changed(_load(inputs[0])["g_ema"], _load(res.last_path)["g_ema"])
    assert any(k.startswith("convs.") for k in changed)
    assert any(k.startswith("style.") for k in changed)
    assert not any("noise_" in k or "blur" in k for k in changed)  # buffers stay


def test_sketch_net_stays_frozen_and_random_sketch_d_differs(inputs, tmp_path, monkeypatch):
    nets = []
    real_load = ft.load_photosketch

    def spy(path):
        net = real_load(path)
        nets.append((net, {k: v.clone() for k, v in net.state_dict().items()}))
        return net

    monkeypatch.setattr(ft, "load_photosketch", spy)
    res = _run(inputs, tmp_path, _cfg(iters=2, sketch_d_init="random", l_image=0.0))
    net, before = nets[0]
    assert net.training
    assert all(not p.requires_grad for p in net.parameters())
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, before[k]), k
    pre_d = _load(inputs[0])["d"]
    out_d = _load(res.last_path)["d"]
    assert all(not torch.equal(pre_d[k], out_d[k]) for k in pre_d if k.endswith("weight"))


# -- outputs, logging, best/last -------------------------------------------------------------


def test_logs_samples_and_best_checkpoint(inputs, tmp_path, monkeypatch):
    r1_steps = []
    real_r1 = ft._Trainer.r1_step

    def r1_spy(self, *args):
        r1_steps.append(len(r1_steps))
        return real_r1(self, *args)

    monkeypatch.setattr(ft._Trainer, "r1_step", r1_spy)
    logged = []
    scores = {2: 5.0, 4: 3.0, 6: 4.0}
    res = _run(
        inputs,
        tmp_path,
        _cfg(iters=6, log_every=3, sample_every=3, eval_every=2, d_reg_every=5),
        log_fn=lambda step, m: logged.append((step, m)),
        eval_fn=lambda step, g: scores[step] + float(torch.randn(()) * 0),
    )
    assert [s for s, _ in logged] == [3, 6]
    assert {"d_sketch_real", "g_sketch", "g_image", "r1_sketch", "r1_image"} <= set(logged[0][1])
    assert "g_weight" not in logged[0][1]  # l_weight 0: a term not computed is not logged as 0
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert (
        rows[0].startswith("step,d_sketch_real") and rows[0].endswith("seconds") and len(rows) == 3
    )
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "step_000003.png",
        "step_000006.png",
    ]
    assert res.best_step == 4 and res.best_score == 3.0
    assert len(r1_steps) == 2  # R1 at iterations 0 and 5: one in each logged interval
    assert all("r1_sketch" in m for _, m in logged)
    assert _load(res.best_path)["step"] == 4 and _load(res.last_path)["step"] == 6


# -- robustness ------------------------------------------------------------------------------


def _signal_at(monkeypatch, call: int) -> None:
    real = ft._Trainer.g_step
    count = {"n": 0}

    def g_step(self, inp):
        count["n"] += 1
        if count["n"] == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, inp)

    monkeypatch.setattr(ft._Trainer, "g_step", g_step)


def test_resume_after_sigterm_and_after_shorter_run_equals_uninterrupted(
    inputs, tmp_path, monkeypatch
):
    cfg = _cfg(iters=6, checkpoint_every=2, log_every=2, l_image=0.5, mixing=0.5)
    full_logged: list = []
    full = _run(inputs, tmp_path / "full", cfg, log_fn=lambda s, m: full_logged.append((s, m)))
    want = _load(tmp_path / "full" / "checkpoint.pt")

    with monkeypatch.context() as m:
        _signal_at(m, 3)
        with pytest.raises(ft.TrainingStopped, match="step 3"):
            _run(inputs, tmp_path / "killed", cfg)
    assert _load(tmp_path / "killed" / "checkpoint.pt")["step"] == 3
    resumed_logged: list = []
    resumed = _run(
        inputs, tmp_path / "killed", cfg, log_fn=lambda s, m: resumed_logged.append((s, m))
    )
    assert resumed.resumed_from == 3
    # the stopped interval's partial loss sums were checkpointed, and the rows written before
    # the stop are handed to log_fn again: the resumed run logs what an uninterrupted one does
    assert resumed_logged == full_logged

    _run(inputs, tmp_path / "short", _cfg(**{**cfg.to_dict(), "iters": 4}))
    _run(inputs, tmp_path / "short", cfg)

    for name in ("killed", "short"):
        got = _load(tmp_path / name / "checkpoint.pt")
        for key in ("step", "shared", "local"):
            _assert_same(want[key], got[key], f"{name}.{key}")
        _assert_same(_load(full.last_path)["g_ema"], _load(tmp_path / name / ft.LAST_FILE)["g_ema"])
    rows = (tmp_path / "killed" / "losses.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6"]

    def without_seconds(folder):
        lines = (tmp_path / folder / "losses.csv").read_text().splitlines()
        return [line.rsplit(",", 1)[0] for line in lines]

    assert without_seconds("killed") == without_seconds("full")


def test_resume_refuses_other_settings_or_data(inputs, tmp_path):
    gpath, ppath, sketches, images = inputs
    _run(inputs, tmp_path, _cfg(iters=1))
    with pytest.raises(SketchganError, match=r"checkpoint.pt: .*lr"):
        _run(inputs, tmp_path, _cfg(iters=2, lr=0.01))
    with pytest.raises(SketchganError, match="sketches"):
        ft.finetune(_cfg(iters=2), gpath, ppath, sketches.flip(0), images, tmp_path)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(inputs, tmp_path, monkeypatch):
    real = losses.g_nonsaturating_loss
    calls = {"n": 0}

    def poisoned(pred):
        calls["n"] += 1
        loss = real(pred)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(losses, "g_nonsaturating_loss", poisoned)
    cfg = _cfg(iters=8, checkpoint_every=2, log_every=4, l_image=0.0)
    with pytest.raises(SketchganError, match=r"non-finite loss \(g_sketch\).*step 2"):
        _run(inputs, tmp_path, cfg)
    kept = _load(tmp_path / "checkpoint.pt")
    assert kept["step"] == 2
    assert all(torch.isfinite(v).all() for v in kept["shared"]["g"].values())
    assert not (tmp_path / ft.LAST_FILE).exists()


# -- state helpers ---------------------------------------------------------------------------


def test_rng_capture_restore_roundtrips_through_weights_only_file(tmp_path):
    gen = torch.Generator().manual_seed(5)
    snap = state.capture_rng({"aug": gen})
    path = tmp_path / "rng.pt"
    state.save_checkpoint(path, {"step": 1, "rng": snap})

    def draw():
        return (torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=gen))

    first = draw()
    state.restore_rng(state.load_checkpoint(path)["rng"], {"aug": gen})
    second = draw()
    assert torch.equal(first[0], second[0]) and torch.equal(first[3], second[3])
    assert first[1] == second[1] and first[2] == second[2]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SketchganError, match="bad.pt: not a PyTorch checkpoint"):
        state.load_checkpoint(tmp_path / "bad.pt")
    assert state.load_checkpoint(tmp_path / "none.pt") is None


def test_sketch_scale_round_trip_runs_and_keeps_shapes(inputs, tmp_path):
    net = ft.load_photosketch(inputs[1])
    branch = ft.SketchBranch(net, 2, ("translation",))
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    assert branch.sketch(img).shape == (2, 1, 16, 16)
    assert branch.round_trip(inputs[2]).shape == inputs[2].shape
    with pytest.raises(SketchganError, match=r"'train\.sketch_scale'"):
        _run(inputs, tmp_path, _cfg(iters=1, sketch_scale=32))
    res = _run(inputs, tmp_path, _cfg(iters=1, sketch_scale=2, l_image=0.0))
    assert res.steps == 1


def test_sketch_branch_runs_channels_last_with_the_same_output(inputs):
    """NHWC (the CUDA setting) is a speed choice only: the sketch equals the plain NCHW forward,
    comes back NCHW for the discriminator, and gradients still reach the generator's image."""
    plain = ft.load_photosketch(inputs[1]).train()
    for m in plain.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    branch = ft.SketchBranch(ft.load_photosketch(inputs[1]), 1, (), channels_last=True)
    conv = next(m for m in branch.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    img = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = branch.sketch(img)
    with torch.no_grad():
        ref = plain(img)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert out.is_contiguous()
    out.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_stop_fn_ends_early_and_keeps_the_trained_state(inputs, tmp_path):
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2  # two iterations, then the user presses Stop

    res = _run(inputs, tmp_path, _cfg(iters=5), stop_fn=stop)
    assert res.stopped and res.steps == 2
    out = _load(res.last_path)
    assert out["step"] == 2 and _changed(_load(inputs[0])["g_ema"], out["g_ema"])
    assert _load(tmp_path / "checkpoint.pt")["step"] == 2
    resumed = _run(inputs, tmp_path, _cfg(iters=5))  # the same folder resumes from there
    assert resumed.resumed_from == 2 and resumed.steps == 5 and not resumed.stopped


def _flip_byte_in_largest_tensor(path: Path) -> None:
    """Damage one byte of tensor data (not the zip directory): only the CRC can tell."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    with path.open("r+b") as f:
        f.seek(info.header_offset + 30 + len(info.filename.encode()) + len(info.extra))
        f.seek(info.file_size // 2, 1)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_checkpoint_falls_back_to_the_previous_one(inputs, tmp_path):
    cfg = _cfg(iters=6, checkpoint_every=2, log_every=2)
    _run(inputs, tmp_path / "full", cfg)
    want = _load(tmp_path / "full" / ft.LAST_FILE)["g_ema"]

    out = tmp_path / "damaged"
    _run(inputs, out, _cfg(**{**cfg.to_dict(), "iters": 4}))
    assert _load(state.previous_path(out / "checkpoint.pt"))["step"] == 2  # the last two kept
    _flip_byte_in_largest_tensor(out / "checkpoint.pt")
    (out / ".checkpoint.pt.999999999.abc123.tmp").write_bytes(
        b"half a save"
    )  # a killed save's leftover
    with pytest.warns(UserWarning, match=r"checkpoint\.pt: corrupt checkpoint.*previous.*step 2"):
        res = _run(inputs, out, cfg)
    assert res.resumed_from == 2 and res.steps == 6
    _assert_same(want, _load(out / ft.LAST_FILE)["g_ema"])  # same weights as uninterrupted
    assert not list(out.glob(".checkpoint.pt.*.tmp"))


def test_nonfinite_or_all_damaged_checkpoints_are_one_clear_error(inputs, tmp_path):
    cfg = _cfg(iters=4, checkpoint_every=2)
    _run(inputs, tmp_path, cfg)
    ckpt = _load(tmp_path / "checkpoint.pt")
    first = next(iter(ckpt["shared"]["g"]))
    ckpt["shared"]["g"][first] = torch.full_like(ckpt["shared"]["g"][first], float("nan"))
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    _flip_byte_in_largest_tensor(state.previous_path(tmp_path / "checkpoint.pt"))
    with pytest.raises(
        SketchganError, match=r"non-finite values in 'shared\.g\..*no good checkpoint"
    ):
        _run(inputs, tmp_path, _cfg(iters=6, checkpoint_every=2))
