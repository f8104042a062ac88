"""PhotoSketch: the pix2pix ResNet generator that turns images into contour sketches.

GANSketching pushes every generated image through this frozen network so that the sketch
discriminator compares sketches with sketches. The layer indices (``model.N.*``) follow the
published PhotoSketch/pix2pix code so its ``latest_net_G.pth`` loads strictly.

Train mode on purpose: the reference runs the frozen sketch network in **train mode**, so its
BatchNorm layers normalise with the statistics of the current batch rather than the stored
running averages (the generator's images are not the photos those averages came from). Freeze
the parameters (``requires_grad_(False)``) but do not call ``.eval()`` when reproducing the
method; note that train mode also updates the running statistics buffers, which is harmless for
the loss but means a saved copy drifts from the published file.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from sketchgan.errors import SketchganError
from sketchgan.models.stylegan2 import check_state_dict


class ResnetBlock(nn.Module):
    """Two reflect-padded 3x3 conv + BatchNorm layers with an identity shortcut.

    Index 4 is a no-op placeholder: the published code puts a ``Dropout(0)`` there when dropout
    is off, which shifts the second convolution's keys to ``conv_block.6``/``.7``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(True),
            nn.Identity(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=False),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """pix2pix ResNet generator (BatchNorm, reflection padding, no dropout, tanh output).

    Convolutions followed by BatchNorm carry no bias (BatchNorm's shift replaces it), as in the
    reference; only the last 7x7 convolution has one. As GANSketching's frozen sketch network it
    stays in train mode (see the module docstring): BatchNorm then uses batch statistics.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        if min(input_nc, output_nc, ngf) < 1 or n_blocks < 0:
            raise SketchganError(
                f"ResnetGenerator: invalid config input_nc={input_nc} output_nc={output_nc} "
                f"ngf={ngf} n_blocks={n_blocks}"
            )
        self.input_nc, self.output_nc, self.ngf, self.n_blocks = input_nc, output_nc, ngf, n_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(
                    ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=False
                ),
                nn.BatchNorm2d(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult,
                    ngf * mult // 2,
                    kernel_size=3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                    bias=False,
                ),
                nn.BatchNorm2d(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def load_state_dict(
        self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False
    ):
        check_state_dict(self, state_dict, "PhotoSketch", strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def load_photosketch_state(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Normalise a published ``latest_net_G.pth`` state dict so strict loading works.

    Those files predate BatchNorm's ``num_batches_tracked`` buffer (added as 0, which is what
    torch itself assumes for old files), may carry the ``_metadata`` attribute or key of
    ``torch.save``-d OrderedDicts, and may have the ``module.`` prefix of DataParallel.
    """
    if not isinstance(state_dict, Mapping):
        raise SketchganError(
            f"photosketch: state dict must be a mapping, got {type(state_dict).__name__}"
        )
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "_metadata":
            continue
        if not isinstance(value, Tensor):
            raise SketchganError(f"photosketch: state dict entry '{key}' is not a tensor")
        out[key.removeprefix("module.")] = value
    for key in [k for k in out if k.endswith(".running_mean")]:
        tracked = key[: -len("running_mean")] + "num_batches_tracked"
        out.setdefault(tracked, torch.tensor(0, dtype=torch.long))
    return out


def to3ch(x: Tensor) -> Tensor:
    """Repeat a 1-channel sketch to 3 channels: the sketch D reuses the RGB image D's layout."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise SketchganError(f"to3ch: expected a (N, 1, H, W) sketch, got {tuple(x.shape)}")
    return x.repeat(1, 3, 1, 1)
