"""Progress of long steps: a bar on a terminal, plain lines otherwise."""

import io

from sketchgan.progress import TrainingProgress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal_with_losses_fid_and_eta():
    out = io.StringIO()
    with TrainingProgress(10, "train", stream=out, line_every_s=0.0) as bar:
        bar.update(2, {"d_sketch_real": 0.5, "g_sketch": 1.25})
        bar.note(fid=123.4)
        bar.update(4, {"d_sketch_real": 0.4, "g_sketch": 1.5})
        bar.update(10, {"d_sketch_real": 0.3, "g_sketch": 1.0})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train: 2/10 (d_sketch_real 0.5, g_sketch 1.25")
    assert "fid 123" in lines[1] and "ETA" in lines[1]
    assert lines[-1].startswith("train: 10/10") and "ETA" not in lines[-1]
    assert "\r" not in out.getvalue()  # no carriage returns in a log file


def test_quiet_interval_when_not_a_terminal():
    out = io.StringIO()
    bar = TrainingProgress(100, "pretrain", stream=out, line_every_s=3600)
    for step in range(10, 100, 10):
        bar.update(step, {"loss": 1.0})
    bar.update(100, {"loss": 1.0})
    assert len(out.getvalue().splitlines()) == 2  # the first and the last only


def test_first_line_even_when_the_clock_started_recently(monkeypatch):
    """time.monotonic() counts from boot: on a machine up for less than line_every_s the
    first line must still come."""
    import sketchgan.progress as progress

    monkeypatch.setattr(progress.time, "monotonic", lambda: 5.0)
    out = io.StringIO()
    bar = TrainingProgress(100, "pretrain", stream=out, line_every_s=3600)
    bar.update(10, {"loss": 1.0})
    assert out.getvalue().startswith("pretrain: 10/100")


def test_a_bar_on_a_terminal_starts_at_a_resumed_step():
    out = _Tty()
    with TrainingProgress(50, "train", stream=out) as bar:
        bar.update(20, {"g_sketch": 1.0})
        assert bar.bar.n == 20 and bar.eta_s() is None
        bar.update(30, {"g_sketch": 0.9})
        assert bar.eta_s() is not None
    assert "30/50" in out.getvalue()
