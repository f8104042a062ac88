"""sketchgan: customise a pretrained StyleGAN2 from a few sketches (Sketch Your Own GAN)."""

__version__ = "0.1.0"
