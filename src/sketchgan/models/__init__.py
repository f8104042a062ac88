"""Networks: StyleGAN2 (generator, discriminator) and the PhotoSketch sketch extractor."""

from sketchgan.models.photosketch import ResnetGenerator, load_photosketch_state, to3ch
from sketchgan.models.stylegan2 import (
    Discriminator,
    Generator,
    channel_table,
    check_state_dict,
    set_fused_modconv,
    use_channels_last,
)

__all__ = [
    "Discriminator",
    "Generator",
    "ResnetGenerator",
    "channel_table",
    "check_state_dict",
    "load_photosketch_state",
    "set_fused_modconv",
    "to3ch",
    "use_channels_last",
]
