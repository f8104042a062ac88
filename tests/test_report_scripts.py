"""The benchmark scripts behind shipped artefacts: the long pretraining run resumes, the
comparison panel keeps every pixel of the images it enlarges, the speed benchmarks run and
compare like with like."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sketchgan.checkpoints import (
    known_checkpoint,
    load_checkpoint,
    load_finetuned_generator,
    packaged_file,
)
from sketchgan.data.world import TargetSpec
from sketchgan.evaluation.evaluator import load_evaluator
from sketchgan.io import save_grid
from sketchgan.models.stylegan2 import Discriminator
from sketchgan.report import comparison_panel, panel_tile_origin
from sketchgan.runtime import load_params
from sketchgan.training import losses

ROOT = Path(__file__).resolve().parents[1]


def _long_run(out: Path, iters: int) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(ROOT / "reports/pretrain_long.py"),
        "--out",
        str(out),
        "--iters",
        str(iters),
        "--chunk",
        "2",
        "--scenes",
        "64",
        "--n-score",
        "40",
        "--evaluator",
        str(packaged_file("zoo/world32-evaluator.pt")),
        "--over",
        json.dumps({"batch_size": 4, "channel_max": 8, "style_dim": 16}),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)


def test_long_pretraining_run_scores_each_chunk_and_resumes(tmp_path):
    out = tmp_path / "run"
    _long_run(out, 4)
    rows = [json.loads(x) for x in (out / "curve.jsonl").read_text().splitlines()]
    assert [r["it"] for r in rows] == [2, 4]
    assert all(np.isfinite(r["efid"]) for r in rows)
    first = (out / "generator.pt").read_bytes()
    _long_run(out, 4)  # already done: nothing is trained or scored again
    assert len((out / "curve.jsonl").read_text().splitlines()) == 2
    assert (out / "generator.pt").read_bytes() == first
    _long_run(out, 6)  # more iterations continue the same run
    rows = [json.loads(x) for x in (out / "curve.jsonl").read_text().splitlines()]
    assert [r["it"] for r in rows] == [2, 4, 6]
    assert json.loads((out / "settings.json").read_text())["over"]["n_mlp"] == 2


def test_comparison_panel_is_a_nearest_neighbour_enlargement(tmp_path):
    torch.manual_seed(0)
    rows = [("grey", torch.rand(3, 1, 8, 8) * 2 - 1), ("colour", torch.rand(2, 3, 8, 8) * 2 - 1)]
    path = comparison_panel(rows, tmp_path / "panel.png", zoom=4)
    panel = np.asarray(Image.open(path).convert("RGB")).astype(int)
    for r, (_, images) in enumerate(rows):
        for c, img in enumerate(images):
            x0, y0 = panel_tile_origin(r, c, 8, zoom=4)
            block = panel[y0 : y0 + 32, x0 : x0 + 32]
            want = ((img.expand(3, -1, -1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
            assert np.abs(block[::4, ::4] - want).max() <= 1
            assert (block[1::4, 2::4] == block[::4, ::4]).all()  # crisp 4x4 blocks


def test_reference_benchmark_shim_computes_our_resampling_ops():
    """The CPU stand-in for the reference's CUDA ops must compute what they compute (ours are
    tested against the reference's recorded outputs), or the speed comparison is unfair."""
    from sketchgan.models import stylegan2 as sg

    bench = _bench_reference()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    k = sg.make_kernel((1, 3, 3, 1))
    assert torch.allclose(bench._upfirdn2d(x, k, pad=(2, 1)), sg.blur2d(x, k, (2, 1)), atol=1e-6)
    k4 = sg.make_kernel((1, 3, 3, 1), gain=4)
    up = bench._upfirdn2d(x, k4, up=2, pad=(2, 1))
    assert up.shape == (2, 3, 16, 16) and torch.allclose(up, sg.upsample2d(x, k4), atol=1e-6)
    down = bench._upfirdn2d(x, k, down=2, pad=(1, 1))
    assert torch.allclose(down, sg.blur2d(x, k, (1, 1))[:, :, ::2, ::2], atol=1e-6)
    bias = torch.randn(3)
    assert torch.allclose(bench._fused_leaky_relu(x, bias), sg.fused_leaky_relu(x, bias))


def _bench_reference():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ref", ROOT / "reports/bench_reference.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_reference_benchmark_refuses_ops_that_compute_something_else(tmp_path, monkeypatch):
    """Both ways of running the reference on a CPU are checked against our ops before timing;
    the default keeps the reference's own op files and only skips building its CUDA code."""
    import types

    import pytest

    bench = _bench_reference()
    op = types.ModuleType("training.networks.op")
    op.upfirdn2d, op.fused_leaky_relu = bench._upfirdn2d, bench._fused_leaky_relu
    monkeypatch.setitem(sys.modules, "training.networks.op", op)
    bench.check_reference_ops()  # the shim computes ours
    op.fused_leaky_relu = lambda x, bias=None, *a: bench._fused_leaky_relu(x, bias, 0.1)
    with pytest.raises(SystemExit, match="'bias \\+ leaky ReLU' differs"):
        bench.check_reference_ops()

    line = "from torch.utils.cpp_extension import load"
    for name in ("upfirdn2d.py", "fused_act.py"):
        (tmp_path / name).write_text(f"import os\n{line}\nop = load('x', sources=[])\n")
    bench._cpu_only_extensions(tmp_path)
    namespace: dict = {}
    exec((tmp_path / "upfirdn2d.py").read_text(), namespace)  # imports without building
    assert namespace["op"] is None and line not in (tmp_path / "fused_act.py").read_text()
    with pytest.raises(SystemExit, match="its extension import not found"):
        bench._cpu_only_extensions(tmp_path)


def test_finetune_benchmark_prints_a_row_per_setting():
    cmd = [
        sys.executable,
        str(ROOT / "reports/bench_finetune.py"),
        *("--iters", "3", "--warmup", "1", "--threads", "1", "--rows", "default,l_image_0"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:]}
    assert set(rows) == {"default", "l_image_0"}
    assert all(len(v) == 8 and float(v[0]) > 0 for v in rows.values())


def _report_script(name: str):
    """Load a reports/ script as ``python reports/<name>.py`` would: its folder on ``sys.path``
    (the scripts share ``reports/fixed_samples.py``)."""
    if str(ROOT / "reports") not in sys.path:
        sys.path.insert(0, str(ROOT / "reports"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "reports" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixed_samples_are_the_same_samples_whatever_the_chunks():
    """The reports compare each other's numbers as numbers of the same samples: the shared draw
    must be the one each script made before, and the pose must be params.yaml's."""
    from sketchgan.evaluation.sampling import generate_images

    fixed = _report_script("fixed_samples")
    g = load_finetuned_generator(packaged_file("zoo/world32-stylegan2.pt")).eval()
    n = fixed.CHUNK + 7  # a partial last chunk
    imgs = fixed.fixed_seed_samples(g, n)
    assert imgs.shape == (n, 3, 32, 32)
    # the draw the four scripts each wrote out before: bit-identical
    old = [generate_images(g, range(i, min(i + 250, n)), 12345) for i in range(0, n, 250)]
    assert torch.equal(imgs, torch.cat(old))
    # one batch gives the same samples up to float rounding of the batched convolutions; through
    # 8 mapping layers and the synthesis that rounding depends on the CPU's kernels (0 here, over
    # 1e-5 on another x86), so the bound is a quarter of one 8-bit level, far below what another
    # sample would differ by
    one_batch = generate_images(g, range(n), fixed.EVAL_SEED)
    assert torch.allclose(imgs, one_batch, atol=0.25 * 2 / 255, rtol=0)
    assert not torch.equal(imgs[:4], generate_images(g, range(4), fixed.EVAL_SEED + 1))
    params = load_params(ROOT / "params.yaml")
    assert fixed.target_pose() == TargetSpec.from_dict(params["prepare"]["target"])


def test_mapping_capacity_probe_moves_only_the_mapping_towards_the_target():
    cap = _report_script("bench_mapping_capacity")
    torch.manual_seed(0)  # the generator's per-layer noise
    g = load_finetuned_generator(packaged_file("zoo/world32-stylegan2.pt")).train()
    evaluator = load_evaluator(packaged_file("zoo/world32-evaluator.pt")).eval()
    target = TargetSpec.from_dict({"shape": "star", "cx": [0.35, 0.5], "scale": [0.5, 0.65]})
    code = cap.target_code(target, evaluator.config)
    # box centres in the evaluator's [-1, 1] pose code; cy unset = the whole world range
    assert torch.allclose(code, torch.tensor([-0.5, 0.0, 0.5]), atol=1e-6)
    before = {n: p.detach().clone() for n, p in g.named_parameters()}
    opt = torch.optim.Adam(cap.mapping_only(g), lr=0.01, betas=(0.0, 0.99))
    label = list(evaluator.config["shapes"]).index("star")
    z = torch.randn(4, int(g.style_dim), generator=torch.Generator().manual_seed(0))
    losses = [cap.supervised_step(g, evaluator, opt, z, label, code, 10.0) for _ in range(12)]
    moved = {n for n, p in g.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("style.") for n in moved)
    assert moved == {n for n in before if n.startswith("style.")}
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3


def test_sketch_d_signal_ranks_and_scores_in_training_groups():
    sig = _report_script("bench_sketch_d_signal")
    pos = np.array([True, True, False, False])
    assert sig.roc_auc(np.array([3.0, 2.0, 1.0, 0.0]), pos) == 1.0
    assert sig.roc_auc(np.array([0.0, 1.0, 2.0, 3.0]), pos) == 0.0
    assert sig.roc_auc(np.ones(4), pos) == 0.5
    assert np.isnan(sig.roc_auc(np.ones(4), np.zeros(4, bool)))
    zoo = packaged_file("zoo/world32-stylegan2.pt")  # a generator file: its D is iteration 0's
    sketches = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    d, step = sig.load_sketch_d(zoo, zoo)
    assert step == 0
    scores = sig.sketch_d_scores(d, sketches)
    assert scores.shape == (8, 1)
    # groups of the training batch: the first group's scores ignore the second group
    alone = sig.sketch_d_scores(d, sketches[:4])
    assert torch.allclose(scores[:4], alone)
    # a diagnostic D trained without the batch feature is scored without it: each sketch alone
    d1, _ = sig.load_sketch_d(zoo, zoo, stddev_group=1)
    single = torch.cat(
        [sig.sketch_d_scores(d1, sketches[i : i + 1].repeat(4, 1, 1, 1))[:1] for i in range(8)]
    )
    assert torch.allclose(sig.sketch_d_scores(d1, sketches), single, atol=1e-5)
    assert not torch.allclose(scores, sig.sketch_d_scores(d1, sketches), atol=1e-3)


def test_curve_diagnostic_turns_off_only_the_sketch_d_batch_feature(monkeypatch):
    curve = _report_script("bench_finetune_curve")
    # restored after the test: the switch patches the class for the rest of its process
    monkeypatch.setattr(
        losses.GANSketchingObjective, "__init__", losses.GANSketchingObjective.__init__
    )
    curve.set_sketch_d_stddev_group(1)
    torch.manual_seed(0)
    d_sketch, d_image = Discriminator(32, channel_max=8), Discriminator(32, channel_max=8)
    obj = losses.GANSketchingObjective(None, d_sketch, d_image, 0.7, 0.0, 10.0, 16)
    assert (obj.d_sketch.stddev_group, obj.d_image.stddev_group) == (1, 4)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    other = torch.cat([x[:1], -x[1:]])  # same first sample, other batch-mates
    with torch.no_grad():
        assert torch.allclose(d_sketch(x)[0], d_sketch(other)[0], atol=1e-6)
        assert not torch.allclose(d_image(x)[0], d_image(other)[0], atol=1e-4)


class _Brightness(torch.nn.Module):
    """A stand-in sketch D whose score is the mean pixel value: the rankings become known."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


class _GroupSum(torch.nn.Module):
    """A stand-in sketch D that scores every member of a group with the group's total: a
    score that depends on the batch-mates, as minibatch-stddev makes the real D's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).sum().expand(x.shape[0]).unsqueeze(1)


def test_sketch_d_signal_scores_alone_and_among_fixed_batch_mates():
    sig = _report_script("bench_sketch_d_signal")
    d = _GroupSum()
    assert sig.solo_scores(d, _level(1, 2)).flatten().tolist() == [4.0, 8.0]  # 4 copies
    # the first sketch's mates are mates 0-2, the second's 3, 0, 1 (cycling)
    among = sig.among_scores(d, _level(1, 2), _level(10, 20, 30, 40)).flatten().tolist()
    assert among == [61.0, 72.0]


def _level(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()


def test_sketch_d_signal_row_separates_pose_from_rendering():
    sig = _report_script("bench_sketch_d_signal")
    sets = sig.SketchSets(
        samples=_level(0.1, 0.2, -0.5, -0.6),  # generated: all darker than any real scene
        sample_target=np.array([True, False, False, False]),
        sample_shape=np.array([True, True, False, False]),
        user=_level(0.9, 0.7),
        posed_scenes=_level(0.4, 0.6),
        scenes=_level(0.3, 0.8, 0.5, 0.4),  # real: the sketched pose ranks third of four
        scene_target=np.array([False, False, False, True]),
    )
    row = sig.signal_row(_Brightness(), sets)
    assert row["auc_real_vs_generated"] == 1.0
    assert row["auc_target_real_scenes"] == round(1 / 3, 3)
    assert row["auc_target"] == round(2 / 3, 3)
    assert row["auc_shape"] == 1.0 and row["auc_pose_within_shape"] == 0.0
    assert row["score_user_sketches"] == 0.8 and row["score_eval_scenes"] == 0.5
    assert row["score_real_scenes"] == 0.5
    assert row["score_target_samples"] == 0.1 and row["score_target_real_scenes"] == 0.4
    assert row["auc_real_vs_generated_in_target"] == 1.0  # 0.4 (real) above 0.1 (generated)
    # a D without a batch feature scores a sketch the same alone, together or among others
    assert row["score_target_solo"] == row["score_target_samples_together"] == 0.1
    assert row["score_other_solo"] == -0.3 and row["score_user_among_samples"] == 0.8
    assert (row["n_target"], row["n_target_real_scenes"]) == (1, 1)


def test_long_run_figure_carries_rows_of_the_committed_panel_over(tmp_path, monkeypatch):
    """Rows whose grids are gone are read back from the figure itself: every tile of the row
    asked for, at its own size, none of the neighbouring row."""
    mlr = _report_script("mapping_long_run")
    gen = torch.Generator().manual_seed(2)
    rows = [(f"row {r}", torch.rand(8, 3, 32, 32, generator=gen) * 2 - 1) for r in range(3)]
    panel = comparison_panel(rows, tmp_path / "panel.png", zoom=mlr.PANEL_ZOOM)
    monkeypatch.setattr(mlr, "FIGURE", panel)
    sheet = tmp_path / "grid.png"
    save_grid(rows[0][1], sheet, nrow=8)
    got = mlr.figure_rows(["again=panel:1", f"grid={sheet}"])
    assert [label for label, _ in got] == ["again", "grid"]
    assert torch.allclose(got[0][1], rows[1][1], atol=1 / 127.5)  # uint8 quantisation only
    assert not torch.allclose(got[0][1], rows[2][1], atol=0.1)
    assert torch.allclose(got[1][1], rows[0][1], atol=1 / 127.5)


def test_long_run_report_reads_grids_back_and_tables_every_snapshot(tmp_path):
    mlr = _report_script("mapping_long_run")
    images = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sheet = tmp_path / "grid.png"
    save_grid(images, sheet, nrow=4)
    back = mlr.tiles_from_grid(sheet, n=6)
    assert torch.allclose(back, images[:6], atol=1 / 127.5)  # uint8 quantisation only
    log = tmp_path / "s.jsonl"
    row = {"snapshot": 5000, "w_move": 0.1, "target": 0.05, "shape": 0.3, "fid": 300.0}
    row.update(precision=0.04, recall=0.86, colour_spread=0.44, sketch_chamfer=1.75)
    log.write_text("progress 10/10\n" + json.dumps(row) + "\n")
    signal = [{"step": 5000, "auc_target": 0.977}]
    table = mlr.method_table(mlr.read_rows(log), signal)
    assert "| 5,000 | 10 | 10.0% | 5.0% | 30.0% | 300.0 |" in table
    assert table.rstrip().endswith("| 0.977 |")
    curve = [{"it": 0}, {"it": 5000, "target": 0.06, "shape": 0.3, "fid": 290.0}]
    side = mlr.beside_paper_table(mlr.read_rows(log), [(mlr.NO_REG_LABEL, curve, [])])
    # a run measured only by its curve: blank where the curve has no figure
    assert "| without image regularisation | 5,000 |  | 6.0% | 30.0% | 290.0 |  |" in side
    longer = curve + [{"it": 15000, "target": 0.07, "shape": 0.35, "fid": 250.0}]
    measured = [{"snapshot": 15000, "target": 0.07, "shape": 0.35, "fid": 250.0, "w_move": 0.2}]
    side = mlr.beside_paper_table(
        mlr.read_rows(log), [(mlr.NO_REG_LABEL, curve, []), ("rerun", longer, measured)]
    ).splitlines()
    # each run at each count it reached, the paper's first where it has that count
    assert [line.split(" | ")[0:2] for line in side[2:]] == [
        ["| the paper's method", "5,000"],
        ["| without image regularisation", "5,000"],
        ["| rerun", "5,000"],
        ["| rerun", "15,000"],
    ]
    assert "| rerun | 15,000 | 20.0% | 7.0% |" in side[-1]


def test_long_run_refresh_replaces_each_table_by_its_header_in_order():
    mlr = _report_script("mapping_long_run")
    report = "\n".join(
        ["intro", "| a | b |", "|---:|---:|", "| 1 | 2 |", "", "text", "| run | x |"]
        + ["|---|---:|", "| old | 0 |", "more", "| run | x |", "|---|---:|", "| old2 | 0 |"]
    )
    tables = ["| a | b |\n|---:|---:|\n| 3 | 4 |\n| 5 | 6 |\n"]
    tables += [
        "| run | x |\n|---|---:|\n| first | 1 |\n",
        "| run | x |\n|---|---:|\n| second | 2 |\n",
    ]
    fresh = mlr.refresh_tables(report, tables).splitlines()
    assert fresh[:5] == ["intro", "| a | b |", "|---:|---:|", "| 3 | 4 |", "| 5 | 6 |"]
    assert "| first | 1 |" in fresh and "| second | 2 |" in fresh and "text" in fresh
    assert fresh.index("| first | 1 |") < fresh.index("more") < fresh.index("| second | 2 |")
    assert not any("old" in line for line in fresh)
    with pytest.raises(SystemExit, match="more such tables"):
        mlr.refresh_tables(report, tables[:2])


def test_long_run_loss_table_averages_each_interval(tmp_path):
    mlr = _report_script("mapping_long_run")
    cols = ["step", *mlr.LOSS_COLUMNS, "r1_sketch", "seconds"]
    lines = [",".join(cols)]
    for step, value in ((25, 1.0), (50, 3.0), (75, 10.0)):
        lines.append(",".join([str(step)] + [str(value)] * (len(cols) - 1)))
    lines[-1] = lines[-1].replace("10.0", "", 1)  # a blank: the mean of what was logged
    csv_path = tmp_path / "losses.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    table = mlr.loss_table(csv_path, every=50).splitlines()
    assert table[2] == "| 0-50 | " + " | ".join(["2.000"] * len(mlr.LOSS_COLUMNS)) + " |"
    assert table[3].startswith("| 50-75 |  | 10.000 |")  # the partial last interval as run


def test_the_committed_long_run_is_the_paper_default_and_loads_safely():
    """reports/mapping_long_run/paper_run continues with bench_finetune_curve.py: it must be the
    params.yaml default (the paper's method), not a tuned variant."""
    ckpt = load_checkpoint(ROOT / "reports/mapping_long_run/paper_run/checkpoint.pt")
    default = load_params(ROOT / "params.yaml")["train"]
    method = ("batch", "lr", "g_lr", "l_image", "l_weight", "r1", "d_reg_every", "augment")
    method += ("tune", "sketch_d_init", "mixing")
    assert {k: ckpt["config"][k] for k in method} == {k: default[k] for k in method}
    assert ckpt["step"] >= 25_000
    rows = [json.loads(x) for x in (ROOT / "reports/mapping_long_run/curve.jsonl").open()]
    assert rows[-1]["it"] <= ckpt["step"]


def test_step_efficiency_tells_straight_from_cancelling_and_random_steps():
    eff = _report_script("bench_step_efficiency")
    v = torch.tensor([3.0, 4.0])
    assert eff.efficiency([v] * 10, 10) == 1.0
    assert eff.efficiency([v, -v] * 5, 10) == 0.0
    orthogonal = list(torch.eye(100))  # 100 steps in different directions: 1/sqrt(100)
    assert eff.efficiency(orthogonal, 100) == pytest.approx(0.1, abs=1e-4)
    assert eff.efficiency([v] * 5, 10) is None  # no full block


def test_step_recorder_records_what_the_g_optimiser_changed():
    eff = _report_script("bench_step_efficiency")
    p = torch.nn.Parameter(torch.zeros(3))

    class Trainer:
        g_trained = [p]
        g_optim = torch.optim.SGD([p], lr=0.5)

    rec = eff.StepRecorder()
    rec.attach(Trainer)
    for g in (torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])):
        p.grad = g
        Trainer.g_optim.step()
    assert torch.equal(rec.steps[0], torch.tensor([-0.5, 0.0, 0.0]))
    assert torch.equal(rec.steps[1], torch.tensor([0.0, -1.0, 0.0]))


def test_frozen_discriminators_diagnostic_trains_g_alone(tmp_path, monkeypatch):
    """`"freeze_discriminators": true` continues a run with only its G steps: the Ds (and their
    optimiser) stay bit for bit as the checkpoint left them, while G still moves; with
    `"resume_g_lr"` G's optimiser continues at that lr."""
    from sketchgan.models.photosketch import ResnetGenerator
    from sketchgan.models.stylegan2 import Generator
    from sketchgan.training import finetune as ft

    curve = _report_script("bench_finetune_curve")
    for name in ("phases", "load_shared_state"):  # restored after the test
        monkeypatch.setattr(ft._Trainer, name, getattr(ft._Trainer, name))
    arch = dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
    ps_cfg = dict(input_nc=3, output_nc=1, ngf=4, n_blocks=1)
    torch.manual_seed(0)
    g, d = Generator(**arch), Discriminator(16, channel_multiplier=1, channel_max=16)
    gpath, ppath = tmp_path / "generator.pt", tmp_path / "photosketch.pt"
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict(), "config": arch}, gpath)
    torch.save({"state": ResnetGenerator(**ps_cfg).state_dict(), "config": ps_cfg}, ppath)
    gen = torch.Generator().manual_seed(1)
    sketches = torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1
    images = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1
    settings = dict(batch=2, d_reg_every=2, eval_every=0, sample_every=0, log_every=1)
    cfg = dict(settings, n_sample=2, device="cpu", checkpoint_every=2)
    out = tmp_path / "run"

    def run_to(iters: int) -> dict:
        config = ft.FinetuneConfig.from_params(curve.PARAMS, iters=iters, **cfg)
        ft.finetune(config, gpath, ppath, sketches, images, out, handle_signals=False)
        return load_checkpoint(out / "checkpoint.pt")["shared"]

    def leaves(x) -> list:
        if isinstance(x, dict):
            return [leaf for k in sorted(x, key=str) for leaf in leaves(x[k])]
        if isinstance(x, list | tuple):
            return [leaf for v in x for leaf in leaves(v)]
        return [x]

    def same(a: dict, b: dict, key: str) -> bool:
        pairs = zip(leaves(a[key]), leaves(b[key]), strict=True)
        return all(torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in pairs)

    first = run_to(2)
    second = run_to(4)  # the full method moves the Ds: the check below can fail
    assert not same(first, second, "d_sketch") and not same(first, second, "g")
    diagnostics = {"freeze_discriminators": True, "resume_g_lr": 0.05, "l_image": 0.7}
    assert curve.apply_diagnostics(diagnostics) == {"l_image": 0.7}
    frozen = run_to(6)
    lrs = [st["g_optim"]["param_groups"][0]["lr"] for st in (second, frozen)]
    assert lrs == [curve.PARAMS["train"]["lr"], 0.05]
    assert not same(second, frozen, "g")
    for key in ("d_sketch", "d_image", "d_optim"):
        assert same(second, frozen, key), key


def test_mapping_mobility_moves_further_with_a_steady_gradient():
    mob = _report_script("bench_mapping_mobility")
    style = mob.mapping(16, 2, seed=0)
    z = torch.randn(64, 16)
    with torch.no_grad():
        w0 = style(z)
    assert mob.w_move(style, w0, z) == 0.0
    assert mob.spread(torch.ones(5, 3)) == 0.0  # every z mapped to the same w
    fixed, rel = mob.push(mob.mapping(16, 2, seed=0), [10, 100], coherent=True, seed=1)
    noise, rel_noise = mob.push(mob.mapping(16, 2, seed=0), [10, 100], coherent=False, seed=1)
    assert rel == rel_noise > 0
    assert 0 < fixed[10] < fixed[100] and fixed[100] > 3 * noise[100]


def test_frozen_d_tables_split_the_paper_lr_from_the_fast_g_rows():
    mlr = _report_script("mapping_long_run")
    sample = {"target": 0.1, "shape": 0.4, "fid": 200.0, "colour_spread": 0.45}
    frozen = [
        {"name": "slow", "run": "noreg", "from": 5000, "g_lr": 0.002, "it": 15000, **sample},
        {"name": "fast", "run": "noreg", "from": 5000, "g_lr": 0.1, "it": 5500, **sample},
        {"name": "fast", "run": "noreg", "from": 5000, "g_lr": 0.1, "it": 7000, **sample},
    ]
    trained = {("noreg", 5000): {**sample, "target": 0.036}, ("noreg", 15000): sample}
    slow = mlr.frozen_table(frozen, trained).splitlines()
    assert len(slow) == 3 and slow[2].endswith("| 0.450 | 10.0% | 40.0% | 200.0 |")
    starts = {("noreg", 5000): trained[("noreg", 5000)]}
    fuller = [{"name": "fast", "recall": 0.3, "cx_in_range": 0.9, "cy_in_range": 0.8}]
    fast = mlr.pull_table(frozen, starts, fuller).splitlines()
    assert [r.split(" | ")[2:5] for r in fast[2:]] == [
        ["0", "", "0"],  # the checkpoint's own samples
        ["500", "0.1", "50"],
        ["2,000", "0.1", "200"],
    ]
    assert "3.6%" in fast[2] and fast[3].endswith("|  |  |  |  |")
    assert fast[4].endswith("| 0.300 | 90.0% | 80.0% |  |")  # measured again: the last only


def test_the_committed_long_run_report_is_its_logs():
    """Every table of reports/mapping_long_run.md is what its committed logs generate."""
    mlr = _report_script("mapping_long_run")
    report = (ROOT / "reports/mapping_long_run.md").read_text()
    assert mlr.refresh_tables(report, mlr.all_tables()) == report


@pytest.mark.parametrize(
    "over",
    [
        {"resume_g_lr": "0.1"},
        {"resume_g_lr": 0},
        {"resume_g_lr": True},
        {"freeze_discriminators": "yes"},
        {"sketch_d_stddev_group": 0},
        {"sketch_d_stddev_group": 1.5},
    ],
)
def test_a_bad_diagnostic_override_is_one_line_naming_it(over, monkeypatch):
    from sketchgan.training import finetune as ft

    curve = _report_script("bench_finetune_curve")
    for name in ("phases", "load_shared_state"):  # restored after the test
        monkeypatch.setattr(ft._Trainer, name, getattr(ft._Trainer, name))
    (key,) = over
    with pytest.raises(SystemExit, match=f"diagnostic override '{key}': expected .*, got "):
        curve.apply_diagnostics(over)


def test_deep_mapping_keeps_the_synthesis_and_regresses_the_mapping(tmp_path):
    """The 8-layer copy of a generator changes only the mapping; the regression brings its w
    close to the original's, and the written file loads strictly as a deep generator."""
    from sketchgan.checkpoints import load_generator
    from sketchgan.models.stylegan2 import Generator

    deep_mapping = _report_script("deep_mapping")
    arch = dict(size=8, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=8)
    torch.manual_seed(0)
    shallow = Generator(**arch).eval()
    deep = deep_mapping.deep_copy_of(shallow, arch, 8, seed=0)
    assert deep.n_mlp == 8 and len(deep.style) == 9
    for k, v in shallow.state_dict().items():
        if not k.startswith("style."):
            assert torch.equal(deep.state_dict()[k], v), k
    z = torch.randn(512, 16, generator=torch.Generator().manual_seed(3))
    before = deep_mapping.relative_w_error(deep.style, shallow.style, z)
    assert deep_mapping.relative_w_error(shallow.style, shallow.style, z) == 0.0
    trace = deep_mapping.distil(deep.style, shallow.style, 200, 64, 1.0, seed=1)
    assert trace[-1][0] == 200 and trace[-1][1] < 0.5 * before
    src, out = tmp_path / "g.pt", tmp_path / "deep.pt"
    d = Discriminator(8, channel_multiplier=1, channel_max=8)
    sd = shallow.state_dict()
    torch.save({"g_ema": sd, "g": sd, "d": d.state_dict(), "config": arch}, src)
    cmd = [sys.executable, str(ROOT / "reports/deep_mapping.py"), str(src), str(out)]
    run = subprocess.run([*cmd, "--steps", "40", "--batch", "32"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout)
    assert row["n_mlp"] == 8 and row["w_error"][-1][1] < row["w_error_init"]
    for key in ("g_ema", "g"):
        g, cfg = load_generator(out, key=key)
        assert cfg == {**arch, "n_mlp": 8} and g.n_mlp == 8
    written = load_checkpoint(out)["d"]
    assert all(torch.equal(written[k], v) for k, v in d.state_dict().items())


def test_long_pretraining_run_can_start_from_a_given_generator(tmp_path):
    """`--init` seeds iteration 0 with that file's weights (fresh optimisers), the first chunk
    trains on from them instead of StyleGAN2's init, and a state already there is kept."""
    from sketchgan.models.stylegan2 import Generator
    from sketchgan.training.pretrain import GENERATOR_STATE_FILE

    arch = dict(size=32, style_dim=16, n_mlp=3, channel_multiplier=2, channel_max=8)
    torch.manual_seed(5)
    g = Generator(**arch)
    d = Discriminator(32, channel_multiplier=2, channel_max=8)
    init = tmp_path / "init.pt"
    torch.save(
        {"g_ema": g.state_dict(), "g": g.state_dict(), "d": d.state_dict(), "config": arch}, init
    )
    out = tmp_path / "run"
    over = {"batch_size": 4, "channel_max": 8, "style_dim": 16, "n_mlp": 3}
    long_run = _report_script("pretrain_long")
    x = torch.rand(64, 3, 32, 32) * 2 - 1
    out.mkdir()
    long_run.seed_state(init, long_run.chunk_config({"over": over}, 2), x, out)
    seeded = load_checkpoint(out / GENERATOR_STATE_FILE)
    assert seeded["step"] == 0
    for key, net in (("g", g), ("g_ema", g), ("d", d)):
        for k, v in net.state_dict().items():
            assert torch.equal(seeded[key][k], v), (key, k)
    stamp = (out / GENERATOR_STATE_FILE).read_bytes()
    long_run.seed_state(init, long_run.chunk_config({"over": over}, 2), x, out)
    assert (out / GENERATOR_STATE_FILE).read_bytes() == stamp  # kept: the run resumes

    fresh = tmp_path / "cli"
    cmd = [sys.executable, str(ROOT / "reports/pretrain_long.py"), "--out", str(fresh)]
    cmd += ["--iters", "2", "--chunk", "2", "--scenes", "64", "--n-score", "40", "--init"]
    cmd += [str(init), "--evaluator", str(packaged_file("zoo/world32-evaluator.pt"))]
    subprocess.run([*cmd, "--over", json.dumps(over)], capture_output=True, timeout=300, check=True)
    trained = load_checkpoint(fresh / GENERATOR_STATE_FILE)
    assert trained["step"] == 2
    assert json.loads((fresh / "settings.json").read_text())["init"] == str(init)
    key = "convs.0.conv.weight"
    start, now = g.state_dict()[key], trained["g"][key]
    assert not torch.equal(now, start) and (now - start).abs().max() < 0.1


def test_the_committed_deep_mapping_report_is_its_logs():
    """Every table of reports/deep_mapping.md is what its committed logs generate, and the
    shipped generator's quality row is the zoo's recorded one."""
    dmr = _report_script("deep_mapping_report")
    report = (ROOT / "reports/deep_mapping.md").read_text()
    tables = dmr.all_tables()
    assert len(tables) == 15 and dmr.refresh_tables(report, tables) == report
    quality = known_checkpoint("world32-stylegan2")["provenance"]["quality"]
    assert f"| `world32-stylegan2` | 8 x 128 | {quality['efid']:.2f} |" in report


def test_deep_mapping_curve_table_aligns_runs_by_iteration():
    dmr = _report_script("deep_mapping_report")
    a = [
        {"it": 0, "target": 0.1, "shape": 0.2, "fid": 300.0},
        {"it": 10, "target": 0.5, "shape": 0.6, "fid": 50.0},
    ]
    b = [{"it": 5, "target": 0.3, "shape": 0.4, "fid": 100.0}]
    lines = dmr.curve_table([("a", a), ("b", b)]).strip().splitlines()
    assert lines[0] == "| iterations | a | b |"
    assert lines[2:] == [
        "| 0 | 10.0% / 20.0% / 300.0 |  |",
        "| 5 |  | 30.0% / 40.0% / 100.0 |",
        "| 10 | 50.0% / 60.0% / 50.0 |  |",
    ]


def _snapshot(it: int, fid: float, target: float = 0.6, recall: float = 0.5) -> dict:
    return {
        "snapshot": it,
        "target": target,
        "shape": 0.9,
        "fid": fid,
        "recall": recall,
        "colour_spread": 0.4,
    }


def test_deep_mapping_best_fid_rows_pick_each_runs_minimum_and_check_the_bars():
    """Each run's row is its lowest-FID snapshot (iteration 0 excluded); a finer grid is also
    read on the 2,500 grid; the bars are the issue's, relative to the original's row."""
    dmr = _report_script("deep_mapping_report")
    original = {"snapshot": 0, "fid": 380.0, "recall": 0.8, "colour_spread": 0.4}
    baselines = {"sbir": 300.0, "chamfer": 250.0}
    coarse = [{**original, "target": 0.0, "shape": 0.0}, _snapshot(2500, 90.0, 0.4)]
    coarse.append(_snapshot(5000, 100.0))
    fine = [_snapshot(2500, 80.0), _snapshot(3750, 60.0, 0.3), _snapshot(5000, 70.0)]
    lines = dmr.best_fid_table([("a", "m1", coarse), ("b", "m2", fine)], original, baselines)
    rows = [line.split(" | ") for line in lines.strip().splitlines()[2:]]
    assert [(r[0], r[2], r[3], r[4]) for r in rows[:3]] == [
        ("| a", "2,500", "5,000", "2,500"),
        ("| b", "1,250", "5,000", "3,750"),
        ("| b", "2,500", "5,000", "5,000"),
    ]
    # recall 0.5 < 0.8 x 0.8 and colour 0.4 >= 0.9 x 0.4; target 40% and 30% miss 50%
    assert rows[0][-1] == "3 of 5: shape, FID, colour |"
    assert rows[2][-1] == "4 of 5: target, shape, FID, colour |"
    assert rows[3][:2] == ["| mean ± sd", "2 runs"] and rows[3][5] == "35.0% ± 7.1%"
    assert rows[4][7] == "<= 195.0" and rows[4][8] == ">= 0.640"
    held = dmr.bars_held(_snapshot(1, 196.0), original, baselines)
    assert held["FID"] is False and held["recall"] is False and held["target"] is True


def test_pose_ceiling_keeps_only_the_original_samples_it_names():
    """The ceiling's restricted sets are the original's own samples that pass the evaluator's
    verdict, in sequence order, measured as the reports measure 1,000 samples."""
    from sketchgan.evaluation.sampling import generate_images

    ceiling = _report_script("bench_pose_ceiling")
    g = load_finetuned_generator(packaged_file("zoo/world32-stylegan2.pt")).eval()
    evaluator = load_evaluator(packaged_file("zoo/world32-evaluator.pt")).eval()
    imgs = generate_images(g, range(6), 3)
    # colour spread from mean colours alone is the images' colour spread
    assert np.isclose(ceiling.spread_of(ceiling.mean_colours(imgs)), ceiling.colour_spread(imgs))
    draws, n = 500, 5
    rows = ceiling.ceiling_rows(g, evaluator, imgs.repeat(2, 1, 1, 1), draws, n=n)
    original, shape_only, pose_only, real = rows
    assert original["drawn"] == n and original["n"] == n
    assert shape_only["shape"] == 1.0 and pose_only["target"] == 1.0 and pose_only["shape"] == 1.0
    assert n <= shape_only["drawn"] <= pose_only["drawn"] <= draws
    assert real == {
        "set": "eval scenes (real, target pose)",
        "n": 12,
        "colour_spread": real["colour_spread"],
    }
    judged = ceiling.draw_and_judge(g, evaluator, 250, ceiling.target_pose())
    assert judged["feats"].shape[0] == 250 and judged["target"].dtype == bool
    with pytest.raises(SystemExit, match="only .* of 10000 samples found"):
        ceiling.set_row("x", judged, judged["target"], judged["feats"], 10000)


def test_ideal_coverage_measures_a_set_against_the_originals_own_samples_of_the_pose(tmp_path):
    """The ideal sets are disjoint runs of the original's target-pose samples with their own w;
    a set measured against itself covers it exactly; the judged indices are cached; too few
    draws is one line."""
    cov = _report_script("bench_ideal_coverage")
    g = load_finetuned_generator(packaged_file("zoo/world32-stylegan2.pt")).eval()
    evaluator = load_evaluator(packaged_file("zoo/world32-evaluator.pt")).eval()
    tuned = cov.measured_set(g, evaluator, np.arange(6))
    with torch.no_grad():
        w = g.get_latent(cov.draw_inputs(cov.EVAL_SEED, range(6), int(g.style_dim), [])[0])
    assert np.allclose(tuned["w"], w.numpy()) and tuned["drawn"] == 6
    itself = cov.coverage_row("self", tuned, tuned)
    assert itself["precision"] == itself["recall"] == itself["w_recall"] == 1.0
    assert itself["w_spread_ratio"] == itself["colour_ratio"] == 1.0
    assert cov.w_spread(tuned["w"][:3]) != cov.w_spread(tuned["w"])
    cache = tmp_path / "idx.json"
    idx = cov.cached_target_indices(g, evaluator, 250, cache)
    stored = json.loads(cache.read_text())
    assert stored["draws"] == 250 and stored["indices"] == idx.tolist()
    assert stored["generator"] == cov.weights_digest(g) != stored["evaluator"]
    cache.write_text(json.dumps({**stored, "indices": [3, 7, 9]}))  # read back, not redrawn
    assert cov.cached_target_indices(g, evaluator, 250, cache).tolist() == [3, 7, 9]
    cache.write_text(json.dumps({**stored, "generator": "another", "indices": [3, 7, 9]}))
    assert cov.cached_target_indices(g, evaluator, 250, cache).tolist() == idx.tolist()
    with pytest.raises(SystemExit, match="only 3 of 4 samples found"):
        cov.ideal_sets(g, evaluator, np.array([3, 7, 9]), 2)
    first, second = cov.ideal_sets(g, evaluator, idx, 1)
    assert first["target"].all() and second["target"].all()
    assert first["drawn"] == idx[0] + 1 and second["drawn"] == idx[1] + 1


def test_determinism_digest_tells_bit_identical_weights_apart():
    det = _report_script("bench_determinism")
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert det.weights_digest(a) == det.weights_digest(b)
    with torch.no_grad():
        b.weight[0, 0] = torch.nextafter(b.weight[0, 0], torch.tensor(9.0))  # one ulp
    assert det.weights_digest(a) != det.weights_digest(b)


def test_diversity_factors_read_each_factor_back_with_the_worlds_geometry(tmp_path):
    """On renders read at their true pose, the factors are the scene's own: a flat object's
    colour, a plain background's colour, no texture on a flat object and some on a striped one;
    a set against itself covers every factor exactly; too few draws is one line."""
    import pandas as pd

    from sketchgan.data import world

    factors = _report_script("bench_diversity_factors")
    attrs = world.sample_attributes(
        6, np.random.default_rng(0), TargetSpec.from_dict({"shape": "star"})
    )
    attrs["texture"] = ["flat", "flat", "flat", "stripes", "stripes", "stripes"]
    for ch in "rgb":
        attrs[f"bg2_{ch}"] = attrs[f"bg_{ch}"]
    attrs["bg_noise_amp"] = 0.0
    images, _ = world.render(attrs, 32)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    got = factors.factor_values(x, attrs)
    obj = attrs[["obj_r", "obj_g", "obj_b"]].to_numpy()
    bg = attrs[["bg_r", "bg_g", "bg_b"]].to_numpy()
    assert np.abs(got["object colour"][:3] - obj[:3]).max() < 1 / 255
    assert np.abs(got["background colour"] - bg).max() < 1 / 255
    assert got["texture"][:3].max() < 0.005 < 0.02 < got["texture"][3:].min()
    assert got["pose"].shape == (6, 5)
    with pytest.raises(ValueError, match="no object or no background"):
        factors.factor_values(x, pd.concat([attrs.iloc[:5], attrs.iloc[5:].assign(scale=2.0)]))
    g = load_finetuned_generator(packaged_file("zoo/world32-stylegan2.pt")).eval()
    evaluator = load_evaluator(packaged_file("zoo/world32-evaluator.pt")).eval()
    some = factors.in_pose(g, evaluator, list(range(300)))  # the original: ~2% in the pose
    assert 4 <= len(some["feats"]) == len(some["pose"]) < 30
    some = {**some, "drawn": 300, "n": len(some["feats"])}
    sketches = factors.pose_coords(attrs)
    itself = factors.factor_row("self", some, some, sketches)
    assert itself["recall"] == itself["pose recall"] == itself["texture recall"] == 1.0
    assert itself["background colour spread"] == itself["texture mean"] == 1.0
    assert itself["rotation spread"] == itself["to nearest sketch"] == 1.0
    assert factors.sketch_row(some, some["pose"]) == {
        "set": f"the user's sketches ({len(some['pose'])})",
        **{f"{f} spread": 1.0 for f in ("cx", "cy", "scale", "rotation", "aspect")},
    }
    # poses spread evenly over the sketches use them all; poses by one sketch use one
    assert np.isclose(factors.sketches_used(sketches, sketches), 6.0)
    assert factors.sketches_used(sketches[[2, 2, 2]] + 1e-3, sketches) == 1.0
    attrs.drop(columns="rotation").to_csv(tmp_path / "manifest.csv")
    with pytest.raises(SystemExit, match=r"manifest.csv: no column 'rotation'"):
        factors.sketch_poses(tmp_path / "manifest.csv")
    found = factors.in_pose_set(g, evaluator, 2, draws=2000)
    assert found["n"] == 2 and found["pose"].shape == (2, 5) and found["drawn"] % 250 == 0
    with pytest.raises(SystemExit, match=r"only \d+ of 250 samples in 250 draws"):
        factors.in_pose_set(g, evaluator, 250, draws=1)
    with pytest.raises(SystemExit, match="only 3 of 4 samples found"):
        factors.ideal_sets(g, evaluator, np.array([3, 7, 9]), 2, measure=factors.ideal_set)
    idx = _report_script("bench_ideal_coverage").cached_target_indices(g, evaluator, 250, None)
    first = factors.ideal_set(g, evaluator, idx[:2])  # re-judged: both still in the pose
    assert first["n"] == len(first["pose"]) == 2 and first["drawn"] == idx[1] + 1


def test_sketch_d_rotation_row_tells_a_d_that_asks_for_the_sketches_rotations():
    probe = _report_script("bench_sketch_d_rotation")
    sketch_rot = np.array([-10.0, 0.0, 20.0])
    rot = np.linspace(-36, 36, 73)
    assert probe.rotation_gap(np.array([-30.0, 5.0]), sketch_rot).tolist() == [20.0, 5.0]
    asks = probe.rotation_row(-probe.rotation_gap(rot, sketch_rot), rot, sketch_rot)
    assert asks["auc_inside"] > 0.8 and asks["corr_gap"] == -1.0
    assert asks["mean_inside"] > asks["mean_outside"]
    assert np.isclose(asks["inside_share"], 31 / 73, atol=1e-3)
    blind = probe.rotation_row(np.zeros_like(rot), rot, sketch_rot)
    assert blind["auc_inside"] == 0.5 and blind["corr_gap"] == 0.0
    assert blind["mean_inside"] == blind["mean_outside"]
