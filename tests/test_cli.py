from typer.testing import CliRunner

from sketchgan.cli import STAGE_HELP, app

runner = CliRunner()


def test_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in [*STAGE_HELP, "generate", "interpolate", "import-sketches", "ui", "fetch"]:
        assert name in result.output
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0, name


def test_bad_parameter_is_one_line_error(tiny_project):
    root, _ = tiny_project
    text = (root / "params.yaml").read_text().replace("n_pretrain: 200", "n_pretrain: -5")
    (root / "params.yaml").write_text(text)
    result = runner.invoke(app, ["prepare"])
    assert result.exit_code == 2
    assert "prepare.n_pretrain" in result.output
    assert "Traceback" not in result.output
    assert not (root / "data").exists()


def test_missing_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2
    assert "params.yaml: parameter file not found" in result.output
