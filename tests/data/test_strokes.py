import numpy as np
import pytest
from scipy import ndimage

from sketchgan.data.strokes import StrokeStyle, hand_drawn_sketches
from sketchgan.data.world import SHAPES, TargetSpec, render, sample_attributes
from sketchgan.errors import SketchganError


def _attrs(n=30, seed=0):
    return sample_attributes(n, np.random.default_rng(seed))


def test_same_seed_same_sketches_other_seed_differs():
    attrs = _attrs(10)
    a = hand_drawn_sketches(attrs, 32, seed=3)
    assert a.dtype == np.uint8 and a.shape == (10, 32, 32)
    assert np.array_equal(a, hand_drawn_sketches(attrs, 32, seed=3))
    assert not np.array_equal(a, hand_drawn_sketches(attrs, 32, seed=4))


@pytest.mark.parametrize("size", [32, 128])
def test_strokes_stay_near_the_exact_contour_and_cover_it(size):
    attrs = _attrs(40, seed=1)
    _, contours = render(attrs, size)
    sketches = hand_drawn_sketches(attrs, size, seed=0)
    unit = size / 32  # deviations are drawn in fractions of the image side
    near = []
    for contour, sketch in zip(contours, sketches, strict=True):
        line, ink = contour < 128, sketch < 128
        assert ink.any()
        dist = ndimage.distance_transform_edt(~line)[ink]
        assert dist.max() <= 4.0 * unit  # overshoots past corners are the farthest strokes
        near.append(np.mean(dist <= 2.0 * unit))
        # The person drew the whole outline: most of the contour has a stroke nearby.
        covered = ndimage.distance_transform_edt(~ink)[line] <= 2.0 * unit
        assert covered.mean() > 0.8
    assert np.mean(near) > 0.97


def test_sketches_are_not_the_contour_extractor_output():
    attrs = _attrs(30, seed=2)
    _, contours = render(attrs, 32)
    sketches = hand_drawn_sketches(attrs, 32, seed=0)
    line, ink = contours < 128, sketches < 128
    iou = (line & ink).sum(axis=(1, 2)) / (line | ink).sum(axis=(1, 2))
    assert np.median(iou) < 0.8  # displaced, wobbly, overshooting strokes
    # Stroke darkness varies (pressure), unlike the uniform exact contours.
    assert np.std(sketches[sketches < 200]) > 10


def test_every_shape_is_drawn_as_dark_strokes_on_white():
    spec_rng = np.random.default_rng(3)
    for shape in SHAPES:
        attrs = sample_attributes(4, spec_rng, TargetSpec.from_dict({"shape": shape}))
        sketches = hand_drawn_sketches(attrs, 64, seed=1)
        white = (sketches == 255).mean(axis=(1, 2))
        assert (white > 0.75).all() and (sketches.min(axis=(1, 2)) < 80).all()


def test_a_steady_hand_draws_closer_to_the_contour():
    attrs = _attrs(20, seed=4)
    _, contours = render(attrs, 64)
    steady = StrokeStyle(
        jitter_shift=0,
        jitter_rotate_deg=0,
        jitter_scale=0,
        overshoot=(0, 0),
        gap=(0, 0),
        wobble=(0, 0),
        bow=0,
        retrace_p=0,
    )
    shaky = StrokeStyle(jitter_shift=0.04, wobble=(0.01, 0.02))

    def mean_dist(style):
        ink = hand_drawn_sketches(attrs, 64, seed=0, style=style) < 128
        return np.mean(
            [
                ndimage.distance_transform_edt(~(c < 128))[k].mean()
                for c, k in zip(contours, ink, strict=True)
            ]
        )

    assert mean_dist(steady) < 0.5 < mean_dist(shaky)


def test_bad_seed_is_a_user_error():
    with pytest.raises(SketchganError, match="seed"):
        hand_drawn_sketches(_attrs(1), 32, seed="x")
