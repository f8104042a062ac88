"""The one training loop: phase intervals, periodic work, the stop rule, the NaN guard."""

from __future__ import annotations

import math

import pytest
import torch

from sketchgan.errors import SketchganError
from sketchgan.training import loop


def test_phases_run_at_their_intervals_and_periodic_work_after_the_count():
    calls: list[tuple[str, int]] = []

    def phase(name):
        return lambda step: calls.append((name, step)) or {name: 1.0}

    periodic = [
        loop.Periodic(2, lambda s: calls.append(("log", s)), True),
        loop.Periodic(0, lambda s: calls.append(("never", s)), False),  # 0 disables
    ]
    training = loop.TrainingLoop(
        lambda step: step,
        [
            loop.Phase("D", 1, phase("D")),
            loop.Phase("R1", 3, phase("R1")),
            loop.Phase("G", 1, phase("G")),
        ],
        periodic,
    )
    end = training.run(0, 5)
    assert end.step == 5 and end.ran == 5 and not end.stopped
    phases = [c for c in calls if c[0] in ("D", "R1", "G")]
    assert [c for c in phases if c[0] == "R1"] == [("R1", 0), ("R1", 3)]  # lazy: 0, 3
    assert phases[:3] == [("D", 0), ("R1", 0), ("G", 0)]  # in order within an iteration
    assert [c for c in calls if c[0] == "log"] == [("log", 2), ("log", 4), ("log", 5)]  # + end
    assert not [c for c in calls if c[0] == "never"]
    assert end.last == {"D": 1.0, "G": 1.0} and math.isfinite(end.seconds)


def test_a_resumed_loop_counts_from_its_start_and_a_stop_ends_it_early():
    seen: list[int] = []
    training = loop.TrainingLoop(
        lambda step: seen.append(step) or step,
        [loop.Phase("D", 1, lambda s: {"x": 0.0})],
        should_stop=lambda step: step >= 6,
    )
    end = training.run(4, 10)
    assert seen == [4, 5] and end.step == 6 and end.ran == 2 and end.stopped


def test_a_non_finite_term_raises_before_the_periodic_work():
    saved: list[int] = []
    training = loop.TrainingLoop(
        lambda step: step,
        [loop.Phase("D", 1, lambda s: {"loss": float("nan") if s == 2 else 1.0})],
        [loop.Periodic(1, saved.append, True)],
        on_nonfinite=lambda step, bad: SketchganError(f"bad {bad} at {step}"),
    )
    with pytest.raises(SketchganError, match=r"bad \['loss'\] at 3"):
        training.run(0, 5)
    assert saved == [1, 2]  # no checkpoint of the broken state


def test_resume_policy_names_the_changed_setting_and_the_way_out(tmp_path):
    from conftest import repo_params

    from sketchgan.training.finetune import FinetuneConfig

    cfg = FinetuneConfig.from_params(repo_params())
    saved = cfg.to_dict()
    loop.check_resume("ckpt", {**saved, "iters": 5, "device": "cuda"}, cfg, 5, "iters", "go")
    with pytest.raises(SketchganError, match=r"ckpt: written with other settings \(lr: 0.1 ->"):
        loop.check_resume("ckpt", {**saved, "lr": 0.1}, cfg, 5, "iters", "go")
    with pytest.raises(SketchganError, match=r"'train\.iters' is 1000 but ckpt is already at 2000"):
        loop.check_resume("ckpt", saved, cfg, 2000, "iters", "go")
    with pytest.raises(SketchganError, match=r"different inputs \(sketches\); go"):
        loop.check_same_inputs("ckpt", {"sketches": "a"}, {"sketches": "b"}, "go")


# ---------------------------------------------------------------------------- the meter


def test_meter_means_each_term_over_the_iterations_that_produced_it():
    meter = loop.Meter({"d": "D_loss", "r1": "r1_penalty", "w": "l_weight"})
    meter.add({"D_loss": torch.tensor(1.0), "r1_penalty": torch.tensor(4.0), "other": 9.0})
    meter.add({"D_loss": 3.0})  # numbers and tensors alike; R1 only on its lazy steps
    means, flags = meter.read()
    assert means == {"d": 2.0, "r1": 4.0} and flags == [] and meter.steps == 2  # no "w"
    # one all-reduce of sums, counts and flags: means over processes, flags summed
    means, flags = meter.read(lambda packed: packed * 2, [1.0])
    assert means == {"d": 2.0, "r1": 4.0} and flags == [2.0]
    saved = meter.state()
    meter.reset()
    assert meter.read()[0] == {} and meter.steps == 0
    meter.load(saved, "ckpt.pt", "start over")
    assert meter.read()[0] == {"d": 2.0, "r1": 4.0} and meter.steps == 2
    with pytest.raises(SketchganError, match=r"ckpt.pt: its loss meter logs other terms; use --x"):
        loop.Meter(["d"]).load(saved, "ckpt.pt", "use --x")


def test_the_loop_feeds_its_meter_every_iteration():
    meter = loop.Meter(["loss", "reg"])
    seen: list[dict[str, float]] = []

    training = loop.TrainingLoop(
        lambda step: float(step),
        [loop.Phase("L", 1, lambda x: {"loss": x}), loop.Phase("reg", 2, lambda x: {"reg": -x})],
        [loop.Periodic(2, lambda _step: seen.append(meter.take()), True)],
        meter=meter,
    )
    training.run(0, 5)
    # intervals {0, 1}, {2, 3}, {4}; reg ran at steps 0, 2, 4
    assert meter.steps == 0  # take() began a new interval each time
    assert seen == [
        {"loss": 0.5, "reg": 0.0},
        {"loss": 2.5, "reg": -2.0},
        {"loss": 4.0, "reg": -4.0},
    ]
