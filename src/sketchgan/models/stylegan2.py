"""StyleGAN2 generator and residual discriminator in pure PyTorch.

The module and parameter layout follows the community PyTorch port whose checkpoints
GANSketching and most StyleGAN2 users share (``style.N``, ``convs.N.conv.weight``,
``noises.noise_N``, blur kernels as buffers...), so those state dicts load strictly and compute
the same numbers. Nothing here is compiled: the port's CUDA extensions break imports on
CPU-only machines, and its custom ops add nothing that ``conv2d``/``conv_transpose2d`` cannot do.
Every op supports double backward (lazy R1 differentiates D's gradient w.r.t. its input) and
``torch.autocast``.

Formulation choices (CPU, forward + backward, batch 4; see ``reports/bench_generator.md``):
- modulated convolution defaults to the *batched* form: modulate the input, run one ordinary
  convolution with the shared weight, demodulate the output. It computes the same function as
  the reference's per-sample grouped convolution (``fused=True`` keeps that form) and is 2.5x
  faster at 32 px (4x when only the mapping network trains), where 512-channel convs dominate;
- StyledConv folds demodulation, noise, bias and the activation gain into one ``addcmul`` and
  two in-place ops: 8% faster at 256 px, where large activations make element-wise ops costly;
- up-sampling stays a stride-2 transposed convolution followed by the [1,3,3,1] blur (zero
  insertion + blur + 3x3 conv was 1.5x slower); channels_last is opt-in (``use_channels_last``):
  it only paid off at 256 px with the mapping network alone trained.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sketchgan.errors import SketchganError

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8

# Channels per resolution for channel_multiplier 1; resolutions from 64 px scale with it.
_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def channel_table(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature channels per resolution, capped at ``channel_max`` (tiny test/world models)."""
    if channel_multiplier < 1 or channel_max < 1:
        raise SketchganError(
            f"channel_multiplier/channel_max: must be >= 1, got {channel_multiplier}/{channel_max}"
        )
    table = {}
    for res, base in _BASE_CHANNELS.items():
        scaled = base if res <= 32 else base * channel_multiplier
        table[res] = min(scaled, channel_max)
    return table


def _log2_size(size: int, what: str) -> int:
    if size not in _BASE_CHANNELS or size < 8:
        raise SketchganError(f"{what}: size must be a power of two in 8..1024, got {size}")
    return int(math.log2(size))


def make_kernel(taps: Sequence[float], gain: float = 1.0) -> Tensor:
    """Separable FIR taps -> normalised 2-D kernel; ``gain`` 4 keeps the mean after 2x up."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = torch.outer(k, k) if k.ndim == 1 else k
    return k / k.sum() * gain


# --------------------------------------------------------------------------------------------
# resampling


def blur2d(x: Tensor, kernel: Tensor, pad: tuple[int, int]) -> Tensor:
    """Pad then filter every channel with ``kernel`` (upfirdn2d with up = down = 1)."""
    n, c, h, w = x.shape
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


def upsample2d(x: Tensor, kernel: Tensor) -> Tensor:
    """2x up-sampling = zero insertion + filter, done as one depthwise transposed conv.

    Equal to the reference's upfirdn2d(up=2, pad=(2, 1)) for 4-tap kernels: a transposed
    convolution is zero insertion followed by a full convolution, and padding=1 crops it to 2H.
    """
    c = x.shape[1]
    weight = kernel.to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    pad = (kernel.shape[0] - 2) // 2
    return F.conv_transpose2d(x, weight, stride=2, padding=pad, groups=c)


class Blur(nn.Module):
    """Anti-aliasing filter; its kernel is a buffer because reference checkpoints store it."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps, gain=upsample_factor**2))
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return blur2d(x, self.kernel, self.pad)


class Upsample(nn.Module):
    """2x up-sampling of the RGB skip path."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        if factor != 2 or len(taps) != 4:
            raise SketchganError(f"blur_kernel: only 4-tap kernels with factor 2, got {taps}")
        self.register_buffer("kernel", make_kernel(taps, gain=factor**2))

    def forward(self, x: Tensor) -> Tensor:
        return upsample2d(x, self.kernel)


# --------------------------------------------------------------------------------------------
# equalised layers


def fused_leaky_relu(x: Tensor, bias: Tensor) -> Tensor:
    """Bias + leaky ReLU(0.2) + gain sqrt(2): keeps activations at unit variance."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.to(x.dtype).view(shape), LRELU_SLOPE) * LRELU_GAIN


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with run-time weight scaling (equalised learning rate) and lr multiplier."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if not self.activation:
            return F.linear(x, self.weight * self.scale, bias)
        out = F.linear(x, self.weight * self.scale)
        if bias is None:
            return F.leaky_relu(out, LRELU_SLOPE) * LRELU_GAIN
        return fused_leaky_relu(out, bias)


class WShift(nn.Module):
    """The w_shift variant's one learned vector, added to every w after the mapping MLP.

    It sits at ``style.<n_mlp + 1>`` with the parameter ``w_shift`` of shape (1, style_dim),
    where the reference appends it, so the reference's w_shift checkpoints load strictly and
    ours load there; ``get_latent``/``mean_latent`` include it, so truncation stays centred on
    the shifted w.
    """

    def __init__(self, style_dim: int):
        super().__init__()
        self.w_shift = nn.Parameter(torch.zeros(1, style_dim))

    def forward(self, w: Tensor) -> Tensor:
        return w + self.w_shift


class EqualConv2d(nn.Module):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride = stride
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding
        )


# --------------------------------------------------------------------------------------------
# generator blocks


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2x up-sampling.

    ``fused`` selects the formulation: False (default, faster in our benchmark) modulates the
    activations and demodulates the output around one shared-weight convolution; True builds
    per-sample weights and runs a grouped convolution, exactly like the reference. Both compute
    the same function.
    """

    fused: bool = False

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            # transposed conv (k x k, stride 2) gives 2H + k - 2 pixels; the blur trims to 2H.
            p = (len(blur_kernel) - 2) - (kernel - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def _demod(self, weight: Tensor, style: Tensor) -> Tensor:
        """1 / ||w * s|| per (sample, out channel), from sum_k w^2 (no per-sample weights).

        Computed with elementwise ops in (at least) float32 so autocast cannot make it half.
        """
        dtype = torch.promote_types(weight.dtype, torch.float32)
        w_sq = weight.to(dtype).square().sum(dim=(2, 3))  # (out, in)
        s_sq = style.to(dtype).square()  # (n, in)
        return torch.rsqrt((s_sq[:, None, :] * w_sq[None]).sum(dim=2) + DEMOD_EPS)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        out, gain = self.forward_unscaled(x, style)
        return out if gain is None else out * gain.to(out.dtype)[:, :, None, None]

    def forward_unscaled(self, x: Tensor, style: Tensor) -> tuple[Tensor, Tensor | None]:
        """(conv output, per-sample per-channel gain (N, C) still to apply, or None).

        Returning the gain lets StyledConv fold demodulation, noise, bias and activation gain
        into two passes over the activations instead of five.
        """
        s = self.modulation(style)
        weight = self.weight[0] * self.scale
        if self.fused:
            return self._forward_grouped(x, weight, s), None
        return self._forward_batched(x, weight, s)

    def _forward_batched(self, x: Tensor, weight: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        # Dividing s by its (detached) max-abs and folding that factor into the output gain is
        # an identity in exact arithmetic; it keeps the convolution's range bounded in fp16.
        s_max = s.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        x = x * (s / s_max).to(x.dtype).reshape(n, -1, 1, 1)
        w = weight.to(x.dtype)
        if self.upsample:
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
            out = self.blur(out)
        else:
            out = F.conv2d(x, w, padding=self.padding)
        gain = s_max.expand(n, self.out_ch)
        if self.demodulate:
            gain = self._demod(weight, s) * s_max
        return out, gain

    def _forward_grouped(self, x: Tensor, weight: Tensor, s: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k = self.kernel_size
        wb = weight[None] * s.to(weight.dtype)[:, None, :, None, None]  # (n, out, in, k, k)
        if self.demodulate:
            wb = wb * self._demod(weight, s).to(wb.dtype)[:, :, None, None, None]
        x = x.reshape(1, n * c, h, w)
        if self.upsample:
            wt = wb.transpose(1, 2).reshape(n * c, self.out_ch, k, k)
            out = F.conv_transpose2d(x, wt.to(x.dtype), stride=2, groups=n)
            out = self.blur(out.reshape(n, self.out_ch, *out.shape[2:]))
            return out
        out = F.conv2d(
            x, wb.reshape(n * self.out_ch, c, k, k).to(x.dtype), padding=self.padding, groups=n
        )
        return out.reshape(n, self.out_ch, h, w)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            n, _, h, w = x.shape
            noise = x.new_empty(n, 1, h, w).normal_()
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, latent: Tensor) -> Tensor:
        return self.input.expand(latent.shape[0], -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_ch, out_ch, kernel, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        if not self.fused_epilogue:
            return self.activate(self.noise(self.conv(x, style), noise=noise))
        out, gain = self.conv.forward_unscaled(x, style)
        return self._epilogue(out, gain, noise)

    fused_epilogue: bool = True

    def _epilogue(self, out: Tensor, gain: Tensor | None, noise: Tensor | None) -> Tensor:
        """lrelu(out * gain + w * noise + b) * sqrt(2) in two full-size passes.

        Leaky ReLU is positively homogeneous, so the sqrt(2) gain moves inside onto the small
        factors (gain, w, b); the large activations are touched by one addcmul, one in-place
        noise addcmul and one in-place leaky ReLU instead of five separate element-wise ops
        (measured in reports/bench_generator.md).
        """
        n, c, h, w = out.shape
        dtype = out.dtype
        bias = (self.activate.bias * LRELU_GAIN).to(dtype).view(1, c, 1, 1)
        scale = LRELU_GAIN if gain is None else (gain * LRELU_GAIN).to(dtype).view(n, c, 1, 1)
        y = torch.addcmul(bias, out, torch.as_tensor(scale, dtype=dtype, device=out.device))
        if noise is None:
            noise = out.new_empty(n, 1, h, w).normal_()
        y = y.addcmul_(noise.to(dtype), (self.noise.weight * LRELU_GAIN).to(dtype))
        return F.leaky_relu_(y, LRELU_SLOPE)


class ToRGB(nn.Module):
    def __init__(
        self,
        in_ch: int,
        style_dim: int,
        upsample: bool = True,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """StyleGAN2 generator (mapping MLP + synthesis network), reference key layout."""

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        channel_max: int = 512,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        lr_mlp: float = 0.01,
    ):
        super().__init__()
        self.log_size = _log2_size(size, "Generator")
        if style_dim < 1 or n_mlp < 1:
            raise SketchganError(
                f"Generator: style_dim and n_mlp must be >= 1, got {style_dim}/{n_mlp}"
            )
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        ch = channel_table(channel_multiplier, channel_max)
        self.channels = ch

        layers: list[nn.Module] = [PixelNorm()]
        layers += [
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)
        ]
        self.style = nn.Sequential(*layers)

        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)

        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for idx in range(self.num_layers):
            res = 2 ** ((idx + 5) // 2)
            self.noises.register_buffer(f"noise_{idx}", torch.randn(1, 1, res, res))

        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(
                StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel)
            )
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch

    # -- w_shift --------------------------------------------------------------------------------
    @property
    def w_shift_key(self) -> str:
        return f"style.{self.n_mlp + 1}.w_shift"

    def w_shift(self) -> Tensor | None:
        """The shift parameter when the generator carries one (w_shift fine-tuning)."""
        last = self.style[-1]
        return last.w_shift if isinstance(last, WShift) else None

    def add_w_shift(self, shift: Tensor | None = None) -> nn.Parameter:
        """Append a WShift (zeros, or ``shift``) unless there is one; returns its parameter."""
        if self.w_shift() is None:
            self.style.append(WShift(self.style_dim).to(self.input.input.device))
        param = self.w_shift()
        if shift is not None:
            shift = torch.as_tensor(shift).float()
            if shift.numel() != self.style_dim:
                raise SketchganError(
                    f"w_shift: expected {self.style_dim} values (style_dim), got "
                    f"{tuple(shift.shape)}"
                )
            with torch.no_grad():
                param.copy_(shift.reshape(1, -1))
        return param

    def adopt_state_layout(self, state_dict: Mapping[str, Tensor]) -> None:
        """Grow the WShift slot a w_shift checkpoint (ours or the reference's) carries."""
        if isinstance(state_dict, Mapping) and self.w_shift_key in state_dict:
            self.add_w_shift()

    def remove_w_shift(self) -> Tensor | None:
        """Drop the WShift module (if any) and return its value, detached."""
        value = self.w_shift()
        if value is not None:
            del self.style[-1]
            value = value.detach()
        return value

    # -- latents ------------------------------------------------------------------------------
    def get_latent(self, z: Tensor) -> Tensor:
        """Mapping network: z (N, style_dim) -> w (N, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int) -> Tensor:
        """Mean w over ``n`` random z: the centre that truncation pulls towards."""
        z = torch.randn(n, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def make_noise(self) -> list[Tensor]:
        """Fresh per-layer noise maps (batch 1, broadcast over the batch)."""
        device = self.input.input.device
        return [
            torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=device)
            for i in range(self.num_layers)
        ]

    def _stack_latents(self, styles: list[Tensor], inject_index: int | None) -> Tensor:
        """(N, n_latent, style_dim): one w per layer; two styles cross over at inject_index."""
        if len(styles) < 2:
            w = styles[0]
            return w if w.ndim == 3 else w.unsqueeze(1).repeat(1, self.n_latent, 1)
        if inject_index is None:
            inject_index = random.randint(1, self.n_latent - 1)
        first = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        second = styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)
        return torch.cat([first, second], dim=1)

    def forward(
        self,
        styles: list[Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1,
        truncation_latent: Tensor | None = None,
        input_is_latent: bool = False,
        noise: list[Tensor | None] | None = None,
        randomize_noise: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        if isinstance(styles, Tensor) or not styles:
            raise SketchganError("Generator.forward: 'styles' must be a non-empty list of tensors")
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            if randomize_noise:
                noise = [None] * self.num_layers
            else:
                noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if truncation < 1:
            if truncation_latent is None:
                raise SketchganError(
                    "Generator.forward: 'truncation_latent' is required when truncation < 1"
                )
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        latent = self._stack_latents(list(styles), inject_index)

        out = self.input(latent)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for up_conv, conv, to_rgb, n1, n2 in zip(
            self.convs[::2], self.convs[1::2], self.to_rgbs, noise[1::2], noise[2::2], strict=True
        ):
            out = up_conv(out, latent[:, i], noise=n1)
            out = conv(out, latent[:, i + 1], noise=n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)

    def load_state_dict(
        self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False
    ):
        self.adopt_state_layout(state_dict)
        check_state_dict(self, state_dict, "Generator", strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


# --------------------------------------------------------------------------------------------
# discriminator


class ConvLayer(nn.Sequential):
    """[blur] + equalised conv + [bias/leaky ReLU]; a Sequential so keys read ``.0/.1/.2``."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel // 2
        layers.append(
            EqualConv2d(
                in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_ch) if bias else _ScaledLeakyReLU())
        super().__init__(*layers)


class _ScaledLeakyReLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_ch, out_ch, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch standard deviation (group 4, 1 feature)."""

    stddev_group = 4
    stddev_feat = 1

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        channel_max: int = 512,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        log_size = _log2_size(size, "Discriminator")
        self.size = size
        ch = channel_table(channel_multiplier, channel_max)
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation=True),
            EqualLinear(ch[4], 1),
        )

    def _minibatch_stddev(self, x: Tensor) -> Tensor:
        """Append the mean std-dev across groups of samples (in float32: fp16 eps underflows)."""
        n, c, h, w = x.shape
        group = min(n, self.stddev_group)
        if n % group:
            raise SketchganError(
                f"Discriminator: batch size {n} must be a multiple of {self.stddev_group} "
                "(or smaller than it)"
            )
        y = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(
            group, -1, self.stddev_feat, c // self.stddev_feat, h, w
        )
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
        y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)
        y = y.repeat(group, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs(x)
        out = self.final_conv(self._minibatch_stddev(out))
        return self.final_linear(out.reshape(out.shape[0], -1))

    def real_and_fake(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """``(self(real), self(fake))`` in one pass of twice the batch (fewer, larger
        convolutions: faster on a CPU). The samples are interleaved (r0, f0, r1, f1, ...): the
        minibatch-stddev groups take every (2n / group)-th sample, so each group is then all
        real or all fake with the same members as in two passes. Batches that are not a
        multiple of the group (where one pass would mix them) take two passes."""
        n = real.shape[0]
        if fake.shape != real.shape or n % self.stddev_group:
            return self(real), self(fake)
        pred = self(torch.stack([real, fake], 1).flatten(0, 1)).view(n, 2, -1)
        return pred[:, 0], pred[:, 1]

    def load_state_dict(
        self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False
    ):
        check_state_dict(self, state_dict, "Discriminator", strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


# --------------------------------------------------------------------------------------------
# state dict checks


def _fmt_shape(shape: Sequence[int]) -> str:
    dims = tuple(shape)
    return "(" + ",".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def check_state_dict(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    what: str,
    strict: bool = True,
    optional: Callable[[str], bool] | None = None,
) -> None:
    """Raise a one-line SketchganError naming the first offending key instead of torch's essay.

    A checkpoint for another size or channel multiplier is the common user mistake; then nearly
    every key differs, so the first one with both shapes, plus a count, says more than a list.
    ``optional(key)`` marks keys a file may lack (e.g. BatchNorm step counters of old files).
    The one check behind every loader: ``load_state_dict`` here and ``checkpoints.load_into``.
    """
    if not isinstance(state_dict, Mapping):
        kind = type(state_dict).__name__
        raise SketchganError(f"{what}: state dict must be a mapping, got {kind}")
    expected = module.state_dict()
    for key, value in state_dict.items():
        if key in expected and not isinstance(value, Tensor):
            raise SketchganError(f"{what}: state dict entry '{key}' is not a tensor")
    wrong = [k for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    missing, unexpected = [], []
    if strict:
        missing = [k for k in expected if k not in state_dict and not (optional and optional(k))]
        unexpected = [k for k in state_dict if k not in expected]
    problems = len(wrong) + len(missing) + len(unexpected)
    if problems == 0:
        return
    more = f" ({problems - 1} more keys differ)" if problems > 1 else ""
    if wrong:
        key = wrong[0]
        raise SketchganError(
            f"{what}: '{key}' has shape {_fmt_shape(state_dict[key].shape)}, model expects "
            f"{_fmt_shape(expected[key].shape)}{more}"
        )
    if missing:
        key = missing[0]
        raise SketchganError(
            f"{what}: missing '{key}' (model expects shape {_fmt_shape(expected[key].shape)}){more}"
        )
    key = unexpected[0]
    raise SketchganError(
        f"{what}: unexpected key '{key}' with shape {_fmt_shape(state_dict[key].shape)} "
        f"not in the model{more}"
    )


def set_fused_modconv(module: nn.Module, fused: bool) -> nn.Module:
    """Switch every ModulatedConv2d in ``module`` between grouped (True) and batched form."""
    for m in module.modules():
        if isinstance(m, ModulatedConv2d):
            m.fused = fused
    return module


def use_channels_last(module: nn.Module) -> nn.Module:
    """Store the 4-D parameters/buffers NHWC so activations follow (``Module.to`` refuses 5-D).

    Opt-in: on the CPU it was 11% faster for 256 px with only the mapping network trained, but
    2-7% slower for full training and at 32 px (reports/bench_generator.md).
    """
    for t in list(module.parameters()) + list(module.buffers()):
        if t.ndim == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)
    return module
