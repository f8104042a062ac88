"""Drive the studio page like a user (Playwright): the browser test and
``reports/studio_screenshot.py`` draw with the same hand."""

from __future__ import annotations

import math
from typing import Any

# Debian's Chromium as root in a closed network: no sandbox, no GPU, no background traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def star_points(cx: float, cy: float, r_out: float, r_in: float) -> list[tuple[float, float]]:
    """A closed five-pointed star outline (11 points, the first repeated at the end)."""
    pts = []
    for k in range(11):
        a = -math.pi / 2 + k * math.pi / 5
        r = r_out if k % 2 == 0 else r_in
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def open_page(page: Any, url: str, timeout_ms: int) -> None:
    """Load the page and wait for the canvas and the original model's samples."""
    page.goto(url)
    page.wait_for_selector("#canvas canvas", timeout=timeout_ms)
    page.wait_for_selector("#original img", timeout=timeout_ms)


def draw_star_upper_left(page: Any) -> None:
    """Pick the brush and draw one star in the upper left of the canvas with the mouse, then
    press Add sketch and wait for the page to report the sketch."""
    page.get_by_role("button", name="Brush").click()
    box = page.locator("#canvas canvas").first.bounding_box()
    side = min(box["width"], box["height"]) * 0.82
    x0 = box["x"] + (box["width"] - side) / 2
    y0 = box["y"] + (box["height"] - side) / 2
    pts = star_points(x0 + 0.42 * side, y0 + 0.42 * side, 0.19 * side, 0.08 * side)
    page.mouse.move(*pts[0])
    page.mouse.down()
    for q in pts[1:]:
        page.mouse.move(*q, steps=8)
    page.mouse.up()
    page.click("#add-sketch")
    page.wait_for_function(
        "document.querySelector('#sketch-msg').innerText.includes('sketch(es) ready')",
        timeout=30_000,
    )
