import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from sketchgan.data.world import (
    APPEARANCE_COLUMNS,
    ATTRIBUTE_COLUMNS,
    MIN_CONTRAST,
    SHAPES,
    TEXTURES,
    WORLD_RANGES,
    TargetSpec,
    matches_target,
    render,
    render_masks,
    render_scenes,
    sample_attributes,
    shape_outlines,
)
from sketchgan.errors import SketchganError

TARGET = {
    "shape": "star",
    "cx": [0.4, 0.5],
    "cy": [0.5, 0.6],
    "scale": [0.5, 0.6],
    "rotation": [-10, 20],
    "aspect": [0.9, 1.2],
}


def _one(shape="ellipse", cx=0.5, cy=0.5, scale=0.5, rotation=0.0, aspect=1.0, **extra):
    """A single scene record with fixed pose and sampled appearance."""
    row = sample_attributes(1, np.random.default_rng(0)).iloc[[0]].copy()
    for k, v in dict(
        shape=shape, cx=cx, cy=cy, scale=scale, rotation=rotation, aspect=aspect, **extra
    ).items():
        row[k] = v
    return row.reset_index(drop=True)


def test_same_seed_same_bytes_and_other_seed_differs():
    a_img, a_con, a_att = render_scenes(16, 32, seed=7)
    b_img, b_con, b_att = render_scenes(16, 32, seed=7)
    c_img, _, _ = render_scenes(16, 32, seed=8)
    assert a_img.tobytes() == b_img.tobytes() and a_con.tobytes() == b_con.tobytes()
    pd.testing.assert_frame_equal(a_att, b_att)
    assert not np.array_equal(a_img, c_img)


def test_records_reproduce_their_images_through_csv(tmp_path):
    images, contours, attrs = render_scenes(12, 32, seed=1)
    attrs.to_csv(tmp_path / "m.csv", index=False)
    again_img, again_con = render(pd.read_csv(tmp_path / "m.csv"), 32)
    assert np.array_equal(images, again_img) and np.array_equal(contours, again_con)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_resolutions_and_dtypes(size):
    images, contours, attrs = render_scenes(3, size, seed=2)
    assert images.shape == (3, size, size, 3) and images.dtype == np.uint8
    assert contours.shape == (3, size, size) and contours.dtype == np.uint8
    assert list(attrs.columns) == list(ATTRIBUTE_COLUMNS)
    # Contours are thin lines on white: mostly white, some dark pixels.
    assert (contours == 255).mean() > 0.8 and (contours < 128).any(axis=(1, 2)).all()


def test_all_shapes_textures_and_ranges_are_sampled():
    attrs = sample_attributes(2000, np.random.default_rng(0))
    assert set(attrs["shape"]) == set(SHAPES) and set(attrs["texture"]) == set(TEXTURES)
    for field, (lo, hi) in WORLD_RANGES.items():
        assert attrs[field].between(lo, hi).all()
        assert attrs[field].min() < lo + 0.05 * (hi - lo) and attrs[field].max() > hi - 0.05 * (
            hi - lo
        )
    lum = np.array([0.299, 0.587, 0.114])
    obj = attrs[["obj_r", "obj_g", "obj_b"]].to_numpy() @ lum
    bg = attrs[["bg_r", "bg_g", "bg_b"]].to_numpy() @ lum
    assert (np.abs(obj - bg) >= MIN_CONTRAST).all()


def test_contours_lie_on_the_mask_boundary():
    _, contours, attrs = render_scenes(60, 32, seed=3)
    # Boundary from an independent 4x finer raster, so sub-pixel star tips are resolved too;
    # border_value=1: where the object leaves the frame there is no outline to draw.
    fine = render_masks(attrs, 128) > 0.5
    for mask, contour in zip(fine, contours, strict=True):
        edge = mask & ~ndimage.binary_erosion(mask, border_value=1)
        boundary = edge.reshape(32, 4, 32, 4).any(axis=(1, 3))
        line = contour < 128
        assert line.any() and boundary.any()
        # Every contour pixel touches the boundary, and the contour covers the whole boundary.
        assert ndimage.distance_transform_edt(~boundary)[line].max() <= 1.0
        assert ndimage.distance_transform_edt(~line)[boundary].max() <= 1.5


def test_object_is_drawn_with_its_colour_at_its_pose():
    row = _one("box", cx=0.4, cy=0.6, scale=0.5, texture="flat")
    image, contour = render(row, 64)
    mask = render_masks(row, 64)[0]
    inside = ndimage.binary_erosion(mask > 0.99, iterations=2)
    want = row[["obj_r", "obj_g", "obj_b"]].to_numpy()[0] * 255
    assert np.abs(image[0][inside] - want).max() <= 1.0
    cy, cx = ndimage.center_of_mass(mask)
    assert abs((cx + 0.5) / 64 - 0.4) < 0.01 and abs((cy + 0.5) / 64 - 0.6) < 0.01
    assert abs(mask.sum() / 64**2 - (0.42 * 2 * 0.5) ** 2) < 0.01  # box side = 0.84 * scale


def test_rotation_is_counter_clockwise_and_aspect_is_width_over_height():
    row = _one("ellipse", scale=0.6, rotation=30.0, aspect=1.5)
    mask = render_masks(row, 128)[0]
    ys, xs = np.nonzero(mask > 0.5)
    cov = np.cov(np.stack([xs, -ys]))  # math frame: y up
    evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, np.argmax(evals)]
    angle = math.degrees(math.atan2(major[1], major[0])) % 180
    assert abs(angle - 30.0) < 2.0
    assert abs(math.sqrt(evals.max() / evals.min()) - 1.5) < 0.05


def test_bigger_scale_covers_more_pixels():
    small = render_masks(_one("triangle", scale=0.35), 64).sum()
    big = render_masks(_one("triangle", scale=0.65), 64).sum()
    assert big / small == pytest.approx((0.65 / 0.35) ** 2, rel=0.05)


def test_target_sampling_always_matches():
    rng = np.random.default_rng(4)
    for shape in SHAPES:
        spec = TargetSpec.from_dict({**TARGET, "shape": shape})
        attrs = sample_attributes(300, rng, spec)
        assert matches_target(attrs, spec).all()
        assert (attrs["shape"] == shape).all()


def test_unconditioned_world_rarely_matches_and_tolerance_widens():
    spec = TargetSpec.from_dict(TARGET)
    attrs = sample_attributes(5000, np.random.default_rng(5))
    hits = matches_target(attrs, spec)
    loose = matches_target(attrs, spec, tol=0.1)
    assert 0 < hits.sum() < 0.02 * len(attrs)
    assert (loose >= hits).all() and loose.sum() > hits.sum()
    assert (attrs.loc[hits, "shape"] == "star").all()


def test_rotation_symmetry_in_matching():
    spec = TargetSpec.from_dict({"shape": "box", "rotation": [10, 20], "aspect": [1.2, 1.3]})
    box = _one("box", rotation=195.0, aspect=1.25)  # same drawing as 15 degrees
    assert matches_target(box, spec).all()
    star = TargetSpec.from_dict({**TARGET, "rotation": [10, 20]})
    turned = _one("star", cx=0.45, cy=0.55, scale=0.55, rotation=195.0, aspect=1.0)
    assert not matches_target(turned, star).any()
    circle = TargetSpec.from_dict(
        {"shape": "ellipse", "rotation": [10, 20], "aspect": [0.95, 1.05]}
    )
    assert matches_target(_one("ellipse", rotation=-30.0, aspect=1.0), circle).all()
    # And the drawing really is the same for the box turned by 180 degrees.
    a = render_masks(_one("box", rotation=15.0, aspect=1.25), 32)
    b = render_masks(_one("box", rotation=195.0, aspect=1.25), 32)
    assert np.abs(a - b).max() < 1e-3


def test_appearance_independent_of_target_pose():
    spec = TargetSpec.from_dict(TARGET)
    world = sample_attributes(3000, np.random.default_rng(6))
    target = sample_attributes(1500, np.random.default_rng(7), spec)
    numeric = [c for c in APPEARANCE_COLUMNS if c not in ("texture", "bg_noise_seed")]
    for col in numeric:
        assert stats.ks_2samp(world[col], target[col]).pvalue > 1e-3, col
    counts = pd.crosstab(
        pd.concat([world["texture"], target["texture"]]), [0] * len(world) + [1] * len(target)
    )
    assert stats.chi2_contingency(counts).pvalue > 1e-3
    # Inside the world, colour does not depend on pose either.
    for pose in ("cx", "scale", "rotation"):
        assert abs(np.corrcoef(world[pose], world["obj_r"])[0, 1]) < 0.08


def test_rendered_colour_statistics_match_between_target_and_world():
    spec = TargetSpec.from_dict(TARGET)
    rng_w, rng_t = np.random.default_rng(8), np.random.default_rng(9)
    world, target = sample_attributes(600, rng_w), sample_attributes(600, rng_t, spec)
    stats_ = []
    for attrs in (world, target):
        images, _ = render(attrs, 32)
        masks = render_masks(attrs, 32) > 0.5
        obj = np.stack([im[m].mean(axis=0) for im, m in zip(images, masks, strict=True)])
        bg = np.stack([im[~m].mean(axis=0) for im, m in zip(images, masks, strict=True)])
        stats_.append((obj.mean(axis=0), bg.mean(axis=0)))
    assert np.abs(stats_[0][0] - stats_[1][0]).max() < 12  # object colour means (0..255)
    assert np.abs(stats_[0][1] - stats_[1][1]).max() < 12  # background colour means


def test_outlines_follow_the_pose():
    row = _one("triangle", cx=0.3, cy=0.7, scale=0.5, rotation=0.0, aspect=1.0)
    (outline,) = shape_outlines(row, 100)
    assert outline.shape == (3, 2)
    apex = outline[np.argmin(outline[:, 1])]  # rotation 0: apex points up (smallest y)
    assert apex == pytest.approx([30.0, 70.0 - 0.55 * 50.0])
    (ellipse,) = shape_outlines(_one("ellipse"), 100)
    assert np.linalg.norm(ellipse - 50.0, axis=1) == pytest.approx(np.full(len(ellipse), 25.0))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"shape": "hexagon"}, "prepare.target.shape"),
        ({"cx": [0.6, 0.4]}, "prepare.target.cx"),
        ({"scale": [0.1, 0.5]}, "prepare.target.scale"),
        ({"rotation": [150, 170]}, "prepare.target.rotation"),
        ({"aspect": [1.0, 3.0]}, "prepare.target.aspect"),
        ({"cy": [0.4]}, "prepare.target.cy"),
        ({"cy": ["a", "b"]}, "prepare.target.cy"),
        ({"cx": [float("nan"), 0.5]}, "prepare.target.cx"),
        ({"scael": [0.4, 0.5]}, "prepare.target.scael"),
    ],
)
def test_target_spec_rejects_bad_fields(change, field):
    with pytest.raises(SketchganError, match=f"'{field}'") as err:
        TargetSpec.from_dict({**TARGET, **change})
    assert "\n" not in str(err.value)


def test_target_spec_defaults_and_round_trip():
    spec = TargetSpec.from_dict({"shape": "cross", "scale": 0.5}, where="t")
    assert spec.scale == (0.5, 0.5) and spec.cx == WORLD_RANGES["cx"]
    assert TargetSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SketchganError, match="'t' must be a mapping"):
        TargetSpec.from_dict(["star"], where="t")


def test_bad_records_and_sizes_are_user_errors():
    attrs = sample_attributes(2, np.random.default_rng(0))
    with pytest.raises(SketchganError, match="missing column 'bg_noise_seed'"):
        render(attrs.drop(columns="bg_noise_seed"), 32)
    bad = attrs.copy()
    bad.loc[0, "shape"] = "blob"
    with pytest.raises(SketchganError, match="unknown shape 'blob'"):
        render(bad, 32)
    with pytest.raises(SketchganError, match="size"):
        render(attrs, 0)
    with pytest.raises(SketchganError, match="count"):
        sample_attributes(-1, np.random.default_rng(0))
