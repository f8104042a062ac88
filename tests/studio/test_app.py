"""The studio page's callbacks without a browser: bad input becomes a message, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_params

from sketchgan.studio.app import Studio, _bar

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    params = tiny_params()
    params["tracking"]["enabled"] = False
    return Studio(params, tmp_path_factory.mktemp("studio_app"))


def _ink() -> np.ndarray:
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[20:100, 60:68, 3] = 255
    return rgba


def test_add_sketch_appends_and_previews(studio):
    sketches, view, msg = studio.add_sketch({"composite": _ink()}, [])
    assert len(sketches) == 1 and view is not None and msg == "1 sketch(es) ready"
    sketches, view, msg = studio.add_sketch({"composite": _ink()}, sketches)
    assert len(sketches) == 2


def test_empty_or_blank_canvas_is_a_message(studio):
    sketches, view, msg = studio.add_sketch({"composite": None}, [])
    assert sketches == [] and view is None and msg.startswith("⚠") and "empty canvas" in msg
    blank = np.zeros((64, 64, 4), np.uint8)
    _, _, msg = studio.add_sketch({"composite": blank}, [])
    assert "blank sketch" in msg


def test_unreadable_upload_is_a_message_and_good_ones_are_kept(studio, tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(255 - _ink()[..., 3]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    sketches, view, msg = studio.upload([str(bad), str(good)], [])
    assert len(sketches) == 1 and "bad.png: not a readable image" in msg


def test_wrong_size_model_is_a_message(studio):
    grid, msg = studio.show_model("world32-stylegan2", 0)  # the zoo is 32 px, these params 16
    assert grid is None and "32 px generator" in msg
    grid, msg = studio.show_model("no-such-model", 0)
    assert grid is None and "not an existing file, a URL or a known name" in msg


def test_customise_without_sketches_says_so(studio):
    out = list(studio.customise([], "world32-stylegan2", 3, 0.7, True, "mapping", 0.15))
    assert len(out) == 1 and "at least one sketch" in out[0][1]


def test_stop_without_a_job(studio):
    assert studio.stop(None) == "nothing is running"


def test_progress_bar_clamps():
    assert "width:100.0%" in _bar(3.0) and "width:0.0%" in _bar(-1)
