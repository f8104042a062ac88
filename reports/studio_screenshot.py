"""Draw a star in the upper left of a running studio, press Customise, time it, screenshot.

    make studio &    # or: .venv/bin/sketchgan studio
    .venv/bin/python reports/studio_screenshot.py --url http://127.0.0.1:7860 \
        --out reports/figures/studio.png

Drives Debian's Chromium through Playwright like a user: the mouse draws the strokes, the
buttons are clicked. ``--iters N`` overrides the iterations on the advanced panel (default:
the page's own, i.e. ``studio.iters``). Prints the wall time from the click to "done" and
writes it beside the screenshot as JSON (``<out>.json``), for reports/studio.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from sketchgan.studio.drive import CHROMIUM_ARGS, draw_star_upper_left, open_page


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:7860/")
    ap.add_argument("--out", type=Path, default=Path("reports/figures/studio.png"))
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1800})
        open_page(page, args.url, 120_000)
        draw_star_upper_left(page)
        if args.iters is not None:
            page.get_by_text("advanced").click()
            field = page.locator("#iters input[type=number]")
            field.fill(str(args.iters))
            field.press("Enter")
        t0 = time.time()
        page.click("#customise")
        page.wait_for_function(
            "document.querySelector('#status').innerText.match(/done at|stopped at|⚠/)",
            timeout=3_600_000,
            polling=1000,
        )
        seconds = time.time() - t0
        status = page.inner_text("#status")
        page.wait_for_selector("#compare img", timeout=120_000)
        page.wait_for_timeout(3000)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    record = {
        "seconds_click_to_done": round(seconds, 1),
        "status": status,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
