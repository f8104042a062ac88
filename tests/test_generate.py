from PIL import Image
from typer.testing import CliRunner

from sketchgan.checkpoints import save_generator_checkpoint
from sketchgan.cli import app
from sketchgan.training.finetune import build_generator

runner = CliRunner()


def test_generate_random_init(tmp_path):
    out = tmp_path / "samples"
    args = ["generate", "--random-init", "--size", "16", "--style-dim", "16"]
    result = runner.invoke(app, [*args, "--channel-max", "16", "--n", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("0*.png"))
    assert pngs == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(out / "grid.png").size[0] > 16
    # the same seed gives the same images
    again = tmp_path / "again"
    runner.invoke(app, [*args, "--channel-max", "16", "--n", "2", "--out", str(again)])
    assert (out / "000001.png").read_bytes() == (again / "000001.png").read_bytes()


def test_generate_and_interpolate_from_checkpoints(tmp_path):
    cfg = {"size": 16, "style_dim": 16, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 16}
    for name in ("a", "b"):
        save_generator_checkpoint(tmp_path / f"{name}.pt", build_generator(cfg), config=cfg)
    result = runner.invoke(
        app,
        [
            "generate",
            "--checkpoint",
            str(tmp_path / "a.pt"),
            "--n",
            "3",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "interpolate",
            "--original",
            str(tmp_path / "a.pt"),
            "--finetuned",
            str(tmp_path / "b.pt"),
            "--out",
            str(tmp_path / "i.png"),
            "--steps",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "i.png").is_file()


def test_generate_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--checkpoint" in result.output
    missing = tmp_path / "nope.pt"
    result = runner.invoke(app, ["generate", "--checkpoint", str(missing), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "nope.pt" in result.output


def test_generate_exact_seeds_match_the_sequence(tmp_path):
    args = ["generate", "--random-init", "--size", "16", "--style-dim", "16", "--channel-max", "16"]
    seq, picked = tmp_path / "seq", tmp_path / "picked"
    assert runner.invoke(app, [*args, "--n", "8", "--out", str(seq)]).exit_code == 0
    result = runner.invoke(app, [*args, "--seeds", "3,5-6", "--out", str(picked)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in picked.glob("0*.png"))
    assert names == ["000003.png", "000005.png", "000006.png"]
    for name in names:  # sample i is the same image whichever way it was asked for
        a = Image.open(seq / name).convert("RGB")
        b = Image.open(picked / name).convert("RGB")
        assert a.tobytes() == b.tobytes()
    bad = runner.invoke(app, [*args, "--seeds", "9-2", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "runs backwards" in bad.output
