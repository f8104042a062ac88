"""The sketch studio's logic, with no UI in it: sketches from a canvas or an upload, one
customisation job at a time (the same ``finetune`` the ``train`` stage calls, mapping-only by
default), and the views of its result (side by side, weight interpolation, truncation, GANSpace).

The web page (``studio/app.py``) only wires these functions to widgets, so everything a user
can do is testable without a browser. Settings come from the ``studio`` section of
``params.yaml`` (plus the ``train`` section the customisation starts from).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from sketchgan import tracking
from sketchgan.checkpoints import known_checkpoints, load_finetuned_generator, resolve_checkpoint
from sketchgan.config import Section
from sketchgan.data.sketch_import import convert_sketch
from sketchgan.data.strokes import hand_drawn_sketches
from sketchgan.data.world import TargetSpec, render_scenes, sample_attributes
from sketchgan.errors import SketchganError
from sketchgan.evaluation.sampling import (
    compute_mean_latent,
    draw_inputs,
    ganspace_directions,
    interpolate_generators,
)
from sketchgan.io import list_images, load_image_files, make_grid, save_png
from sketchgan.training.finetune import FinetuneConfig, finetune

MAX_SKETCHES = 8
GENERATOR_KIND = "sketchgan_generator"
EXPERIMENT = "studio"  # MLflow experiment sketchgan-studio
MODEL_NAME = "studio-generator"  # registered as sketchgan-studio-generator
REG_IMAGES = Path("data/image_reg/images")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class StudioSettings(Section):
    """The ``studio`` section of params.yaml (every field is documented there)."""

    NAME: ClassVar[str] = "studio"
    MINIMUM: ClassVar[Mapping[str, float]] = {
        "iters": 1,
        "l_image": 0,
        "sample_every": 1,
        "log_every": 1,
        "n_reg_images": 1,
        "grid_seeds": 1,
        "ganspace_samples": 2,
        "ganspace_components": 1,
        "port": 1,
        "threads": 1,
    }
    ABOVE: ClassVar[Mapping[str, float]] = {"g_lr": 0}
    MAXIMUM: ClassVar[Mapping[str, float]] = {"port": 65535}

    iters: int
    g_lr: float | None
    l_image: float
    augment: bool
    tune: Literal["mapping", "w_shift", "full"]
    sample_every: int
    log_every: int
    n_reg_images: int
    grid_seeds: int
    ganspace_samples: int
    ganspace_components: int
    port: int
    out_dir: str
    threads: int


@dataclass(frozen=True)
class RunSettings:
    """What the page's Customise panel lets a user change (defaults: StudioSettings)."""

    iters: int
    l_image: float
    augment: bool
    tune: str
    g_lr: float | None


def default_run_settings(settings: StudioSettings) -> RunSettings:
    return RunSettings(
        settings.iters, settings.l_image, settings.augment, settings.tune, settings.g_lr
    )


# --------------------------------------------------------------------------- sketches


def _as_pil(image: Any, name: str) -> Image.Image:
    """A canvas value (numpy, PIL, a path, or an editor dict with 'composite') as PIL."""
    if isinstance(image, Mapping):  # gr.ImageEditor / gr.Sketchpad value
        image = image.get("composite")
    if image is None:
        raise SketchganError(f"{name}: empty canvas (draw something first)")
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as img:
                img.load()
                return img.copy()
        except (OSError, ValueError) as exc:
            raise SketchganError(f"{name}: not a readable image ({exc})") from exc
    if isinstance(image, Image.Image):
        return image
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise SketchganError(f"{name}: not an image (shape {arr.shape})")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def canvas_to_sketch(image: Any, size: int, name: str = "sketch") -> np.ndarray:
    """One drawing or upload -> uint8 (size, size), dark strokes on white: the same conversion
    and checks as ``sketchgan import-sketches`` (blank or vanishing strokes are one-line errors;
    transparent pixels are paper)."""
    return convert_sketch(_as_pil(image, name), size, name)


def sketches_tensor(sketches: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (S, S) sketches -> (N, 1, S, S) float in [-1, 1], the way the model sees them."""
    if not sketches:
        raise SketchganError("sketches: add at least one sketch (draw, upload or pick examples)")
    if len(sketches) > MAX_SKETCHES:
        raise SketchganError(f"sketches: at most {MAX_SKETCHES}, got {len(sketches)}")
    arr = np.stack([np.asarray(s, np.float32) for s in sketches])[:, None]
    return torch.from_numpy(arr / 127.5 - 1.0)


def binarise(sketch: np.ndarray) -> np.ndarray:
    """The preview's "as the model sees it": ink below mid-grey becomes black."""
    return np.where(np.asarray(sketch) < 128, 0, 255).astype(np.uint8)


def preview(sketches: Sequence[np.ndarray], zoom: int = 4) -> np.ndarray | None:
    """The sketches side by side, enlarged with nearest-neighbour (pixels stay visible)."""
    if not sketches:
        return None
    row = np.concatenate([np.pad(binarise(s), 1, constant_values=160) for s in sketches], 1)
    return np.kron(row, np.ones((zoom, zoom), np.uint8))


def example_sketches(params: Mapping[str, Any], n: int = 4) -> list[np.ndarray]:
    """Hand-drawn-style sketches of the embedded world's target pose (the pipeline's own)."""
    prep = params["prepare"]
    target = TargetSpec.from_dict(dict(prep["target"]))
    seed = int(params.get("seed", 0))
    attrs = sample_attributes(n, np.random.default_rng(seed + 11), target)
    return list(hand_drawn_sketches(attrs, int(prep["size"]), seed + 12))


def regularisation_images(size: int, n: int, seed: int) -> torch.Tensor:
    """Real scenes of the embedded world for the image-space regulariser, (N, 3, S, S)."""
    images, _, _ = render_scenes(n, size, seed)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# --------------------------------------------------------------------------- models


def generator_choices() -> list[str]:
    """Registry names of generators (the embedded zoo's first); a path is accepted too."""
    names = [n for n, e in known_checkpoints().items() if e.get("kind") == GENERATOR_KIND]
    return sorted(names, key=lambda n: (not n.startswith("world"), n))


def resolve_model(choice: str, params: Mapping[str, Any], root: Path) -> Path:
    cache = root / params["checkpoints"]["cache_dir"]
    return resolve_checkpoint(str(choice).strip(), cache)


def load_model(path: Path, size: int | None = None) -> nn.Module:
    """The generator in eval mode; a checkpoint of another resolution is a one-line error."""
    gen = load_finetuned_generator(path)
    if size is not None and int(gen.size) != size:
        raise SketchganError(
            f"{path.name}: a {gen.size} px generator, but the sketches are {size} px; "
            "pick a generator of the studio's resolution"
        )
    return gen


def enlarged(png: Path, zoom: int = 3) -> np.ndarray | None:
    """A grid PNG the loop wrote, enlarged with nearest-neighbour (32 px samples are tiny)."""
    try:
        with Image.open(png) as img:
            arr = np.asarray(img.convert("RGB"))
    except OSError:  # being replaced right now: show it at the next poll
        return None
    return np.kron(arr, np.ones((zoom, zoom, 1), np.uint8))


def image_grid(images: torch.Tensor, nrow: int, zoom: int = 3) -> np.ndarray:
    grid = make_grid(images, nrow=nrow)
    return np.kron(grid, np.ones((zoom, zoom, 1), np.uint8))


def _latents(G: nn.Module, seeds: Sequence[int], truncation: float) -> torch.Tensor:
    """w of sample 0 of each seed's stream (new seeds give new samples), truncated towards a
    seeded mean: every view of the page shows the same z for the same seed."""
    z = torch.cat([draw_inputs(int(s), [0], int(G.style_dim), [])[0] for s in seeds])
    w = G.get_latent(z)
    if truncation < 1:
        mean = compute_mean_latent(G, seed=0)
        w = mean + float(truncation) * (w - mean)
    return w


@torch.no_grad()
def samples(G: nn.Module, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
    """One image per seed, stored noise, (N, C, H, W) in [-1, 1]."""
    img, _ = G([_latents(G, seeds, truncation)], input_is_latent=True, randomize_noise=False)
    return img.float()


def side_by_side(
    original: nn.Module, tuned: nn.Module | None, seeds: Sequence[int], truncation: float
) -> np.ndarray:
    """Original on top, customised below, the same z in each column."""
    top = samples(original, seeds, truncation)
    if tuned is None:
        return image_grid(top, nrow=len(seeds))
    return image_grid(torch.cat([top, samples(tuned, seeds, truncation)]), nrow=len(seeds))


def interpolated(
    original: nn.Module, tuned: nn.Module, alpha: float, seeds: Sequence[int], truncation: float
) -> np.ndarray:
    """Samples of the weight-space blend (1 - alpha) original + alpha customised."""
    mixed = interpolate_generators(original, tuned, float(alpha)).eval()
    return image_grid(samples(mixed, seeds, truncation), nrow=len(seeds))


@torch.no_grad()
def ganspace_view(
    G: nn.Module,
    directions: tuple[torch.Tensor, torch.Tensor],
    sigmas: Sequence[float],
    seeds: Sequence[int],
    truncation: float,
) -> np.ndarray:
    """Samples with w moved by sigma_i standard deviations along the original's PCA axis i
    (the directions come from the original model and carry over to the customised one)."""
    _, comps = directions
    w = _latents(G, seeds, truncation)
    for i, sigma in enumerate(list(sigmas)[: comps.shape[0]]):
        w = w + float(sigma) * comps[i].to(w)
    img, _ = G([w], input_is_latent=True, randomize_noise=False)
    return image_grid(img.float(), nrow=len(seeds))


def directions_for(G: nn.Module, settings: StudioSettings) -> tuple[torch.Tensor, torch.Tensor]:
    return ganspace_directions(
        G, settings.ganspace_samples, settings.ganspace_components, seed=0, device="cpu"
    )


# --------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One customisation: queued, then running, then done / stopped / failed."""

    id: int
    sketches: list[np.ndarray]
    settings: RunSettings
    generator: Path
    status: str = "queued"
    step: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    started: float | None = None
    seconds: float = 0.0
    grid: Path | None = None
    checkpoint: Path | None = None
    run_id: str | None = None
    pid: int | None = None  # the training process
    error: str | None = None
    out_dir: Path | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "failed")

    def eta_s(self) -> float | None:
        if self.started is None or self.step == 0:
            return None
        rate = (time.time() - self.started) / self.step
        return rate * max(self.settings.iters - self.step, 0)

    def summary(self) -> str:
        """One line for the progress bar's label."""
        if self.status == "queued":
            return "queued"
        if self.status == "failed":
            return f"failed: {self.error}"
        losses = ", ".join(f"{k} {v:.3f}" for k, v in self.losses.items() if k.startswith("g_"))
        eta = self.eta_s()
        tail = f", ETA {eta:.0f} s" if eta is not None and not self.finished else ""
        head = {"running": "iteration", "done": "done at", "stopped": "stopped at"}[self.status]
        return (
            f"{head} {self.step}/{self.settings.iters}" + (f" ({losses})" if losses else "") + tail
        )


class Customiser:
    """Runs customisation jobs one at a time in a background thread, in submission order.

    A second Customise while one runs waits in the queue (``position`` tells where); nothing of
    a running or finished job is touched by later ones: each has its own folder and MLflow run.
    Each job trains in a spawned child process (after ``keep_warm()``, one started ahead of the
    job, so that it has imported the training code by then); a script that uses this class
    needs the usual ``if __name__ == "__main__":`` guard (the CLI and notebooks have it or need
    none), and ``close()`` ends a waiting process.
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        root: Path,
        photosketch: Path,
        tracking_enabled: bool | None = None,
    ) -> None:
        self.params = dict(params)
        self.root = root
        self.settings = StudioSettings.from_params(params)
        self.size = int(params["prepare"]["size"])
        self.photosketch = photosketch
        track = params.get("tracking") or {}
        self.tracking = (
            bool(track.get("enabled", True)) if tracking_enabled is None else (tracking_enabled)
        )
        self.tracking_uri = track.get("uri")
        self._ids = itertools.count(1)
        self._queue: queue.Queue[Job] = queue.Queue()
        self._waiting: list[Job] = []
        self._lock = threading.Lock()
        self._reg: torch.Tensor | None = None
        self.jobs: dict[int, Job] = {}
        self._spare: _TrainingProcess | None = None
        self._keep_warm = False
        self._worker = threading.Thread(target=self._work, name="studio-customiser", daemon=True)
        self._worker.start()

    # -- queue --------------------------------------------------------------------------

    def submit(self, sketches: Sequence[np.ndarray], settings: RunSettings, generator: Path) -> Job:
        sketches_tensor(sketches)  # validate now: the page shows the error, nothing is queued
        if settings.iters < 1:
            raise SketchganError("iterations: must be >= 1")
        job = Job(next(self._ids), list(sketches), settings, Path(generator))
        with self._lock:
            self.jobs[job.id] = job
            self._waiting.append(job)
        self._queue.put(job)
        return job

    def position(self, job: Job) -> int:
        """1 = next to run; 0 = running or finished."""
        with self._lock:
            return self._waiting.index(job) + 1 if job in self._waiting else 0

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        return job.done.wait(timeout)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            with self._lock:
                self._waiting.remove(job)
            try:
                self._run(job)
            except SketchganError as exc:
                job.status, job.error = "failed", str(exc)
            except Exception as exc:  # the page must keep serving whatever a job does
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                job.status, job.error = "failed", f"{type(exc).__name__}: {first[:200]}"
            finally:
                job.done.set()

    # -- one job --------------------------------------------------------------------------

    def _config(self, job: Job) -> FinetuneConfig:
        s, st = job.settings, self.settings
        return FinetuneConfig.from_params(
            self.params,
            iters=int(s.iters),
            l_image=float(s.l_image),
            augment="translation" if s.augment else False,
            tune=s.tune,
            g_lr=s.g_lr,
            sample_every=st.sample_every,
            log_every=st.log_every,
            checkpoint_every=st.sample_every,
            eval_every=0,
            n_sample=min(8, st.grid_seeds),
        )

    def _reg_images(self) -> torch.Tensor:
        """The pipeline's image_reg set when ``prepare`` has made it (real photos with the
        paper's configs), else fresh renders of the embedded world."""
        if self._reg is None:
            try:
                files = list_images(self.root / REG_IMAGES)[: self.settings.n_reg_images]
            except SketchganError:  # no pipeline data here (a fresh clone)
                files = []
            if files:
                self._reg = load_image_files(files, "RGB", self.size)
            else:
                seed = int(self.params.get("seed", 0)) + 13
                self._reg = regularisation_images(self.size, self.settings.n_reg_images, seed)
        return self._reg

    def _run(self, job: Job) -> None:
        """Train in a child process: in the server's process the page's threads and the
        trainer fight over the GIL and training slows down (measured in reports/studio.md)."""
        cfg = self._config(job)
        load_model(job.generator, self.size)  # the wrong-size check, before any work
        job.out_dir = (
            self.root / self.settings.out_dir / f"run_{time.strftime('%Y%m%d-%H%M%S')}_{job.id}"
        )
        job.status, job.started = "running", time.time()
        reg = self._reg_images() if cfg.l_image > 0 else None
        payload = {
            "train": cfg.to_dict(),
            "generator": str(job.generator),
            "photosketch": str(self.photosketch),
            "sketches": np.stack(job.sketches),
            "reg": None if reg is None else reg.numpy(),
            "out_dir": str(job.out_dir),
            "threads": self.settings.threads,
            "tracking": self.tracking,
            "tracking_uri": self.tracking_uri,
            "root": str(self.root),
            "run_params": {
                "studio": vars(job.settings),
                "train": cfg.to_dict(),
                "generator": job.generator.name,
                "n_sketches": len(job.sketches),
            },
            "run_name": f"studio-{job.id}-{cfg.tune}-{cfg.iters}its",
        }
        worker = self._take_spare()
        worker.start(payload)
        try:
            self._follow(job, worker.process, worker.messages, worker.stop)
        finally:
            worker.end(wait=30)
            if self._keep_warm:
                self._spare = self._new_process()  # ready for the next job, warmed while idle

    def keep_warm(self) -> None:
        """From now on keep a training process ready (the studio calls it at start, so the
        first one warms up while the user draws)."""
        self._keep_warm = True
        if self._spare is None:
            self._spare = self._new_process()

    def _new_process(self) -> _TrainingProcess:
        return _TrainingProcess((self.tracking_uri, str(self.root)) if self.tracking else None)

    def _take_spare(self) -> _TrainingProcess:
        spare, self._spare = self._spare, None
        if spare is None or not spare.process.is_alive():
            spare = self._new_process()
        return spare

    def close(self) -> None:
        """Stop the waiting training process (a finished studio or test)."""
        self._keep_warm = False
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    def _follow(self, job: Job, child: Any, messages: Any, stop: Any) -> None:
        """Mirror the child's progress into ``job`` until it reports the end."""
        while True:
            if job.stop.is_set():
                stop.set()
            try:
                kind, *body = messages.get(timeout=0.5)
            except queue.Empty:
                if not child.is_alive():
                    raise SketchganError(
                        f"the training process died (exit {child.exitcode})"
                    ) from None
                continue
            if kind == "run":
                job.run_id, job.pid = body
            elif kind == "log":
                job.step, metrics, grid = body
                job.losses = dict(metrics or job.losses)
                job.grid = Path(grid) if grid else job.grid
            elif kind == "done":
                job.step, job.seconds, last, stopped = body
                job.checkpoint = Path(last)
                job.status = "stopped" if stopped else "done"
                return
            elif kind == "error":
                raise SketchganError(body[0])


class _TrainingProcess:
    """A spawned process that has already imported the training code and waits for one job.

    The Customiser keeps one ready: a Customise then starts training at once instead of after
    a new Python process has imported torch, MLflow and the project (seconds on 2 cores).
    """

    def __init__(self, store: tuple[str | None, str] | None) -> None:
        ctx = mp.get_context("spawn")
        self.payloads, self.messages, self.stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.process = ctx.Process(
            target=_training_process_main,
            args=(self.payloads, self.messages, self.stop, os.getpid(), store),
            daemon=True,
        )
        self.process.start()

    def start(self, payload: dict[str, Any]) -> None:
        self.payloads.put(payload)

    def close(self) -> None:
        """Let an unused process exit (it also exits by itself once the studio is gone)."""
        if self.process.is_alive():
            self.payloads.put(None)
        self.end(wait=10)

    def end(self, wait: float) -> None:
        """Give the process ``wait`` seconds to exit, then SIGKILL it; either way it is reaped,
        so ``is_alive()`` is false on return (a loaded machine can keep a fresh process
        importing torch past the wait, and a killed one is alive until joined)."""
        self.process.join(timeout=wait)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)


def _training_process_main(
    payloads: Any, messages: Any, stop: Any, parent: int, store: tuple[str | None, str] | None
) -> None:
    """Import what a job needs and open the MLflow store (``(uri, root)``; None: untracked),
    then wait for the job's payload (None: exit)."""
    if store is not None:
        import mlflow.pytorch  # noqa: F401  (tracking imports it lazily, at the job's end)

        with contextlib.suppress(Exception):  # a broken store is the job's error to report
            tracking.open_store(*store)

    while True:
        try:
            payload = payloads.get(timeout=1.0)
            break
        except queue.Empty:
            if os.getppid() != parent:  # the studio is gone
                return
    if payload is not None:
        _customise_child(payload, messages, stop)


def _customise_child(payload: dict[str, Any], messages: Any, stop: Any) -> None:
    """One customisation, in its own process: the MLflow run, ``finetune``, the model."""
    parent = os.getppid()

    def should_stop() -> bool:  # the Stop button, or the studio itself gone (killed)
        return stop.is_set() or os.getppid() != parent

    try:
        torch.set_num_threads(int(payload["threads"]))
        cfg = FinetuneConfig.from_dict(payload["train"])
        out_dir = Path(payload["out_dir"])
        sketches = sketches_tensor(list(payload["sketches"]))
        reg = None if payload["reg"] is None else torch.from_numpy(payload["reg"])
        with tracking.stage_run(
            EXPERIMENT,
            payload["run_params"],
            enabled=payload["tracking"],
            uri=payload["tracking_uri"],
            root=payload["root"],
            run_name=payload["run_name"],
        ) as run:
            messages.put(("run", run.info.run_id if run is not None else None, os.getpid()))
            save_png(preview(list(payload["sketches"]), zoom=1), out_dir / "sketches.png")
            tracking.log_artifact(out_dir / "sketches.png", "inputs")
            state = {"step": 0, "grid": None}

            def log(step: int, metrics: Mapping[str, float]) -> None:
                if metrics and step != state["step"]:
                    tracking.log_step_metrics(metrics, step)
                state["step"] = step
                grids = sorted((out_dir / "samples").glob("step_*.png"))
                if grids and grids[-1] != state["grid"]:
                    state["grid"] = grids[-1]
                    tracking.log_artifact(grids[-1], "samples")
                messages.put(
                    (
                        "log",
                        step,
                        dict(metrics or {}),
                        str(state["grid"]) if state["grid"] else None,
                    )
                )

            result = finetune(
                cfg,
                payload["generator"],
                payload["photosketch"],
                sketches,
                reg,
                out_dir,
                log_fn=log,
                stop_fn=should_stop,
                handle_signals=False,  # a spawned worker: the studio owns the signals
            )
            log(result.steps, result.metrics)  # the final grid is written after the last log
            tuned = load_finetuned_generator(result.last_path)
            tracking.log_model(tuned, MODEL_NAME, register=True)
            tracking.log_artifact(result.last_path, "checkpoint")
        messages.put(("done", result.steps, result.seconds, str(result.last_path), result.stopped))
    except SketchganError as exc:
        messages.put(("error", str(exc)))
    except Exception as exc:  # reported to the page; the server keeps serving
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        messages.put(("error", f"{type(exc).__name__}: {first[:200]}"))


def progress_fraction(job: Job) -> float:
    return 0.0 if job.settings.iters <= 0 else min(1.0, job.step / job.settings.iters)


def new_seeds(n: int, rng: Callable[[], int] | None = None) -> list[int]:
    """n fresh seeds (the page's "new seeds" button)."""
    draw = rng or (lambda: int(np.random.default_rng().integers(0, 2**31 - 1)))
    return [int(draw()) for _ in range(n)]


def seeds_of(first: int, n: int) -> list[int]:
    return list(range(int(first), int(first) + n))


def fmt_seconds(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(math.fmod(seconds, 60)):02d}"
