"""DiffAugment "translation" for the sketch discriminator's inputs.

With ~30 training sketches the sketch D memorises them within a few thousand iterations;
random shifts applied identically to the real and the fake branch (and differentiably, so the
generator still gets gradients through them) are the paper's remedy. Only the "translation"
policy is used by the method; other DiffAugment policies are rejected instead of ignored.
"""

from __future__ import annotations

import torch

from sketchgan.errors import SketchganError

SUPPORTED_POLICIES = ("translation",)
TRANSLATION_RATIO = 0.125


def parse_policy(policy: str | bool | None, field: str = "train.augment") -> tuple[str, ...]:
    """Normalise a policy setting: True -> ("translation",), False/None/"" -> ()."""
    if policy is None or policy is False:
        return ()
    if policy is True:
        return ("translation",)
    if not isinstance(policy, str):
        raise SketchganError(f"params: '{field}' must be a bool or a policy string, got {policy!r}")
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    for name in names:
        if name not in SUPPORTED_POLICIES:
            raise SketchganError(
                f"params: '{field}' has unknown policy '{name}' (supported: "
                f"{', '.join(SUPPORTED_POLICIES)})"
            )
    return names


def max_shift(size: int, ratio: float = TRANSLATION_RATIO) -> int:
    """floor(ratio * size + 0.5): the largest shift in pixels (4 at 32 px, 32 at 256 px)."""
    return int(size * ratio + 0.5)


def translate(x: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor) -> torch.Tensor:
    """out[n, :, i, j] = x[n, :, i + shift_y[n], j + shift_x[n]], zero outside the image.

    Two batched gathers (rows, then columns) instead of a per-sample loop; the result is a
    differentiable function of ``x`` (gather's backward is a scatter-add).
    """
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).unsqueeze(0) + shift_y.view(n, 1)  # (n, h)
    cols = torch.arange(w, device=x.device).unsqueeze(0) + shift_x.view(n, 1)  # (n, w)
    row_ok = (rows >= 0) & (rows < h)
    col_ok = (cols >= 0) & (cols < w)
    row_idx = rows.clamp(0, h - 1).view(n, 1, h, 1).expand(n, c, h, w)
    col_idx = cols.clamp(0, w - 1).view(n, 1, 1, w).expand(n, c, h, w)
    out = x.gather(2, row_idx).gather(3, col_idx)
    keep = (row_ok.view(n, 1, h, 1) & col_ok.view(n, 1, 1, w)).to(out.dtype)
    return out * keep


Shift = tuple[torch.Tensor, torch.Tensor]  # (rows, columns), each (N,) int64


def draw_translation(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    ratio: float = TRANSLATION_RATIO,
) -> Shift:
    """Each sample's own integer offset in [-s, s] (s = max_shift), rows first, then columns.

    Drawing apart from applying lets a caller record or inject the shifts (the step-parity
    test replays the reference's); ``generator`` must live on ``device``: a dedicated generator
    (not the global RNG) is what makes a resumed run reproduce the augmentation exactly.
    """
    sy, sx = max_shift(height, ratio), max_shift(width, ratio)
    shift_y = torch.randint(-sy, sy + 1, (n,), generator=generator, device=device)
    shift_x = torch.randint(-sx, sx + 1, (n,), generator=generator, device=device)
    return shift_y, shift_x


def draw_policy(
    policy: tuple[str, ...],
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Shift | None:
    """The random draws of a parsed policy for one batch (None when it draws nothing)."""
    if not policy:
        return None
    for name in policy:
        if name != "translation":  # parse_policy keeps this unreachable; guard hand-built tuples
            raise SketchganError(f"params: 'train.augment' has unknown policy '{name}'")
    return draw_translation(n, height, width, generator, device)


def apply_policy(x: torch.Tensor, shifts: Shift | None) -> torch.Tensor:
    """Apply drawn shifts (None returns ``x`` unchanged, no copy)."""
    if shifts is None:
        return x
    return translate(x, shifts[0], shifts[1])


def random_translation(
    x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = TRANSLATION_RATIO
) -> torch.Tensor:
    """Shift each sample by its own offset (``draw_translation``), differentiably in ``x``."""
    n, _, h, w = x.shape
    return translate(x, *draw_translation(n, h, w, generator, x.device, ratio))


def diff_augment(
    x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw and apply a parsed policy; an empty policy returns ``x`` unchanged (no copy)."""
    n, _, h, w = x.shape
    return apply_policy(x, draw_policy(policy, n, h, w, generator, x.device))
