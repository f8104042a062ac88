"""kill -9 at random moments of ``sketchgan train`` / ``sketchgan pretrain``, then compare with a
run that was never interrupted: final weights (every tensor, bit for bit), losses.csv (all but
the wall-clock column) and, for train, the MLflow metric history of the run that finished.

Some kills are aimed at checkpoint writes (the moment a ``*.tmp`` file of an atomic save exists);
the rest fall at a uniform random time of the process's life. After every kill the script
records how many iterations were lost (last logged step before the kill minus the step the next
process resumes from) and whether interrupted saves left temp files behind.

Usage (the project folder holds params.yaml; upstream stages are run first when missing):
    .venv/bin/python reports/kill9.py --project /tmp/k9 --stage train --kills 20 --seed 0
    .venv/bin/python reports/kill9.py --project /tmp/k9 --stage pretrain --kills 6 --seed 1
The committed result: ``reports/kill9.md`` (``--markdown`` appends a section to it).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = {"train": ("prepare", "pretrain", "photosketch"), "pretrain": ("prepare",)}
#: where each stage keeps its resumable state, and the files to compare at the end
WORK = {"train": "outputs/train_runs", "pretrain": "outputs/pretrain"}
FINAL = {
    "train": ("models/finetuned/generator_last.pt", "models/finetuned/generator.pt"),
    "pretrain": ("models/pretrained/generator.pt", "models/pretrained/photosketch.pt"),
}
LOSSES = {"train": "outputs/train/losses.csv", "pretrain": "outputs/pretrain/losses.csv"}
#: losses.csv columns that measure time, not training (they differ between any two runs)
WALL_CLOCK = ("seconds", "ms_per_iter")


@dataclass
class Kill:
    at_s: float  # seconds after the process started
    aimed_at_write: bool
    temp_files_seen: int  # *.tmp files present when the kill landed
    logged_step: int | None  # last step in losses.csv before the kill
    resumed_step: int | None = None  # where the next process continued
    lost: int | None = None


@dataclass
class Outcome:
    stage: str
    kills: list[Kill] = field(default_factory=list)
    same_weights: bool = False
    same_losses: bool = False
    same_mlflow: bool | None = None
    temp_files_left: int = 0
    runs_killed: int = 0
    runs_running: int = 0
    seconds: float = 0.0


def _cli() -> str:
    return str(Path(sys.executable).with_name("sketchgan"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_TRACKING"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    return env


def _run(project: Path, stage: str) -> None:
    done = subprocess.run(
        [_cli(), stage], cwd=project, env=_env(), capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"sketchgan {stage} in {project}: {done.stderr.strip()[-2000:]}")


def prepare(project: Path, stage: str) -> None:
    """Run the stages the measured one reads, once (both copies start from the same files)."""
    for up in UPSTREAM[stage]:
        if not (project / "reports/stages" / f"{up}.json").is_file():
            _run(project, up)


def _copy(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("ref", "killed"))


#: the temp file of a checkpoint save in progress (what an aimed kill waits for)
CHECKPOINT_TEMP = {"train": ".checkpoint.pt.*.tmp", "pretrain": ".pretrain_state.pt.*.tmp"}


def _temps(folder: Path, pattern: str = "*.tmp") -> list[Path]:
    return list(folder.rglob(pattern)) if folder.is_dir() else []


def _last_logged(folder: Path, since: float) -> int | None:
    """The last step the process started at ``since`` wrote to losses.csv (None before its
    first row: the file then still holds the previous process's rows)."""
    steps = []
    for path in folder.rglob("losses.csv"):
        if path.stat().st_mtime < since:
            continue
        try:
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    step = row.get("step") or row.get("iteration")  # train / pretrain
                    if step:
                        steps.append(int(float(step)))
        except (OSError, ValueError, KeyError, csv.Error):
            continue
    return max(steps) if steps else None


def _resume_step(folder: Path) -> int | None:
    """The step of the newest loadable checkpoint (what the next process resumes from)."""
    best = None
    names = ("checkpoint.pt", "checkpoint_prev.pt", "pretrain_state.pt", "pretrain_state_prev.pt")
    for path in (p for n in names for p in folder.rglob(n)):
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a torn file is what this script looks for
            continue
        step = saved.get("step", saved.get("iteration")) if isinstance(saved, dict) else None
        if isinstance(step, int) and (best is None or step > best):
            best = step
    return best


def _started(project: Path, stage: str, since: float) -> bool:
    """The process has trained: a file of its work folder (losses, a checkpoint) is newer than
    the process (the run marker and temp files do not count)."""
    work = project / WORK[stage]
    return any(
        p.is_file()
        and p.name != "mlflow_run_id"
        and not p.name.endswith(".tmp")
        and p.stat().st_mtime >= since
        for p in work.rglob("*")
    )


def _new_temps(work: Path, pattern: str, since: float) -> list[Path]:
    """Temp files of a save this process started (a killed save's leftover is older)."""
    out = []
    for p in _temps(work, pattern):
        try:
            if p.stat().st_mtime >= since:
                out.append(p)
        except FileNotFoundError:  # renamed into place meanwhile
            continue
    return out


def _one_kill(project: Path, stage: str, rng: random.Random, span: float, aim: bool) -> Kill:
    """One process killed: at a checkpoint write (``aim``), or ``uniform(0, span)`` seconds after
    it started to train (so that, over all kills, training still moves forward)."""
    work = project / WORK[stage]
    since = time.time() - 0.01
    proc = subprocess.Popen(
        [_cli(), stage],
        cwd=project,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t0 = time.monotonic()
    delay = rng.uniform(0.0, span)
    if not aim:
        while (
            not _started(project, stage, since)
            and proc.poll() is None
            and time.monotonic() < t0 + 120
        ):
            time.sleep(0.01)
    deadline = time.monotonic() + (span * 1.5 + 30 if aim else delay)
    temps: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        if aim:
            temps = _new_temps(work, CHECKPOINT_TEMP[stage], since)
            if temps:
                break
            time.sleep(0.001)
        else:
            time.sleep(0.01)
    if aim and not temps:
        temps = _new_temps(work, CHECKPOINT_TEMP[stage], since)
    logged = _last_logged(work, since)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return Kill(round(time.monotonic() - t0, 2), aim, len(temps), logged)


def _tensors(path: Path) -> dict[str, str]:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    out: dict[str, str] = {}

    def walk(obj, prefix: str) -> None:
        if torch.is_tensor(obj):
            out[prefix] = hashlib.sha256(obj.contiguous().numpy().tobytes()).hexdigest()
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}.{k}")

    walk(saved, "")
    return out


def _losses(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    drop = {i for i, name in enumerate(rows[0]) if name in WALL_CLOCK}
    return [[c for i, c in enumerate(r) if i not in drop] for r in rows]


def _mlflow_history(project: Path, keys: set[str]) -> set[tuple[str, int, float]]:
    run_id = json.loads((project / "models/finetuned/mlflow_run.json").read_text())["run_id"]
    con = sqlite3.connect(project / "mlflow.db")
    try:
        rows = con.execute(
            "select key, step, value from metrics where run_uuid = ?", (run_id,)
        ).fetchall()
    finally:
        con.close()
    return {(k, int(s), float(v)) for k, s, v in rows if k in keys}


def _statuses(project: Path, stage: str) -> dict[str, int]:
    con = sqlite3.connect(project / "mlflow.db")
    try:
        rows = con.execute(
            "select r.status, count(*) from runs r join experiments e "
            "on e.experiment_id = r.experiment_id where e.name = ? group by r.status",
            (f"sketchgan-{stage}",),
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def _loop_seconds(ref: Path, stage: str) -> float:
    """How long the reference run's training loop took."""
    if stage == "train":
        summary = json.loads((ref / "reports/stages/train.json").read_text())
        return summary["ms_per_iter"] * summary["steps"] / 1000
    with (ref / LOSSES[stage]).open(newline="") as f:
        return float(list(csv.DictReader(f))[-1]["seconds"])


def measure(project: Path, stage: str, kills: int, seed: int, aim_every: int = 3) -> Outcome:
    """Reference run and killed run on two copies of ``project``; every third kill aims at a
    checkpoint write."""
    t_start = time.monotonic()
    prepare(project, stage)
    ref, killed = project / "ref", project / "killed"
    _copy(project, ref)
    _copy(project, killed)
    t0 = time.monotonic()
    _run(ref, stage)
    span = time.monotonic() - t0
    loop = _loop_seconds(ref, stage)
    # each kill lands on average loop/kills seconds into its process's loop, so the kills are
    # spread over the whole run instead of all falling after the training finished
    span = 2 * loop / max(kills, 1)
    rng = random.Random(seed)
    out = Outcome(stage)
    for i in range(kills):
        kill = _one_kill(killed, stage, rng, span, aim=(i % aim_every == aim_every - 1))
        kill.resumed_step = _resume_step(killed / WORK[stage])
        if kill.logged_step is not None and kill.resumed_step is not None:
            kill.lost = max(0, kill.logged_step - kill.resumed_step)
        out.kills.append(kill)
    _run(killed, stage)
    out.same_weights = all(_tensors(ref / f) == _tensors(killed / f) for f in FINAL[stage])
    out.same_losses = _losses(ref / LOSSES[stage]) == _losses(killed / LOSSES[stage])
    if stage == "train":
        keys = set(_losses(ref / LOSSES[stage])[0]) - {"step"} | {"fid_eval"}
        out.same_mlflow = _mlflow_history(ref, keys) == _mlflow_history(killed, keys)
    out.temp_files_left = len(_temps(killed / WORK[stage]))
    statuses = _statuses(killed, stage)
    out.runs_killed = statuses.get("KILLED", 0)
    out.runs_running = statuses.get("RUNNING", 0)
    out.seconds = round(time.monotonic() - t_start, 1)
    return out


def markdown(out: Outcome, command: str) -> str:
    lost = [k.lost for k in out.kills if k.lost is not None]
    aimed = [k for k in out.kills if k.aimed_at_write]
    lines = [
        f"## `{out.stage}`: {len(out.kills)} kills ({len(aimed)} aimed at checkpoint writes, "
        f"{sum(k.temp_files_seen > 0 for k in out.kills)} landed while a temp file existed)",
        "",
        f"`{command}` — {out.seconds:.0f} s",
        "",
        f"- final weights identical to the uninterrupted run: **{out.same_weights}**",
        f"- losses.csv identical (all but the wall-clock columns): **{out.same_losses}**",
    ]
    if out.same_mlflow is not None:
        lines.append(
            f"- MLflow metric history of the finishing run identical: **{out.same_mlflow}**"
        )
    lines += [
        f"- iterations lost per kill: max {max(lost) if lost else 0}, "
        f"mean {sum(lost) / len(lost) if lost else 0:.1f}",
        f"- temp files left behind: {out.temp_files_left}",
        f"- MLflow runs of the stage: {out.runs_killed} KILLED, {out.runs_running} still RUNNING "
        "(a kill before the run could be linked)",
        "",
        "| # | at (s) | aimed at a write | temps seen | last logged step | resumed from | lost |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for i, k in enumerate(out.kills):
        lines.append(
            f"| {i + 1} | {k.at_s} | {'yes' if k.aimed_at_write else ''} | {k.temp_files_seen} "
            f"| {k.logged_step if k.logged_step is not None else '—'} "
            f"| {k.resumed_step if k.resumed_step is not None else '—'} "
            f"| {k.lost if k.lost is not None else '—'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--stage", choices=sorted(UPSTREAM), default="train")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", type=Path, help="append the result to this file")
    args = ap.parse_args()
    out = measure(args.project.resolve(), args.stage, args.kills, args.seed)
    print(json.dumps(asdict(out), indent=1))
    if args.markdown:
        command = " ".join(["python reports/kill9.py", *sys.argv[1:]])
        with args.markdown.open("a") as f:
            f.write("\n" + markdown(out, command))


if __name__ == "__main__":
    main()
