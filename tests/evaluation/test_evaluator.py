"""World evaluator: target coding, tiny training beats chance, persistence, target match rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sketchgan.data import world
from sketchgan.errors import SketchganError
from sketchgan.evaluation import evaluator

SIZE = 16


@pytest.fixture(scope="module")
def trained(one_thread) -> tuple[evaluator.WorldEvaluator, dict]:
    return evaluator.train_evaluator(
        size=SIZE,
        n_train=2000,
        iters=250,
        batch=32,
        seed=0,
        width=8,
        n_val=400,
        lr=2e-3,
        device="cpu",
    )


def test_encode_decode_roundtrip_is_exact():
    _, _, attrs = world.render_scenes(50, SIZE, seed=3)
    config = evaluator._default_config(SIZE, 8)
    coded = evaluator.encode_targets(attrs, config)
    logits = torch.nn.functional.one_hot(coded["label"], len(world.SHAPES)).float() * 10
    back = evaluator.decode_outputs(logits, coded["reg"], config)
    assert (back["shape"].to_numpy() == attrs["shape"].to_numpy()).all()
    for f in ("cx", "cy", "scale", "rotation", "aspect"):
        np.testing.assert_allclose(back[f], attrs[f], atol=1e-4, err_msg=f)


def test_rotation_code_wraps_at_the_star_symmetry():
    """-36 and +36 degrees draw the same star, so they get the same code."""
    config = evaluator._default_config(SIZE, 8)
    attrs = pd.DataFrame(
        {"shape": ["star", "star"], "cx": 0.5, "cy": 0.5, "scale": 0.5,
         "rotation": [-36.0, 36.0], "aspect": 1.0}
    )  # fmt: skip
    reg = evaluator.encode_targets(attrs, config)["reg"]
    torch.testing.assert_close(reg[0], reg[1], atol=1e-6, rtol=0)


def test_tiny_training_beats_chance(trained):
    _, info = trained
    chance_acc = 1.0 / len(world.SHAPES)
    # Predicting the range centre for a uniform attribute gives MAE = range width / 4.
    chance_cx = (world.WORLD_RANGES["cx"][1] - world.WORLD_RANGES["cx"][0]) / 4
    assert info["val_class_acc"] > 2 * chance_acc
    assert info["val_cx_mae"] < 0.7 * chance_cx
    assert info["val_rotation_mae_deg"] < 18.0  # chance: 18 degrees (uniform over 72)
    assert np.isfinite(info["final_loss"])


def test_predict_attributes_columns_and_resizing(trained):
    model, _ = trained
    images, _, _ = world.render_scenes(6, SIZE * 2, seed=4)  # other size: resized inside
    pred = evaluator.predict_attributes(model, images)
    assert list(pred.columns) == ["shape", "cx", "cy", "scale", "rotation", "aspect", "shape_prob"]
    assert len(pred) == 6 and set(pred["shape"]) <= set(world.SHAPES)
    assert pred["shape_prob"].between(0, 1).all()


def test_target_match_rate_is_higher_on_target_scenes(trained):
    model, _ = trained
    target = world.TargetSpec(
        shape="box", cx=(0.35, 0.65), cy=(0.35, 0.65), scale=(0.35, 0.65),
        rotation=(-36.0, 36.0), aspect=(0.65, 1.55),
    )  # fmt: skip
    on_target, _, _ = world.render_scenes(200, SIZE, seed=5, target=target)
    anything, _, _ = world.render_scenes(200, SIZE, seed=6)
    hit = evaluator.target_match_rate(model, on_target, target)
    base = evaluator.target_match_rate(model, anything, target)
    assert hit["n"] == 200
    assert hit["match_rate"] > base["match_rate"] + 0.2


def test_features_are_penultimate_and_save_load_roundtrip(trained, tmp_path):
    model, _ = trained
    images, _, _ = world.render_scenes(4, SIZE, seed=7)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert model.features(x).shape == (4, evaluator.FEATURE_DIM)
    path = tmp_path / "evaluator.pt"
    evaluator.save_evaluator(model, path)
    loaded = evaluator.load_evaluator(path)
    pd.testing.assert_frame_equal(
        evaluator.predict_attributes(loaded, x), evaluator.predict_attributes(model, x)
    )


def test_bad_checkpoint_and_bad_images_are_user_errors(tmp_path):
    with pytest.raises(SketchganError, match="not found"):
        evaluator.load_evaluator(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"state": {}}, bad)
    with pytest.raises(SketchganError, match="not an evaluator checkpoint"):
        evaluator.load_evaluator(bad)
    model = evaluator.WorldEvaluator(evaluator._default_config(SIZE, 8))
    with pytest.raises(SketchganError, match="images"):
        evaluator.predict_attributes(model, torch.zeros(2, 1, SIZE, SIZE))
