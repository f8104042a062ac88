"""Every loss term of GANSketching fine-tuning, in one place.

The method is a sum of a handful of small terms (method spec, "Losses"): the non-saturating
logistic ("softplus") GAN losses for the sketch and the image discriminators, the lazy R1
penalty and an optional L1 pull of the tuned weights towards their pretrained values. Keeping
them together lets a reader check the whole objective against the paper on one screen; the
training loop only decides *which* tensors go in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def d_real_loss(real_pred: torch.Tensor) -> torch.Tensor:
    """softplus(-D(x)): the discriminator should score real inputs high."""
    return F.softplus(-real_pred.float()).mean()


def d_fake_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """softplus(D(G(z))): the discriminator should score fakes low."""
    return F.softplus(fake_pred.float()).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """softplus(-D(G(z))): the non-saturating generator loss (strong gradients early on)."""
    return F.softplus(-fake_pred.float()).mean()


def r1_penalty(real_pred: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |dD/dx|^2, with x the tensor the caller marked ``requires_grad``.

    ``real_input`` is whatever the gradient should be taken against: for the sketch D that is
    the raw 1-channel sketch *before* to3ch and augmentation (spec), so the channel repeat and
    the shift are part of the differentiated function. ``create_graph`` keeps the penalty
    differentiable w.r.t. D's parameters.
    """
    (grad,) = torch.autograd.grad(
        outputs=real_pred.float().sum(), inputs=real_input, create_graph=True
    )
    return grad.float().pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def lazy_r1_loss(
    penalty: torch.Tensor,
    real_pred: torch.Tensor,
    r1: float,
    d_reg_every: int,
    weight: float = 1.0,
) -> torch.Tensor:
    """r1/2 * penalty * d_reg_every (* weight, = l_image for the image D).

    The ``d_reg_every`` factor compensates for applying R1 only every that many iterations
    (lazy regularisation). ``0 * real_pred[0]`` adds nothing but keeps the discriminator's
    last bias in the graph: that bias has no effect on dD/dx, and without it the bias would
    get no gradient, which data-parallel gradient averaging has to special-case.
    """
    return (r1 / 2.0) * weight * d_reg_every * penalty + 0.0 * real_pred.float().reshape(-1)[0]


def weight_l1(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over the trained tensors of mean |theta - theta_0|.

    Averaging per tensor first (not per element over all tensors) is what the reference does:
    a large weight matrix and a small bias vector count equally.
    """
    if len(params) != len(anchors):
        raise ValueError(f"weight_l1: {len(params)} parameters but {len(anchors)} anchors")
    if not params:
        raise ValueError("weight_l1: no trained parameters")
    terms = [(p - a).abs().mean() for p, a in zip(params, anchors, strict=True)]
    return torch.stack(terms).mean()


def discriminator_loss(
    real_pred: torch.Tensor, fake_pred: torch.Tensor, weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two D terms, each scaled by ``weight`` (l_image for the image D)."""
    return weight * d_real_loss(real_pred), weight * d_fake_loss(fake_pred)
