"""The studio's logic without a browser: sketches, settings, the job queue, the Explore views."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_params

from sketchgan.errors import SketchganError
from sketchgan.models.photosketch import ResnetGenerator
from sketchgan.models.stylegan2 import Discriminator, Generator
from sketchgan.studio import core

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
ARCH = dict(size=SIZE, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)


def studio_params() -> dict:
    p = tiny_params()
    p["tracking"]["enabled"] = True
    p["studio"].update(
        iters=4,
        sample_every=2,
        log_every=1,
        n_reg_images=8,
        grid_seeds=3,
        ganspace_samples=64,
        ganspace_components=2,
    )
    return p


def _canvas(star: bool = True, size: int = 128) -> np.ndarray:
    """An RGBA canvas as the Sketchpad returns it: transparent paper, black ink."""
    rgba = np.zeros((size, size, 4), np.uint8)
    if star:
        rgba[30:90, 60:66, 3] = 255  # a vertical bar
        rgba[55:61, 30:96, 3] = 255  # and a horizontal one
    return rgba


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("studio_nets")
    torch.manual_seed(0)
    g = Generator(**ARCH)
    d = Discriminator(SIZE, channel_multiplier=1, channel_max=16)
    gpath = root / "generator.pt"
    torch.save(
        {"g_ema": g.state_dict(), "g": g.state_dict(), "d": d.state_dict(), "config": ARCH}, gpath
    )
    ps = dict(input_nc=3, output_nc=1, ngf=4, n_blocks=1)
    ppath = root / "photosketch.pt"
    torch.save({"state": ResnetGenerator(**ps).state_dict(), "config": ps}, ppath)
    big = {**ARCH, "size": 32}
    g32 = Generator(**big)
    d32 = Discriminator(32, channel_multiplier=1, channel_max=16)
    wrong = root / "generator_32px.pt"
    torch.save(
        {"g_ema": g32.state_dict(), "g": g32.state_dict(), "d": d32.state_dict(), "config": big},
        wrong,
    )
    return {"generator": gpath, "photosketch": ppath, "wrong": wrong}


@pytest.fixture
def customiser(tmp_path, nets):
    c = core.Customiser(studio_params(), tmp_path, nets["photosketch"])
    yield c
    c.close()


# -------------------------------------------------------------------------------- sketches


def test_canvas_becomes_a_model_sketch_like_import_sketches():
    sk = core.canvas_to_sketch(_canvas(), SIZE)
    assert sk.shape == (SIZE, SIZE) and sk.dtype == np.uint8
    assert sk.min() == 0 and sk.max() == 255  # ink and paper (transparent -> white)
    assert sk[SIZE // 2, SIZE // 2] < 128 and sk[0, 0] == 255
    editor_value = {"background": None, "layers": [], "composite": _canvas()}
    assert np.array_equal(core.canvas_to_sketch(editor_value, SIZE), sk)


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "empty canvas"),
        ({"composite": None}, "empty canvas"),
        (_canvas(star=False), "blank sketch"),
        (np.zeros((0, 0)), "not an image"),
    ],
)
def test_bad_canvas_is_one_clear_line(value, message):
    with pytest.raises(SketchganError, match=message) as exc:
        core.canvas_to_sketch(value, SIZE, "canvas")
    assert "\n" not in str(exc.value)


def test_unreadable_upload_names_the_file(tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_text("not a png")
    with pytest.raises(SketchganError, match="scan.png: not a readable image"):
        core.canvas_to_sketch(bad, SIZE, bad.name)


def test_sketches_tensor_range_and_limits():
    sk = core.canvas_to_sketch(_canvas(), SIZE)
    x = core.sketches_tensor([sk, sk])
    assert x.shape == (2, 1, SIZE, SIZE) and x.min() == -1 and x.max() == 1
    with pytest.raises(SketchganError, match="at least one sketch"):
        core.sketches_tensor([])
    with pytest.raises(SketchganError, match="at most 8"):
        core.sketches_tensor([sk] * 9)


def test_preview_is_binarised_and_enlarged():
    sk = core.canvas_to_sketch(_canvas(), SIZE)
    view = core.preview([sk, sk], zoom=4)
    assert view.shape == (4 * (SIZE + 2), 4 * 2 * (SIZE + 2))
    assert set(np.unique(view)) <= {0, 160, 255}
    assert core.preview([]) is None


def test_example_sketches_are_the_target_pose_strokes():
    params = tiny_params()
    ex = core.example_sketches(params, 3)
    assert len(ex) == 3 and ex[0].shape == (SIZE, SIZE)
    assert all((s < 128).any() for s in ex)
    assert np.array_equal(ex[0], core.example_sketches(params, 3)[0])  # deterministic


# -------------------------------------------------------------------------------- settings


def test_settings_are_read_from_params_and_validated():
    p = studio_params()
    assert core.StudioSettings.from_params(p).iters == 4
    bad = copy.deepcopy(p)
    bad["studio"]["itres"] = 3
    with pytest.raises(SketchganError, match="'studio.itres' is not a setting"):
        core.StudioSettings.from_params(bad)
    bad = copy.deepcopy(p)
    del bad["studio"]["port"]
    with pytest.raises(SketchganError, match="'studio.port' is missing"):
        core.StudioSettings.from_params(bad)
    bad = copy.deepcopy(p)
    bad["studio"]["iters"] = 0
    with pytest.raises(SketchganError, match="'studio.iters'"):
        core.StudioSettings.from_params(bad)


def test_params_yaml_has_every_studio_field():
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings = core.StudioSettings.from_params(params)
    assert settings.tune == "mapping"  # the paper's method


# -------------------------------------------------------------------------------- jobs


def _sketches() -> list[np.ndarray]:
    return [core.canvas_to_sketch(_canvas(), SIZE)]


def _settings(customiser, **kw) -> core.RunSettings:
    base = core.default_run_settings(customiser.settings)
    return core.RunSettings(**{**vars(base), **kw})


def test_a_customisation_trains_logs_to_mlflow_and_keeps_a_loadable_model(customiser, nets):
    job = customiser.submit(_sketches(), _settings(customiser), nets["generator"])
    assert customiser.wait(job, 300)
    assert job.status == "done", job.error
    assert job.step == 4 and job.checkpoint.is_file() and job.grid.is_file()
    assert "done at 4/4" in job.summary()
    tuned = core.load_model(job.checkpoint, SIZE)
    original = core.load_model(nets["generator"], SIZE)
    changed = [
        k for k, v in original.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])
    ]
    assert changed and all(k.startswith("style.") for k in changed)  # mapping-only
    from mlflow.tracking import MlflowClient

    from sketchgan import tracking

    tracking.configure(root=customiser.root)
    client = MlflowClient()
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED" and run.data.tags.get("sketchgan.stage") == "studio"
    assert run.info.run_name.startswith(f"studio-{job.id}-mapping-4its")
    assert "g_sketch" in run.data.metrics and run.data.params["studio.tune"] == "mapping"
    artifacts = {a.path for a in client.list_artifacts(job.run_id)}
    assert {"samples", "checkpoint", "inputs"} <= artifacts
    versions = client.search_model_versions(f"name='{tracking.MODEL_PREFIX}{core.MODEL_NAME}'")
    assert any(v.run_id == job.run_id for v in versions)


def test_a_second_customise_waits_in_the_queue_and_the_first_is_untouched(customiser, nets):
    first = customiser.submit(_sketches(), _settings(customiser, iters=6), nets["generator"])
    second = customiser.submit(_sketches(), _settings(customiser, iters=2), nets["generator"])
    assert customiser.position(second) in (1, 2)
    assert customiser.wait(first, 300) and customiser.wait(second, 300)
    assert first.status == second.status == "done"
    assert first.out_dir != second.out_dir and first.checkpoint.is_file()
    assert customiser.position(first) == customiser.position(second) == 0
    assert first.step == 6 and second.step == 2


def test_a_warm_training_process_takes_the_next_job_and_is_replaced(customiser, nets):
    customiser.keep_warm()
    warm = customiser._spare.process
    job = customiser.submit(_sketches(), _settings(customiser, iters=1), nets["generator"])
    assert customiser.wait(job, 120) and job.status == "done", job.error
    assert job.pid == warm.pid  # it trained in the process started ahead of it
    assert customiser._spare is not None and customiser._spare.process.pid != warm.pid
    customiser._spare.process.kill()  # a dead spare is not used: a fresh process takes over
    customiser._spare.process.join(10)
    again = customiser.submit(_sketches(), _settings(customiser, iters=1), nets["generator"])
    assert customiser.wait(again, 120) and again.status == "done", again.error
    spare = customiser._spare.process
    customiser.close()
    assert not spare.is_alive() and customiser._spare is None


def test_stop_keeps_the_model_so_far(customiser, nets):
    job = customiser.submit(_sketches(), _settings(customiser, iters=2000), nets["generator"])
    deadline = time.time() + 120
    while job.step < 2 and time.time() < deadline and not job.finished:
        time.sleep(0.05)
    job.stop.set()
    assert customiser.wait(job, 120)
    assert job.status == "stopped" and 2 <= job.step < 2000
    assert job.checkpoint.is_file() and "stopped at" in job.summary()


def test_wrong_size_generator_fails_with_a_message_and_the_queue_keeps_working(customiser, nets):
    bad = customiser.submit(_sketches(), _settings(customiser, iters=1), nets["wrong"])
    assert customiser.wait(bad, 60) and bad.status == "failed"
    assert "32 px generator" in bad.error and "16 px" in bad.error
    good = customiser.submit(_sketches(), _settings(customiser, iters=1), nets["generator"])
    assert customiser.wait(good, 120) and good.status == "done"


def test_empty_sketch_list_is_refused_before_queueing(customiser, nets):
    with pytest.raises(SketchganError, match="at least one sketch"):
        customiser.submit([], _settings(customiser), nets["generator"])
    assert not customiser.jobs


# -------------------------------------------------------------------------------- explore


def test_explore_views(nets):
    original = core.load_model(nets["generator"], SIZE)
    tuned = copy.deepcopy(original)
    with torch.no_grad():
        tuned.style[1].weight.add_(torch.randn_like(tuned.style[1].weight))
    seeds = [0, 1, 2]
    both = core.side_by_side(original, tuned, seeds, 1.0)
    alone = core.side_by_side(original, None, seeds, 1.0)
    assert both.shape[0] > alone.shape[0] and both.shape[1] == alone.shape[1]
    # alpha 0 is the original, alpha 1 the customised model
    assert np.array_equal(core.interpolated(original, tuned, 0.0, seeds, 1.0), alone)
    top_tuned = core.side_by_side(tuned, None, seeds, 1.0)
    assert np.array_equal(core.interpolated(original, tuned, 1.0, seeds, 1.0), top_tuned)
    settings = core.StudioSettings.from_params(studio_params())
    directions = core.directions_for(original, settings)
    assert np.array_equal(core.ganspace_view(original, directions, [0, 0], seeds, 1.0), alone)
    moved = core.ganspace_view(original, directions, [2.0, 0], seeds, 1.0)
    assert not np.array_equal(moved, alone)
    assert core.samples(original, [5]).shape == (1, 3, SIZE, SIZE)
    assert not torch.equal(core.samples(original, [5]), core.samples(original, [6]))


def test_generator_choices_put_the_embedded_zoo_first():
    names = core.generator_choices()
    assert names[0] == "world32-stylegan2"
