"""The embedded world: procedural scenes whose ground truth (shape, pose, appearance) is known.

Real experiments need LSUN, pretrained weights and the authors' sketches, none of which can be
downloaded here. This world replaces them with scenes a small StyleGAN2 learns in minutes on a
CPU: one bold object (five shape classes) on a smooth background. Because every scene comes with
its attribute record, "does the fine-tuned generator draw the sketched pose?" becomes a question
with an exact answer (``matches_target``) instead of a judgement.

Geometry is rendered from signed distances in pixel units: coverage ``clip(0.5 - d, 0, 1)``
anti-aliases the silhouette without supersampling, and the exact contour is the band ``|d| < w``
around the same zero level set, so the contour always sits on the object's mask boundary.

Coordinates: ``cx``/``cy`` are fractions of the image width/height measured from the top-left
corner; ``scale`` is the object's size as a fraction of the image side; ``rotation`` is in degrees,
counter-clockwise on screen; ``aspect`` = width/height of the stretched shape (area preserved).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from sketchgan.errors import SketchganError

SHAPES: tuple[str, ...] = ("ellipse", "box", "triangle", "star", "cross")
TEXTURES: tuple[str, ...] = ("flat", "stripes", "dots", "gradient")
POSE_FIELDS: tuple[str, ...] = ("cx", "cy", "scale", "rotation", "aspect")

# Ranges of the unconditioned world. The rotation range is 72 degrees wide on purpose: 72 is the
# smallest rotational symmetry period of any shape (the star at aspect 1), so inside this range
# two different pose records never draw the same silhouette (circles excepted, see below).
# Aspect is sampled log-uniformly so that "wide" and "tall" are equally likely.
WORLD_RANGES: dict[str, tuple[float, float]] = {
    "cx": (0.35, 0.65),
    "cy": (0.35, 0.65),
    "scale": (0.35, 0.65),
    "rotation": (-36.0, 36.0),
    "aspect": (0.65, 1.55),
}

# Rotation period (degrees) of each shape once stretched by aspect != 1: stretching keeps only
# the 180-degree symmetry of ellipse, box and cross, and none of the triangle's or star's.
SYMMETRY_PERIOD: dict[str, float] = {
    "ellipse": 180.0,
    "box": 180.0,
    "triangle": 360.0,
    "star": 360.0,
    "cross": 180.0,
}
# An ellipse this close to a circle has no visible rotation; matches_target ignores it.
CIRCLE_ASPECT = 1.1

APPEARANCE_COLUMNS: tuple[str, ...] = (
    "obj_r", "obj_g", "obj_b", "texture", "tex_r", "tex_g", "tex_b", "tex_freq", "tex_angle",
    "tex_phase", "bg_r", "bg_g", "bg_b", "bg2_r", "bg2_g", "bg2_b", "bg_angle", "bg_noise_amp",
    "bg_noise_seed",
)  # fmt: skip
ATTRIBUTE_COLUMNS: tuple[str, ...] = ("shape", *POSE_FIELDS, *APPEARANCE_COLUMNS)

MIN_CONTRAST = 0.3  # luminance gap between object and background (bold, learnable scenes)
_NOISE_GRID = 4  # low-frequency background noise: a 4x4 lattice per channel, smoothly upsampled
_PIXEL_BUDGET = 2_000_000  # pixels per rendering chunk: keeps temporaries ~10 MB each

# Canonical outlines (math frame: y up, centred, overall extent about 1 before scaling).
_STAR_POINTS = 5
_ELLIPSE_POINTS = 64


def _regular(n: int, radius: float, start_deg: float = 90.0) -> np.ndarray:
    angles = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    outer = _regular(_STAR_POINTS, 0.55)
    inner = _regular(_STAR_POINTS, 0.24, 90.0 + 180.0 / _STAR_POINTS)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _cross(arm: float = 0.5, half_width: float = 0.17) -> np.ndarray:
    a, w = arm, half_width
    return np.array(
        [(w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w),
         (-w, -w), (-w, -a), (w, -a), (w, -w), (a, -w), (a, w)]
    )  # fmt: skip


CANONICAL_OUTLINES: dict[str, np.ndarray] = {
    "ellipse": _regular(_ELLIPSE_POINTS, 0.5, 0.0),
    "box": np.array([(0.42, 0.42), (-0.42, 0.42), (-0.42, -0.42), (0.42, -0.42)]),
    "triangle": _regular(3, 0.55),
    "star": _star(),
    "cross": _cross(),
}
ELLIPSE_SEMI_AXIS = 0.5


# --------------------------------------------------------------------------- target spec
@dataclass(frozen=True)
class TargetSpec:
    """The pose a user sketches: one shape class and a closed range per pose attribute."""

    shape: str
    cx: tuple[float, float]
    cy: tuple[float, float]
    scale: tuple[float, float]
    rotation: tuple[float, float]
    aspect: tuple[float, float]

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "prepare.target") -> TargetSpec:
        """Validate a params mapping; a missing pose field means "any value in the world"."""
        if not isinstance(d, dict):
            raise SketchganError(f"params: '{where}' must be a mapping, got {d!r}")
        unknown = sorted(set(d) - {"shape", *POSE_FIELDS})
        if unknown:
            raise SketchganError(f"params: '{where}.{unknown[0]}' is not a target field")
        shape = d.get("shape")
        if shape not in SHAPES:
            raise SketchganError(f"params: '{where}.shape' must be one of {SHAPES}, got {shape!r}")
        ranges = {
            f: _parse_range(d.get(f, WORLD_RANGES[f]), f"{where}.{f}", f) for f in POSE_FIELDS
        }
        return cls(shape=shape, **ranges)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, so the spec can go to YAML/JSON/MLflow params unchanged."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _parse_range(value: Any, where: str, field: str) -> tuple[float, float]:
    if isinstance(value, bool):
        raise SketchganError(f"params: '{where}' must be [lo, hi], got {value!r}")
    if isinstance(value, (int, float)):
        value = (value, value)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
    ):
        raise SketchganError(f"params: '{where}' must be [lo, hi] (two numbers), got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise SketchganError(f"params: '{where}' must be finite, got {value!r}")
    if lo > hi:
        raise SketchganError(f"params: '{where}' is empty: lo {lo} > hi {hi}")
    wlo, whi = WORLD_RANGES[field]
    if lo < wlo or hi > whi:
        raise SketchganError(
            f"params: '{where}' = [{lo}, {hi}] lies outside the world's range [{wlo}, {whi}]"
        )
    return lo, hi


# --------------------------------------------------------------------------- sampling
def _uniform(rng: np.random.Generator, lo: float, hi: float, n: int, log: bool = False):
    if log:
        return np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return rng.uniform(lo, hi, n)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB (all in [0, 1]); returns (n, 3)."""
    k = np.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], axis=1)
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _sample_colours(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Object/background colours with a guaranteed luminance gap (rejection sampling)."""
    bg = np.empty((n, 3))
    obj = np.empty((n, 3))
    todo = np.arange(n)
    while todo.size:
        m = todo.size
        dark = rng.random(m) < 0.4
        bg_v = np.where(dark, rng.uniform(0.10, 0.35, m), rng.uniform(0.72, 0.95, m))
        bg_c = _hsv_to_rgb(rng.random(m), rng.uniform(0.0, 0.5, m), bg_v)
        obj_c = _hsv_to_rgb(rng.random(m), rng.uniform(0.45, 1.0, m), rng.uniform(0.3, 1.0, m))
        ok = np.abs(_luminance(obj_c) - _luminance(bg_c)) >= MIN_CONTRAST
        bg[todo[ok]], obj[todo[ok]] = bg_c[ok], obj_c[ok]
        todo = todo[~ok]
    # Second background colour for the gradient: a nearby shade, so contrast survives.
    shift = rng.uniform(-0.12, 0.12, (n, 1)) + rng.uniform(-0.04, 0.04, (n, 3))
    bg2 = np.clip(bg + shift, 0.0, 1.0)
    # Texture colour moves away from the background: texture never weakens the silhouette.
    lighter = _luminance(obj) > _luminance(bg)
    mix = rng.uniform(0.35, 0.55, (n, 1))
    tex = np.where(lighter[:, None], obj + (1 - obj) * mix, obj * (1 - mix))
    return {"obj": obj, "tex": tex, "bg": bg, "bg2": bg2}


def _sample_pose(n: int, rng: np.random.Generator, target: TargetSpec | None) -> dict:
    ranges = WORLD_RANGES if target is None else {f: getattr(target, f) for f in POSE_FIELDS}
    if target is None:
        shapes = np.asarray(SHAPES, dtype=object)[rng.integers(0, len(SHAPES), n)]
    else:
        shapes = np.full(n, target.shape, dtype=object)
    pose = {"shape": shapes}
    for f in POSE_FIELDS:
        pose[f] = _uniform(rng, *ranges[f], n, log=(f == "aspect"))
    return pose


def sample_attributes(
    n: int, rng: np.random.Generator, target: TargetSpec | None = None
) -> pd.DataFrame:
    """Draw ``n`` scene records; with a target, the pose is drawn inside its ranges.

    Appearance is drawn from the same distribution with or without a target (independent of pose),
    so an evaluation set of target scenes differs from the unconditioned world only in pose.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise SketchganError(f"sample_attributes: count must be an integer >= 0, got {n!r}")
    n = int(n)
    pose = _sample_pose(n, rng, target)
    col = _sample_colours(n, rng)
    texture = np.asarray(TEXTURES, dtype=object)[rng.integers(0, len(TEXTURES), n)]
    data: dict[str, Any] = dict(pose)
    for prefix, key in (("obj", "obj"), ("tex", "tex"), ("bg", "bg"), ("bg2", "bg2")):
        for i, ch in enumerate("rgb"):
            data[f"{prefix}_{ch}"] = col[key][:, i]
    data["texture"] = texture
    data["tex_freq"] = rng.uniform(1.5, 2.5, n)
    data["tex_angle"] = rng.uniform(0.0, 180.0, n)
    data["tex_phase"] = rng.uniform(0.0, 2 * math.pi, n)
    data["bg_angle"] = rng.uniform(0.0, 360.0, n)
    data["bg_noise_amp"] = rng.uniform(0.02, 0.07, n)
    data["bg_noise_seed"] = rng.integers(0, 2**31 - 1, n, dtype=np.int64)
    return pd.DataFrame(data, columns=list(ATTRIBUTE_COLUMNS))


# --------------------------------------------------------------------------- geometry
def _check_attrs(attrs: pd.DataFrame, columns: tuple[str, ...]) -> None:
    if not isinstance(attrs, pd.DataFrame):
        raise SketchganError(f"attrs: expected a pandas DataFrame, got {type(attrs).__name__}")
    missing = [c for c in columns if c not in attrs.columns]
    if missing:
        raise SketchganError(f"attrs: missing column '{missing[0]}'")
    bad = sorted(set(attrs["shape"]) - set(SHAPES))
    if bad:
        raise SketchganError(f"attrs: unknown shape {bad[0]!r} in column 'shape'")


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 4:
        raise SketchganError(f"size: must be an integer >= 4, got {size!r}")
    return int(size)


def _pose_arrays(attrs: pd.DataFrame, size: int) -> dict[str, np.ndarray]:
    """Pose in pixel units: centre, half-size stretch factors, rotation cos/sin."""
    a = np.sqrt(attrs["aspect"].to_numpy(float))
    s = attrs["scale"].to_numpy(float) * size
    theta = np.deg2rad(attrs["rotation"].to_numpy(float))
    return {
        "cx": attrs["cx"].to_numpy(float) * size,
        "cy": attrs["cy"].to_numpy(float) * size,
        "sx": s * a,
        "sy": s / a,
        "s": s,
        "cos": np.cos(theta),
        "sin": np.sin(theta),
    }


def _to_image(local: np.ndarray, pose: dict[str, np.ndarray]) -> np.ndarray:
    """Canonical outline points (n, K, 2) -> image pixel coordinates (x right, y down)."""
    x = local[..., 0] * pose["sx"][:, None]
    y = local[..., 1] * pose["sy"][:, None]
    c, s = pose["cos"][:, None], pose["sin"][:, None]
    xr, yr = x * c - y * s, x * s + y * c
    return np.stack([pose["cx"][:, None] + xr, pose["cy"][:, None] - yr], axis=-1)


def shape_outlines(attrs: pd.DataFrame, size: int) -> list[np.ndarray]:
    """Closed outline of each scene's object, (K, 2) pixel coordinates (x, y), first point once.

    Polygons give their exact vertices (the rendered silhouette is exactly this polygon); the
    ellipse gives 64 points on its boundary. Used by the hand-drawn stroke renderer.
    """
    _check_attrs(attrs, ("shape", *POSE_FIELDS))
    size = _check_size(size)
    pose = _pose_arrays(attrs, size)
    shapes = attrs["shape"].to_numpy()
    out: list[np.ndarray] = [np.empty((0, 2))] * len(attrs)
    for name in SHAPES:
        idx = np.flatnonzero(shapes == name)
        if idx.size == 0:
            continue
        sub = {k: v[idx] for k, v in pose.items()}
        local = np.broadcast_to(
            CANONICAL_OUTLINES[name], (idx.size, *CANONICAL_OUTLINES[name].shape)
        )
        pts = _to_image(local, sub)
        for j, i in enumerate(idx):
            out[i] = pts[j]
    return out


def _polygon_distance(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Exact signed distance (negative inside) from pixels (P,) to polygons (m, E, 2) -> (m, P)."""
    m, n_edges = verts.shape[:2]
    d2 = np.full((m, px.size), np.inf, np.float32)
    inside = np.zeros((m, px.size), bool)
    for e in range(n_edges):
        ax, ay = verts[:, e, 0:1], verts[:, e, 1:2]
        bx, by = verts[:, (e + 1) % n_edges, 0:1], verts[:, (e + 1) % n_edges, 1:2]
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        qx, qy = wx - ex * t, wy - ey * t
        np.minimum(d2, qx * qx + qy * qy, out=d2)
        # Even-odd crossing rule along +x: robust for the non-convex star and cross.
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_hit = ax + (py - ay) * ex / ey
        inside ^= crosses & (px < x_hit)
    d = np.sqrt(d2)
    return np.where(inside, -d, d)


def _local_coords(px: np.ndarray, py: np.ndarray, pose: dict[str, np.ndarray]):
    """Pixels in the object's rotated frame (math orientation, pixel units), each (m, P)."""
    dx = px - pose["cx"][:, None].astype(np.float32)
    dy = pose["cy"][:, None].astype(np.float32) - py
    c = pose["cos"][:, None].astype(np.float32)
    s = pose["sin"][:, None].astype(np.float32)
    return dx * c + dy * s, -dx * s + dy * c


def _ellipse_distance(lx: np.ndarray, ly: np.ndarray, pose: dict[str, np.ndarray]) -> np.ndarray:
    """First-order signed distance to an ellipse: exact on the boundary, where it matters."""
    a = (ELLIPSE_SEMI_AXIS * pose["sx"])[:, None].astype(np.float32)
    b = (ELLIPSE_SEMI_AXIS * pose["sy"])[:, None].astype(np.float32)
    k0 = np.sqrt((lx / a) ** 2 + (ly / b) ** 2)
    k1 = np.sqrt((lx / (a * a)) ** 2 + (ly / (b * b)) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = k0 * (k0 - 1.0) / k1
    return np.where(k1 > 1e-12, d, -np.minimum(a, b))


def _signed_distance(attrs: pd.DataFrame, size: int, px, py) -> np.ndarray:
    """Signed distance in pixels for every scene of a chunk, (n, P)."""
    pose = _pose_arrays(attrs, size)
    shapes = attrs["shape"].to_numpy()
    dist = np.empty((len(attrs), px.size), np.float32)
    for name in SHAPES:
        idx = np.flatnonzero(shapes == name)
        if idx.size == 0:
            continue
        sub = {k: v[idx] for k, v in pose.items()}
        if name == "ellipse":
            lx, ly = _local_coords(px, py, sub)
            dist[idx] = _ellipse_distance(lx, ly, sub)
        else:
            canon = CANONICAL_OUTLINES[name]
            verts = _to_image(np.broadcast_to(canon, (idx.size, *canon.shape)), sub)
            dist[idx] = _polygon_distance(px, py, verts.astype(np.float32))
    return dist


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.arange(size, dtype=np.float32) + 0.5
    py, px = np.meshgrid(centres, centres, indexing="ij")
    return px.ravel(), py.ravel()


def contour_width(size: int) -> float:
    """Contour line width in pixels: one pixel up to 128 px, then growing with the image."""
    return max(1.0, size / 128.0)


# --------------------------------------------------------------------------- appearance
def _col(attrs: pd.DataFrame, prefix: str) -> np.ndarray:
    return attrs[[f"{prefix}_r", f"{prefix}_g", f"{prefix}_b"]].to_numpy(np.float32)


def _texture_mix(attrs: pd.DataFrame, size: int, px, py) -> np.ndarray:
    """Weight of the texture colour per pixel (n, P), in the object's frame so it moves with it."""
    pose = _pose_arrays(attrs, size)
    lx, ly = _local_coords(px, py, pose)
    s = pose["s"][:, None].astype(np.float32)
    ux, uy = lx / s, ly / s
    ang = np.deg2rad(attrs["tex_angle"].to_numpy(np.float32))[:, None]
    u = ux * np.cos(ang) + uy * np.sin(ang)
    v = -ux * np.sin(ang) + uy * np.cos(ang)
    freq = 2 * np.pi * attrs["tex_freq"].to_numpy(np.float32)[:, None]
    phase = attrs["tex_phase"].to_numpy(np.float32)[:, None]
    kind = attrs["texture"].to_numpy()[:, None]
    stripes = np.clip(0.5 + 1.5 * np.sin(freq * u + phase), 0.0, 1.0)
    dots = np.clip(3.0 * (np.cos(freq * u + phase) * np.cos(freq * v + phase) - 0.3), 0.0, 1.0)
    gradient = np.clip(0.5 + 1.2 * u, 0.0, 1.0)
    mix = np.zeros_like(u)
    mix = np.where(kind == "stripes", stripes, mix)
    mix = np.where(kind == "dots", dots, mix)
    return np.where(kind == "gradient", gradient, mix)


def _hash_uniform(seeds: np.ndarray, count: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1), (n, count), from integer seeds (splitmix64)."""
    x = seeds.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15) + np.arange(
        1, count + 1, dtype=np.uint64
    ) * np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def _upsample_weights(size: int) -> np.ndarray:
    """(size, G) smooth interpolation weights from the noise lattice to pixel centres."""
    pos = (np.arange(size) + 0.5) / size * (_NOISE_GRID - 1)
    knots = np.arange(_NOISE_GRID)
    t = np.clip(1.0 - np.abs(pos[:, None] - knots[None, :]), 0.0, 1.0)
    w = t * t * (3 - 2 * t)  # smoothstep-shaped hat: no visible lattice creases
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _background(attrs: pd.DataFrame, size: int, px, py) -> np.ndarray:
    """Two-colour linear gradient plus low-frequency colour noise, (n, H, W, 3)."""
    n = len(attrs)
    ang = np.deg2rad(attrs["bg_angle"].to_numpy(np.float32))[:, None]
    t = 0.5 + (px / size - 0.5) * np.cos(ang) + (py / size - 0.5) * np.sin(ang)
    t = np.clip(t, 0.0, 1.0)[:, :, None]
    bg1 = _col(attrs, "bg")[:, None, :]
    bg = (bg1 + (_col(attrs, "bg2")[:, None, :] - bg1) * t).reshape(n, size, size, 3)
    seeds = attrs["bg_noise_seed"].to_numpy(np.int64)
    lattice = _hash_uniform(seeds, _NOISE_GRID * _NOISE_GRID * 3).astype(np.float32) * 2 - 1
    lattice = lattice.reshape(n, _NOISE_GRID, _NOISE_GRID, 3)
    w = _upsample_weights(size)
    noise = np.einsum("hg,ngkc,wk->nhwc", w, lattice, w, optimize=True)
    amp = attrs["bg_noise_amp"].to_numpy(np.float32)[:, None, None, None]
    return bg + amp * noise


def _render_chunk(attrs: pd.DataFrame, size: int, grid) -> tuple[np.ndarray, np.ndarray]:
    px, py = grid
    n = len(attrs)
    dist = _signed_distance(attrs, size, px, py)
    alpha = np.clip(0.5 - dist, 0.0, 1.0)[:, :, None]
    mix = _texture_mix(attrs, size, px, py)[:, :, None]
    obj = _col(attrs, "obj")[:, None, :]
    fill = obj + (_col(attrs, "tex")[:, None, :] - obj) * mix
    bg = _background(attrs, size, px, py).reshape(n, -1, 3)
    rgb = bg + (fill - bg) * alpha
    images = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8).reshape(n, size, size, 3)
    ink = np.clip(contour_width(size) / 2 + 0.5 - np.abs(dist), 0.0, 1.0)
    contours = np.rint(255.0 * (1.0 - ink)).astype(np.uint8).reshape(n, size, size)
    return images, contours


def _chunks(n: int, size: int):
    step = max(1, _PIXEL_BUDGET // (size * size))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def render(attrs: pd.DataFrame, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Draw scenes from their records: RGB uint8 (N, H, W, 3) and exact contours uint8 (N, H, W).

    Rendering depends on the record only (no hidden RNG), so a manifest row reproduces its image.
    Contours are dark lines on white covering the silhouette boundary only (no texture edges).
    """
    _check_attrs(attrs, ATTRIBUTE_COLUMNS)
    size = _check_size(size)
    n = len(attrs)
    images = np.empty((n, size, size, 3), np.uint8)
    contours = np.empty((n, size, size), np.uint8)
    grid = _pixel_grid(size)
    for sl in _chunks(n, size):
        images[sl], contours[sl] = _render_chunk(attrs.iloc[sl], size, grid)
    return images, contours


def render_masks(attrs: pd.DataFrame, size: int = 32) -> np.ndarray:
    """Anti-aliased object coverage in [0, 1], float32 (N, H, W): ground truth for checks."""
    _check_attrs(attrs, ("shape", *POSE_FIELDS))
    size = _check_size(size)
    grid = _pixel_grid(size)
    out = np.empty((len(attrs), size, size), np.float32)
    for sl in _chunks(len(attrs), size):
        dist = _signed_distance(attrs.iloc[sl], size, *grid)
        out[sl] = np.clip(0.5 - dist, 0.0, 1.0).reshape(-1, size, size)
    return out


def render_scenes(
    n: int, size: int = 32, seed: int = 0, target: TargetSpec | None = None
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Sample and draw ``n`` scenes; the same seed gives the same bytes."""
    attrs = sample_attributes(n, np.random.default_rng(seed), target)
    images, contours = render(attrs, size)
    return images, contours, attrs


# --------------------------------------------------------------------------- matching
def _rotation_match(rot: np.ndarray, shapes: np.ndarray, lo: float, hi: float, tol: float):
    """Rotation inside [lo, hi] modulo each shape's symmetry period (plus tolerance)."""
    period = np.array([SYMMETRY_PERIOD[s] for s in shapes], dtype=float)
    mid, half = (lo + hi) / 2, (hi - lo) / 2 + tol
    diff = np.mod(rot - mid + period / 2, period) - period / 2
    return (np.abs(diff) <= half + 1e-9) | (half >= period / 2)


def matches_target(attrs: pd.DataFrame, target: TargetSpec, tol: float = 0.0) -> np.ndarray:
    """Which scenes show the target: same shape, every pose attribute inside its range.

    ``tol`` widens each range by that fraction of the world's range width (0.1 = 10 %), for
    "close enough" counts of generated samples. Rotation is compared modulo the shape's symmetry
    period (``SYMMETRY_PERIOD``), and ignored for near-circular ellipses (aspect within
    ``CIRCLE_ASPECT``), whose rotation cannot be seen. Inside ``WORLD_RANGES`` (72 degrees wide)
    the modulo never changes a verdict; it matters only for records from outside the world.
    """
    _check_attrs(attrs, ("shape", *POSE_FIELDS))
    if tol < 0:
        raise SketchganError(f"matches_target: tol must be >= 0, got {tol!r}")
    shapes = attrs["shape"].to_numpy()
    ok = shapes == target.shape
    for f in ("cx", "cy", "scale", "aspect"):
        lo, hi = getattr(target, f)
        pad = tol * (WORLD_RANGES[f][1] - WORLD_RANGES[f][0])
        v = attrs[f].to_numpy(float)
        ok &= (v >= lo - pad - 1e-12) & (v <= hi + pad + 1e-12)
    rlo, rhi = target.rotation
    rpad = tol * (WORLD_RANGES["rotation"][1] - WORLD_RANGES["rotation"][0])
    rot_ok = _rotation_match(attrs["rotation"].to_numpy(float), shapes, rlo, rhi, rpad)
    aspect = attrs["aspect"].to_numpy(float)
    circle = (shapes == "ellipse") & (np.maximum(aspect, 1 / aspect) <= CIRCLE_ASPECT)
    return ok & (rot_ok | circle)
