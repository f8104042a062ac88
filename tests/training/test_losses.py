"""Each GANSketching loss term against hand-computed values; R1 against finite differences."""

import math

import pytest
import torch

from sketchgan.training import losses


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_d_and_g_softplus_terms_match_hand_values():
    pred = torch.tensor([[0.0], [1.0], [-2.0]])
    want_real = (_softplus(0.0) + _softplus(-1.0) + _softplus(2.0)) / 3
    want_fake = (_softplus(0.0) + _softplus(1.0) + _softplus(-2.0)) / 3
    assert losses.d_real_loss(pred).item() == pytest.approx(want_real, rel=1e-6)
    assert losses.d_fake_loss(pred).item() == pytest.approx(want_fake, rel=1e-6)
    assert losses.g_nonsaturating_loss(pred).item() == pytest.approx(want_real, rel=1e-6)
    real, fake = losses.discriminator_loss(pred, -pred, weight=0.7)
    assert real.item() == pytest.approx(0.7 * want_real, rel=1e-6)
    assert fake.item() == pytest.approx(0.7 * want_real, rel=1e-6)


def test_losses_are_float32_for_half_predictions():
    pred = torch.tensor([[0.5], [-0.5]], dtype=torch.bfloat16)
    assert losses.d_real_loss(pred).dtype == torch.float32


def _tiny_d(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A non-linear per-sample score so the gradient depends on x."""
    return (torch.tanh(x.reshape(x.shape[0], -1) * w) ** 2).sum(1, keepdim=True)


def test_r1_penalty_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    w = torch.randn(16, generator=g, dtype=torch.float64)
    x = x0.clone().requires_grad_(True)
    got = losses.r1_penalty(_tiny_d(x, w), x).item()

    eps = 1e-6
    flat = x0.reshape(3, -1)
    norms = []
    for n in range(3):
        grad_n = []
        for k in range(flat.shape[1]):
            plus, minus = flat.clone(), flat.clone()
            plus[n, k] += eps
            minus[n, k] -= eps
            d_plus = _tiny_d(plus.reshape(x0.shape), w).sum()
            d_minus = _tiny_d(minus.reshape(x0.shape), w).sum()
            grad_n.append(((d_plus - d_minus) / (2 * eps)).item())
        norms.append(sum(v * v for v in grad_n))
    assert got == pytest.approx(sum(norms) / 3, rel=1e-5)


def test_r1_penalty_is_differentiable_wrt_d_parameters():
    w = torch.tensor([0.3, -0.2, 0.5, 0.1], requires_grad=True)
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5]], requires_grad=True)
    pen = losses.r1_penalty(x @ w.unsqueeze(1) * 2.0, x)  # dD/dx = 2w -> |.|^2 = 4|w|^2
    assert pen.item() == pytest.approx(4 * float((w.detach() ** 2).sum()), rel=1e-6)
    pen.backward()
    torch.testing.assert_close(w.grad, 8 * w.detach())


def test_lazy_r1_scaling():
    loss = losses.lazy_r1_loss(torch.tensor(2.0), r1=10.0, d_reg_every=16, weight=0.7)
    assert loss.item() == pytest.approx(10 / 2 * 2.0 * 16 * 0.7)


def test_weight_l1_is_mean_of_per_tensor_means():
    p = [torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([[-1.0]], requires_grad=True)]
    a = [torch.zeros(2), torch.ones(1, 1)]
    loss = losses.weight_l1(p, a)
    assert loss.item() == pytest.approx((1.5 + 2.0) / 2)
    loss.backward()
    torch.testing.assert_close(p[0].grad, torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(p[1].grad, torch.tensor([[-0.5]]))


def test_weight_l1_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        losses.weight_l1([torch.zeros(1)], [])
