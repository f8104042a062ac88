"""End to end in a real headless browser: draw a star with the mouse, Customise, see the result.

Runs ``sketchgan studio`` as a subprocess in a scratch project (the embedded zoo at 32 px, a
3-iteration customisation) and drives Debian's Chromium through Playwright. Skipped where no
Chromium is installed, unless ``SKETCHGAN_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which
installs it), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import tiny_params

from sketchgan.studio.drive import CHROMIUM_ARGS, draw_star_upper_left, open_page

CHROMIUM = Path(os.environ.get("SKETCHGAN_CHROMIUM", "/usr/bin/chromium"))
ITERS = 3


def _require_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if not CHROMIUM.exists():
        missing.append(str(CHROMIUM))
    try:
        import gradio  # noqa: F401
    except ImportError:
        missing.append("gradio (pip install -e '.[studio]')")
    if missing:
        why = "browser test needs " + ", ".join(missing)
        if os.environ.get("SKETCHGAN_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"studio exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"studio did not answer on {url} in {timeout:.0f} s")


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory):
    _require_browser()
    root = tmp_path_factory.mktemp("studio_e2e")
    params = tiny_params()
    params["prepare"]["size"] = 32  # the embedded zoo's resolution
    params["studio"].update(
        iters=ITERS, sample_every=1, log_every=1, n_reg_images=8, ganspace_samples=200, grid_seeds=4
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the scratch project's own store
    log = (root / "studio.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sketchgan.cli", "studio", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc, 180)
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_draw_customise_and_see_the_result_and_the_mlflow_run(studio_server):
    from playwright.sync_api import sync_playwright

    url, root = studio_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1800})
            open_page(page, url, 60_000)
            draw_star_upper_left(page)
            assert "1 sketch(es) ready" in page.inner_text("#sketch-msg")
            assert page.locator("#preview img").count() == 1
            page.click("#customise")
            page.wait_for_function(
                "document.querySelector('#status').innerText.match(/done at|stopped at|⚠/)",
                timeout=300_000,
                polling=500,
            )
            status = page.inner_text("#status")
            assert f"done at {ITERS}/{ITERS}" in status, status
            page.wait_for_selector("#live-grid img", timeout=30_000)
            page.wait_for_selector("#compare img", timeout=60_000)
            run_id = status.split("MLflow run")[1].split()[0]
        finally:
            browser.close()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["studio.iters"] == str(ITERS)
    assert "g_sketch" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run_id)} >= {"samples", "checkpoint"}
