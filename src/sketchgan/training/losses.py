"""Every loss term of GANSketching fine-tuning, in one place.

The method is a sum of a handful of small terms (method spec, "Losses"): the non-saturating
logistic ("softplus") GAN losses for the sketch and the image discriminators, the lazy R1
penalty and an optional L1 pull of the tuned weights towards their pretrained values.
``GANSketchingObjective`` puts them together with the sketch branch (PhotoSketch, the down/up
round trip, augmentation, to3ch) and returns each phase's terms by the reference's names
(``D_real_sketch``, ``G_image``, ...); the trainer sums them. A reader checks the whole
objective against the paper on one screen; the training loop only decides *which* tensors go in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sketchgan.models.photosketch import to3ch
from sketchgan.models.stylegan2 import Discriminator, use_channels_last
from sketchgan.training import augment


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
    r1: float,
    d_reg_every: int,
    weight: float = 1.0,
) -> torch.Tensor:
    """r1/2 * penalty * d_reg_every (* weight, = l_image for the image D).

    The ``d_reg_every`` factor compensates for applying R1 only every that many iterations
    (lazy regularisation). The discriminator's last bias is not in the graph of dD/dx, so it
    gets no gradient here and Adam skips it, as in the reference (its step count stays one
    lower, which its later bias-corrected updates depend on).
    """
    return (r1 / 2.0) * weight * d_reg_every * penalty


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


# --------------------------------------------------------------------------------------------
# the sketch branch and the objective
# --------------------------------------------------------------------------------------------


def _down(x: Tensor, scale: int) -> Tensor:
    while scale > 1:
        x = F.interpolate(x, scale_factor=0.5, mode="bicubic", align_corners=False)
        scale //= 2
    return x


def _up(x: Tensor, scale: int) -> Tensor:
    while scale > 1:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        scale //= 2
    return x


class SketchBranch:
    """Everything between an image and the sketch D's input.

    PhotoSketch is frozen (no parameter gradients) but kept in train mode so BatchNorm uses
    the batch statistics, as in the reference; its momentum is set to 0 so the running
    statistics, which train mode never reads, are not rewritten every call.

    ``channels_last`` runs the net NHWC (output back to NCHW for the discriminator); the
    trainer turns it on for CUDA only (reports/bench_finetune.md).
    """

    def __init__(
        self, net: nn.Module, scale: int, policy: tuple[str, ...], channels_last: bool = False
    ) -> None:
        self.net = use_channels_last(net) if channels_last else net
        self.channels_last = channels_last
        self.scale = scale
        self.policy = policy
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0

    def sketch(self, img: Tensor) -> Tensor:
        """G(z) in [-1, 1] -> 1-channel sketch at full resolution."""
        x = _down(img, self.scale)
        if self.channels_last:
            return _up(
                self.net(x.contiguous(memory_format=torch.channels_last)).contiguous(), self.scale
            )
        return _up(self.net(x), self.scale)

    def round_trip(self, sketches: Tensor) -> Tensor:
        """Real sketches get the same down/up trip as fakes (no-op below 1024 px)."""
        return _up(_down(sketches, self.scale), self.scale)

    def draw(self, n: int, size: int, gen: torch.Generator | None, device: torch.device):
        """The augmentation draws for one D input (None without augmentation)."""
        return augment.draw_policy(self.policy, n, size, size, gen, device)

    def d_input(self, sketch: Tensor, shifts: augment.Shift | None) -> Tensor:
        """Augment with the drawn shifts, then repeat to 3 channels.

        Translation moves all channels alike, so shifting the 1-channel sketch and then
        repeating equals the reference's repeat-then-shift, at a third of the gather work.
        """
        return to3ch(augment.apply_policy(sketch, shifts))


class GANSketchingObjective:
    """The paper's objective: sketch-domain GAN loss + l_image x image-domain GAN loss
    (+ l_weight x L1 pull), lazy R1 on both discriminators; each phase returns named terms.

    Fakes come in as images; which generator made them, and with which draws, is the
    trainer's business. ``d_image`` is None when l_image is 0 (no image-space regulariser).
    """

    def __init__(
        self,
        branch: SketchBranch,
        d_sketch: Discriminator,
        d_image: Discriminator | None,
        l_image: float,
        l_weight: float,
        r1: float,
        d_reg_every: int,
    ) -> None:
        self.branch = branch
        self.d_sketch = d_sketch
        self.d_image = d_image
        self.l_image = l_image
        self.l_weight = l_weight
        self.r1 = r1
        self.d_reg_every = d_reg_every

    def d_terms(
        self,
        fake_img: Tensor,
        real_sketch: Tensor,
        real_img: Tensor | None,
        shift_real: augment.Shift | None,
        shift_fake: augment.Shift | None,
    ) -> dict[str, Tensor]:
        """Discriminator terms on a fake batch made without a graph."""
        with torch.no_grad():
            fake_sketch = self.branch.sketch(fake_img)
        real_pred, fake_pred = self.d_sketch.real_and_fake(
            self.branch.d_input(real_sketch, shift_real),
            self.branch.d_input(fake_sketch, shift_fake),
        )
        terms = {"D_real_sketch": d_real_loss(real_pred), "D_fake_sketch": d_fake_loss(fake_pred)}
        if self.d_image is not None:
            real_pred, fake_pred = self.d_image.real_and_fake(real_img, fake_img)
            terms["D_real_image"] = self.l_image * d_real_loss(real_pred)
            terms["D_fake_image"] = self.l_image * d_fake_loss(fake_pred)
        return terms

    def r1_terms(
        self, real_sketch: Tensor, real_img: Tensor | None, shift_real: augment.Shift | None
    ) -> dict[str, Tensor]:
        """Lazy R1, the gradient taken w.r.t. the 1-channel sketch before to3ch and the shift."""
        x = real_sketch.detach().clone().requires_grad_(True)
        pred = self.d_sketch(self.branch.d_input(x, shift_real))
        pen_s = r1_penalty(pred, x)
        terms = {
            "D_r1_loss_sketch": lazy_r1_loss(pen_s, self.r1, self.d_reg_every),
            "r1_penalty_sketch": pen_s.detach(),
        }
        if self.d_image is not None:
            y = real_img.detach().clone().requires_grad_(True)
            pred_i = self.d_image(y)
            pen_i = r1_penalty(pred_i, y)
            terms["D_r1_loss_image"] = lazy_r1_loss(
                pen_i, self.r1, self.d_reg_every, weight=self.l_image
            )
            terms["r1_penalty_image"] = pen_i.detach()
        return terms

    def g_terms(
        self,
        fake_img: Tensor,
        shift_fake: augment.Shift | None,
        trained: Sequence[Tensor],
        anchors: Sequence[Tensor],
    ) -> dict[str, Tensor]:
        """Generator terms on a fake batch made with a graph."""
        fake_sketch = self.branch.sketch(fake_img)
        terms = {
            "G_sketch": g_nonsaturating_loss(
                self.d_sketch(self.branch.d_input(fake_sketch, shift_fake))
            )
        }
        if self.d_image is not None:
            terms["G_image"] = self.l_image * g_nonsaturating_loss(self.d_image(fake_img))
        if self.l_weight > 0:
            terms["l_weight"] = self.l_weight * weight_l1(trained, anchors)
        return terms


LOSS_TERMS = (
    "D_real_sketch",
    "D_fake_sketch",
    "D_real_image",
    "D_fake_image",
    "G_sketch",
    "G_image",
    "l_weight",
    "D_r1_loss_sketch",
    "D_r1_loss_image",
)
PENALTY_TERMS = ("r1_penalty_sketch", "r1_penalty_image")


def total(terms: dict[str, Tensor]) -> Tensor:
    """The sum the optimiser steps on: every loss term of a phase (penalties are reported
    raw and enter through their D_r1_loss_* terms)."""
    parts = [v for k, v in terms.items() if k in LOSS_TERMS]
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return out
