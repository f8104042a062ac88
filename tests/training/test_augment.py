"""DiffAugment translation: bounds, zero fill, exactness, gradients and seeding."""

import pytest
import torch

from sketchgan.errors import SketchganError
from sketchgan.training import augment


def _ramp(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """Every pixel holds a unique positive code of its (row, col), so shifts can be decoded."""
    grid = (torch.arange(h).view(h, 1) * w + torch.arange(w).view(1, w) + 1).float()
    return grid.expand(n, c, h, w).clone()


def _naive_translate(x, sy, sx):
    out = torch.zeros_like(x)
    n, _, h, w = x.shape
    for b in range(n):
        for i in range(h):
            for j in range(w):
                si, sj = i + int(sy[b]), j + int(sx[b])
                if 0 <= si < h and 0 <= sj < w:
                    out[b, :, i, j] = x[b, :, si, sj]
    return out


def test_max_shift_follows_rounding_rule():
    assert augment.max_shift(32) == 4
    assert augment.max_shift(16) == 2
    assert augment.max_shift(256) == 32
    assert augment.max_shift(20) == 3  # 2.5 + 0.5 -> floor 3


def test_translate_matches_naive_loop_with_zero_fill():
    x = torch.randn(5, 2, 8, 7)
    sy = torch.tensor([0, 2, -3, 7, -1])
    sx = torch.tensor([1, -2, 0, 0, 6])
    out = augment.translate(x, sy, sx)
    torch.testing.assert_close(out, _naive_translate(x, sy, sx), rtol=0, atol=0)
    assert torch.all(out[3, :, 1:] == 0)  # shifted by 7 of 8 rows: only row 0 survives
    assert torch.all(out[1, :, :, :2] == 0)


def test_random_translation_shifts_cover_exactly_the_allowed_range():
    n, h = 600, 32
    x = _ramp(n, 1, h, h)
    out = augment.random_translation(x, torch.Generator().manual_seed(1))
    s = augment.max_shift(h)
    seen_y, seen_x = set(), set()
    for b in range(n):
        nz = out[b, 0].nonzero()
        i, j = nz[0].tolist()
        code = int(out[b, 0, i, j].item()) - 1
        seen_y.add(code // h - i)
        seen_x.add(code % h - j)
    assert seen_y == set(range(-s, s + 1))
    assert seen_x == set(range(-s, s + 1))


def test_random_translation_is_seeded_and_per_sample():
    x = _ramp(8, 1, 16, 16)
    a = augment.random_translation(x, torch.Generator().manual_seed(3))
    b = augment.random_translation(x, torch.Generator().manual_seed(3))
    c = augment.random_translation(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len({tuple(s.flatten().tolist()) for s in a}) > 1


def test_translation_is_differentiable():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    sy, sx = torch.tensor([2, -1]), torch.tensor([0, 3])
    augment.translate(x, sy, sx).sum().backward()
    want = _naive_translate(torch.ones(2, 3, 8, 8), -sy, -sx)  # which inputs were used
    torch.testing.assert_close(x.grad, want)


def test_policy_parsing():
    assert augment.parse_policy(True) == ("translation",)
    assert augment.parse_policy(False) == ()
    assert augment.parse_policy("") == ()
    assert augment.parse_policy("translation") == ("translation",)
    with pytest.raises(SketchganError, match="train.augment"):
        augment.parse_policy("color,translation")
    x = torch.randn(1, 1, 4, 4)
    assert augment.diff_augment(x, (), None) is x
