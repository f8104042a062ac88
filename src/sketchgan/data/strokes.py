"""Hand-drawn sketches of world scenes: the stand-in for the authors' "by_author" sketch sets.

The paper's user sketches are drawn by people, not extracted by PhotoSketch, and that domain gap
is part of what the method must bridge. Sketches here are therefore drawn from the object's
outline the way a person would: a few pen strokes split at corners, lines that cross past the
corners (overshoot) or stop just short (gaps), a slow wobble, pressure-varying thickness and
the occasional retraced stroke, all on a slightly misplaced copy of the shape (the hand is not
a ruler). Geometry is scaled with the image, so a 256 px sketch looks like a 32 px one, only
finer; every deviation stays within a few per cent of the image side of the true contour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sketchgan.data.world import shape_outlines
from sketchgan.errors import SketchganError

SMOOTH_SHAPES = frozenset({"ellipse"})  # no corners: strokes break anywhere on the loop


@dataclass(frozen=True)
class StrokeStyle:
    """How unsteady the hand is; lengths are fractions of the image side unless noted."""

    jitter_shift: float = 0.015  # whole-shape misplacement
    jitter_rotate_deg: float = 3.0
    jitter_scale: float = 0.03
    overshoot: tuple[float, float] = (0.02, 0.05)  # line runs past a corner
    gap: tuple[float, float] = (0.008, 0.025)  # line stops short
    wobble: tuple[float, float] = (0.001, 0.004)  # slow sideways drift amplitude
    bow: float = 0.006  # largest bulge of a long straight stroke
    corner_break_p: float = 0.6  # pen lifted at a corner
    overshoot_p: float = 0.6
    gap_p: float = 0.25
    retrace_p: float = 0.2  # stroke drawn twice
    width_px_at_64: float = 1.3  # stroke width at 64 px (and below); grows as size**0.75 above


DEFAULT_STYLE = StrokeStyle()


# --------------------------------------------------------------------------- polyline tools
def _resample_closed(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Dense points every ``step`` px along a closed outline; also arc positions of its vertices."""
    closed = np.vstack([points, points[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    length = float(arc[-1])
    s = np.arange(0.0, length, step)
    dense = np.stack([np.interp(s, arc, closed[:, 0]), np.interp(s, arc, closed[:, 1])], axis=1)
    return dense, arc[:-1], length


def _loop_points(dense: np.ndarray, step: float, a0: float, a1: float) -> np.ndarray:
    """Points of the closed dense loop between arc positions a0 < a1 (may wrap around)."""
    n = len(dense)
    idx = np.arange(math.floor(a0 / step), math.ceil(a1 / step) + 1) % n
    return dense[idx]


def _tangent(points: np.ndarray, at_end: bool, span: int = 4) -> np.ndarray:
    seg = points[-1] - points[-1 - span] if at_end else points[0] - points[span]
    norm = np.linalg.norm(seg)
    return seg / norm if norm > 1e-9 else np.zeros(2)


def _extend(points: np.ndarray, length: float, step: float, at_end: bool) -> np.ndarray:
    """Straight continuation along the end tangent: the overshoot past a corner."""
    span = min(4, len(points) - 1)
    if span < 1 or length <= 0:
        return points
    direction = _tangent(points, at_end, span)
    ts = np.arange(step, length + 1e-9, step)[:, None]
    if at_end:
        return np.vstack([points, points[-1] + ts * direction])
    return np.vstack([(points[0] + ts * direction)[::-1], points])


def _smooth(points: np.ndarray, window: int) -> np.ndarray:
    """Moving average: rounds corners a hand does not stop at."""
    if window < 2 or len(points) <= window:
        return points
    kernel = np.ones(window) / window
    pad = window // 2
    padded = np.pad(points, ((pad, window - 1 - pad), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(2)], axis=1)


def _normals(points: np.ndarray) -> np.ndarray:
    tang = np.gradient(points, axis=0)
    norm = np.linalg.norm(tang, axis=1, keepdims=True)
    tang = tang / np.maximum(norm, 1e-9)
    return np.stack([-tang[:, 1], tang[:, 0]], axis=1)


# --------------------------------------------------------------------------- one sketch
def _jitter_outline(points: np.ndarray, size: int, rng: np.random.Generator, st: StrokeStyle):
    centre = points.mean(axis=0)
    ang = math.radians(rng.uniform(-st.jitter_rotate_deg, st.jitter_rotate_deg))
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    scale = 1.0 + rng.uniform(-st.jitter_scale, st.jitter_scale)
    shift = rng.uniform(-st.jitter_shift, st.jitter_shift, 2) * size
    return (points - centre) @ rot.T * scale + centre + shift


def _break_positions(corners: np.ndarray, length: float, smooth: bool, rng, st) -> np.ndarray:
    """Arc positions where the pen is lifted (sorted, at least one)."""
    if smooth:
        k = int(rng.integers(1, 3))
        return np.sort(rng.uniform(0.0, length, k))
    chosen = corners[rng.random(len(corners)) < st.corner_break_p]
    if chosen.size == 0:
        chosen = corners[[int(rng.integers(len(corners)))]]
    return np.sort(chosen)


def _end_change(size: int, rng, st: StrokeStyle) -> float:
    """Signed change of a stroke end: positive overshoots, negative leaves a gap."""
    u = rng.random()
    if u < st.overshoot_p:
        return rng.uniform(*st.overshoot) * size
    if u < st.overshoot_p + st.gap_p:
        return -rng.uniform(*st.gap) * size
    return 0.0


def _stroke_path(dense, step, a0, a1, ends, smooth) -> np.ndarray:
    """Points of one stroke from arc a0 to a1 with its two end changes applied."""
    d0, d1 = ends
    if smooth:  # on a curve the overshoot continues along the loop (overlapping strokes)
        return _loop_points(dense, step, a0 - d0, a1 + d1)
    pts = _loop_points(dense, step, a0 - min(d0, 0.0), a1 + min(d1, 0.0))
    pts = _extend(pts, max(d0, 0.0), step, at_end=False)
    return _extend(pts, max(d1, 0.0), step, at_end=True)


def _wobble(points: np.ndarray, size: int, step: float, rng, st: StrokeStyle) -> np.ndarray:
    """Slow sideways drift plus a slight bow, as a hand makes on a long line."""
    n = len(points)
    s = np.arange(n) * step
    offset = np.zeros(n)
    for _ in range(2):
        wavelength = rng.uniform(0.6, 1.2) * size
        offset += (
            rng.uniform(*st.wobble)
            * size
            * np.sin(2 * np.pi * s / wavelength + rng.uniform(0, 2 * np.pi))
        )
    bow = rng.uniform(-1, 1) * st.bow * size * min(1.0, n * step / (0.5 * size))
    offset += bow * np.sin(np.pi * np.linspace(0, 1, n))
    return points + offset[:, None] * _normals(points)


def _widths(n: int, base: float, rng) -> np.ndarray:
    """Stroke radius along the stroke: pressure builds up and eases off at the ends."""
    t = np.linspace(0.0, 1.0, n)
    pressure = rng.uniform(0.8, 1.25)
    return 0.5 * base * pressure * (0.55 + 0.45 * np.sqrt(np.sin(np.pi * t)))


def _splat(ink: np.ndarray, points: np.ndarray, radii: np.ndarray, darkness: float) -> None:
    """Max-composite anti-aliased discs along the stroke into ``ink`` (H, W) in place."""
    size = ink.shape[0]
    for start in range(0, len(points), 64):
        p, r = points[start : start + 64], radii[start : start + 64]
        reach = float(r.max()) + 1.0
        x0, y0 = np.floor(p.min(axis=0) - reach).astype(int)
        x1, y1 = np.ceil(p.max(axis=0) + reach).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        dist = np.sqrt(
            (xs[None] - p[:, 0, None, None]) ** 2 + (ys[None] - p[:, 1, None, None]) ** 2
        )
        cover = np.clip(r[:, None, None] + 0.5 - dist, 0.0, 1.0).max(axis=0) * darkness
        np.maximum(ink[y0:y1, x0:x1], cover, out=ink[y0:y1, x0:x1])


def _draw_one(outline: np.ndarray, smooth: bool, size: int, rng, st: StrokeStyle) -> np.ndarray:
    step = 0.25 * max(1.0, size / 64.0)
    width = st.width_px_at_64 * max(1.0, size / 64.0) ** 0.75
    points = _jitter_outline(outline, size, rng, st)
    dense, corners, length = _resample_closed(points, step)
    breaks = _break_positions(corners, length, smooth, rng, st)
    ink = np.zeros((size, size), np.float32)
    round_window = max(2, int(0.02 * size / step))
    for j, a0 in enumerate(breaks):
        a1 = breaks[j + 1] if j + 1 < len(breaks) else breaks[0] + length
        ends = (_end_change(size, rng, st), _end_change(size, rng, st))
        path = _stroke_path(dense, step, a0, a1, ends, smooth)
        if len(path) < 3:
            continue
        passes = 2 if rng.random() < st.retrace_p else 1
        for k in range(passes):
            stroke = _wobble(_smooth(path, round_window), size, step, rng, st)
            darkness = rng.uniform(0.75, 1.0) * (0.7 if k else 1.0)
            _splat(ink, stroke, _widths(len(stroke), width, rng), darkness)
    return np.rint(255.0 * (1.0 - ink)).astype(np.uint8)


def hand_drawn_sketches(
    attrs: pd.DataFrame, size: int = 32, seed: int = 0, style: StrokeStyle = DEFAULT_STYLE
) -> np.ndarray:
    """Dark pen strokes on white, uint8 (N, H, W), one per scene record; deterministic by seed."""
    outlines = shape_outlines(attrs, size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise SketchganError(f"seed: must be an integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    shapes = attrs["shape"].to_numpy()
    out = np.empty((len(attrs), size, size), np.uint8)
    for i, outline in enumerate(outlines):
        out[i] = _draw_one(outline, shapes[i] in SMOOTH_SHAPES, size, rng, style)
    return out
