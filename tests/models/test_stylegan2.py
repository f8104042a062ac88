"""StyleGAN2 networks: reference numerics, checkpoint layout, gradients, noise and truncation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import shared_fixtures

from sketchgan.errors import SketchganError
from sketchgan.models.stylegan2 import (
    Discriminator,
    Generator,
    ModulatedConv2d,
    StyledConv,
    make_kernel,
    set_fused_modconv,
    upsample2d,
    use_channels_last,
)

FIXTURES = shared_fixtures()
SG2_FIXTURE = FIXTURES / "stylegan2_small.pt"
needs_fixtures = pytest.mark.skipif(not SG2_FIXTURE.is_file(), reason="reference fixtures absent")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_generator(size: int = 16, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(size, 32, 2, channel_multiplier=1, channel_max=16)


def tiny_discriminator(size: int = 16, seed: int = 0) -> Discriminator:
    torch.manual_seed(seed)
    return Discriminator(size, channel_multiplier=1, channel_max=16)


@pytest.fixture(scope="module")
def reference():
    fx = torch.load(SG2_FIXTURE, weights_only=True)
    cfg = fx["config"]
    g = Generator(
        cfg["size"], cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"], cfg["channel_max"]
    )
    g.load_state_dict(fx["g_state"], strict=True)
    d = Discriminator(cfg["size"], cfg["channel_multiplier"], cfg["channel_max"])
    d.load_state_dict(fx["d_state"], strict=True)
    return fx, g.eval(), d.eval()


@needs_fixtures
@pytest.mark.parametrize("fused", [False, True], ids=["batched", "grouped"])
def test_generator_matches_reference_outputs(reference, fused):
    fx, g, _ = reference
    set_fused_modconv(g, fused)
    out, z, z2 = fx["outputs"], fx["z"], fx["z2"]
    with torch.no_grad():
        got = {
            "img": g([z], randomize_noise=False)[0],
            "img_trunc": g(
                [z], truncation=0.7, truncation_latent=out["mean_latent"], randomize_noise=False
            )[0],
            "img_mix": g([z, z2], inject_index=2, randomize_noise=False)[0],
            "w": g.get_latent(z),
            "img_w": g([out["w"]], input_is_latent=True, randomize_noise=False)[0],
        }
    for key, value in got.items():
        assert value.shape == out[key].shape, key
        assert (value - out[key]).abs().max().item() < 1e-4, key
    # the outputs differ from each other, so the comparisons above are not vacuous
    assert (out["img"] - out["img_mix"]).abs().max() > 1e-2
    assert (out["img"] - out["img_trunc"]).abs().max() > 1e-2


@needs_fixtures
def test_discriminator_matches_reference_output(reference):
    fx, _, d = reference
    with torch.no_grad():
        got = d(fx["outputs"]["d_in"])
    assert got.shape == fx["outputs"]["d_out"].shape
    assert (got - fx["outputs"]["d_out"]).abs().max().item() < 1e-4


@needs_fixtures
def test_full_size_state_dict_layout_matches_reference():
    shapes = json.loads((FIXTURES / "reference_state_shapes.json").read_text())
    with torch.device("meta"):
        g = Generator(256, 512, 8, channel_multiplier=2)
        d = Discriminator(256, channel_multiplier=2)
    for name, net in (("stylegan2_g_256_cm2", g), ("stylegan2_d_256_cm2", d)):
        got = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert list(got) == list(shapes[name]), name  # same keys in the same order
        assert got == shapes[name], name
    assert g.n_latent == 14 and g.num_layers == 13


@needs_fixtures
def test_wrong_shaped_state_dict_raises(reference):
    fx, _, _ = reference
    g = Generator(32, 64, 8, channel_multiplier=2, channel_max=64)  # wrong channel cap
    with pytest.raises(SketchganError, match="shape"):
        g.load_state_dict(fx["g_state"])
    d = Discriminator(64, channel_multiplier=2, channel_max=32)  # wrong size
    with pytest.raises(SketchganError, match="Discriminator"):
        d.load_state_dict(fx["d_state"])


def test_missing_and_unexpected_keys_raise():
    g = tiny_generator()
    sd = g.state_dict()
    missing = {k: v for k, v in sd.items() if k != "noises.noise_0"}
    with pytest.raises(SketchganError, match="Generator: missing 'noises.noise_0'"):
        g.load_state_dict(missing)
    g.load_state_dict(missing, strict=False)  # non-strict tolerates it, like torch
    with pytest.raises(SketchganError, match="unexpected"):
        g.load_state_dict({**sd, "extra.weight": torch.zeros(1)})


def test_invalid_sizes_raise():
    with pytest.raises(SketchganError, match="size"):
        Generator(48, 32, 2)
    with pytest.raises(SketchganError, match="size"):
        Discriminator(2048)


def test_upsample_equals_zero_insert_pad_filter():
    """The skip-path upsampling is upfirdn2d(up=2, pad=(2, 1)) written the naive way."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6)
    k = make_kernel((1, 3, 3, 1), gain=4)
    up = torch.zeros(2, 3, 10, 12)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, [2, 1, 2, 1])
    naive = F.conv2d(up.reshape(6, 1, 13, 15), k.flip([0, 1])[None, None]).reshape(2, 3, 10, 12)
    assert torch.allclose(upsample2d(x, k), naive, atol=1e-6)


@pytest.mark.parametrize("upsample", [False, True])
def test_modconv_forms_agree_and_pass_gradcheck(upsample):
    torch.manual_seed(0)
    conv = ModulatedConv2d(2, 3, 3, 4, upsample=upsample).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.double, requires_grad=True)
    s = (torch.randn(2, 4, dtype=torch.double) * 3).requires_grad_(True)
    batched = conv(x, s)
    conv.fused = True
    grouped = conv(x, s)
    side = 8 if upsample else 4
    assert batched.shape == (2, 3, side, side)
    assert torch.allclose(batched, grouped, atol=1e-10)
    for fused in (False, True):
        conv.fused = fused
        assert torch.autograd.gradcheck(lambda a, b: conv(a, b), (x, s), fast_mode=True)


@pytest.mark.parametrize("upsample", [False, True])
def test_styled_conv_fused_epilogue_matches_plain_ops(upsample):
    """The fused epilogue = demodulate, add noise, add bias, leaky ReLU, gain (step by step)."""
    torch.manual_seed(0)
    layer = StyledConv(2, 3, 3, 4, upsample=upsample).double()
    with torch.no_grad():
        layer.noise.weight.fill_(0.7)
        layer.activate.bias.normal_()
    x = torch.randn(2, 2, 4, 4, dtype=torch.double, requires_grad=True)
    style = torch.randn(2, 4, dtype=torch.double, requires_grad=True)
    side = 8 if upsample else 4
    noise = torch.randn(2, 1, side, side, dtype=torch.double)
    plain = (
        F.leaky_relu(layer.conv(x, style) + 0.7 * noise + layer.activate.bias.view(1, 3, 1, 1), 0.2)
        * 2**0.5
    )
    for fused_modconv in (False, True):
        layer.conv.fused = fused_modconv
        assert torch.allclose(layer(x, style, noise), plain, atol=1e-10)
        assert torch.autograd.gradgradcheck(
            lambda a, b: layer(a, b, noise), (x, style), fast_mode=True
        )


def test_generator_gradients_reach_every_parameter():
    g = tiny_generator()
    z = torch.randn(2, 32)
    img, _ = g([z, torch.randn(2, 32)])
    img.square().mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert g.style[1].weight.grad.abs().sum() > 0


def test_discriminator_double_backward_r1():
    """Lazy R1: grad of D w.r.t. its input, penalised, then differentiated w.r.t. D's weights."""
    d = tiny_discriminator().double()
    x = torch.randn(4, 3, 16, 16, dtype=torch.double, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    penalty = grad.square().sum(dim=(1, 2, 3)).mean()
    penalty.backward()
    # every weight shapes D's input gradient (the last bias cannot: it gets no gradient)
    weights = {n: p.grad for n, p in d.named_parameters() if n.endswith("weight")}
    assert all(gr is not None and torch.isfinite(gr).all() for gr in weights.values())
    assert all(gr.abs().sum() > 0 for gr in weights.values())


def test_discriminator_gradgradcheck():
    torch.manual_seed(0)
    d = Discriminator(8, channel_multiplier=1, channel_max=4).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(d, (x,), fast_mode=True)


def test_generator_double_backward_path_length():
    """PPL-style regulariser: grad of image w.r.t. w with create_graph, then backward."""
    g = tiny_generator()
    w = g.get_latent(torch.randn(2, 32)).detach().requires_grad_(True)
    img, _ = g([w], input_is_latent=True, randomize_noise=False)
    (gw,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), w, create_graph=True)
    gw.square().sum().backward()
    assert g.convs[0].conv.weight.grad is not None
    assert torch.isfinite(g.convs[0].conv.weight.grad).all()


def test_noise_determinism():
    g = tiny_generator().eval()
    for name, p in g.named_parameters():
        if name.endswith("noise.weight"):
            p.data.fill_(0.5)  # noise strengths start at zero, which would hide the noise
    z = torch.randn(3, 32)
    with torch.no_grad():
        a = g([z], randomize_noise=False)[0]
        b = g([z], randomize_noise=False)[0]
        c = g([z])[0]
        d = g([z])[0]
        given = g([z], noise=g.make_noise())[0]
    assert torch.equal(a, b)
    assert not torch.allclose(c, d)
    assert not torch.allclose(a, given)
    assert [n.shape for n in g.make_noise()] == [b.shape for b in g.noises.buffers()]


def test_truncation_one_is_identity_and_zero_collapses_to_mean():
    g = tiny_generator().eval()
    z = torch.randn(3, 32)
    mean = g.mean_latent(64)
    assert mean.shape == (1, 32)
    with torch.no_grad():
        plain = g([z], randomize_noise=False)[0]
        psi1 = g([z], truncation=1, truncation_latent=mean, randomize_noise=False)[0]
        psi0 = g([z], truncation=0, truncation_latent=mean, randomize_noise=False)[0]
    assert torch.equal(plain, psi1)
    assert torch.allclose(psi0, psi0[:1].expand_as(psi0), atol=1e-6)
    assert not torch.allclose(plain, psi0)
    with pytest.raises(SketchganError, match="truncation_latent"):
        g([z], truncation=0.5)


def test_style_mixing_latents():
    g = tiny_generator()  # 16 px: n_latent = 6
    z1, z2 = torch.randn(2, 32), torch.randn(2, 32)
    _, latent = g([z1, z2], inject_index=2, return_latents=True)
    w1, w2 = g.get_latent(z1), g.get_latent(z2)
    assert latent.shape == (2, g.n_latent, 32)
    assert torch.allclose(latent[:, :2], w1[:, None].expand(-1, 2, -1))
    assert torch.allclose(latent[:, 2:], w2[:, None].expand(-1, g.n_latent - 2, -1))
    seen = set()
    for _ in range(12):
        _, lat = g([z1, z2], return_latents=True)
        seen.add(int((lat - w1[:, None]).abs().amax(dim=(0, 2)).gt(1e-6).float().argmax()))
    assert seen <= set(range(1, g.n_latent)) and len(seen) > 1
    assert g([z1])[1] is None


def test_discriminator_batch_must_fit_stddev_group():
    d = tiny_discriminator()
    assert d(torch.randn(2, 3, 16, 16)).shape == (2, 1)
    with pytest.raises(SketchganError, match="multiple of 4"):
        d(torch.randn(6, 3, 16, 16))


def test_autocast_bfloat16_runs_forward_and_backward():
    """CPU stand-in for CUDA AMP: every op must accept reduced-precision activations."""
    g, d = tiny_generator(), tiny_discriminator()
    z = torch.randn(4, 32)
    with torch.no_grad():
        ref = d(g([z], randomize_noise=False)[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img, _ = g([z], randomize_noise=False)
        logits = d(img)
    assert torch.isfinite(logits.float()).all()
    assert (logits.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    F.softplus(-logits.float()).mean().backward()
    assert g.style[1].weight.grad is not None and torch.isfinite(g.style[1].weight.grad).all()


def test_channels_last_option_gives_same_images():
    g = tiny_generator().eval()
    z = torch.randn(2, 32)
    with torch.no_grad():
        ref = g([z], randomize_noise=False)[0]
        use_channels_last(g)
        got = g([z], randomize_noise=False)[0]
    assert g.input.input.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("n", [4, 8, 2])
def test_discriminator_real_and_fake_in_one_pass_equals_two_passes(n):
    """Interleaving keeps each minibatch-stddev group all real or all fake (n = 8: groups of
    every second sample); n = 2 (smaller than a group) takes two passes."""
    d = tiny_discriminator()
    real, fake = torch.randn(n, 3, 16, 16), torch.randn(n, 3, 16, 16)
    real_pred, fake_pred = d.real_and_fake(real, fake)
    assert real_pred.shape == fake_pred.shape == (n, 1)
    torch.testing.assert_close(real_pred, d(real), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fake_pred, d(fake), rtol=1e-5, atol=1e-6)
    # the stddev statistic must not mix real and fake: a fake batch of a different spread
    # changes the fakes' scores only
    real_again, _ = d.real_and_fake(real, fake * 5)
    torch.testing.assert_close(real_again, real_pred, rtol=1e-5, atol=1e-6)
