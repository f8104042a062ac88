"""``sketchgan studio``: the page. Draw -> Model -> Customise -> Explore, in one Gradio Blocks app.

Every callback is a thin wrapper over ``studio.core`` (tested without a browser); errors a user
can cause come back as a message in the page (``SketchganError`` -> one line), and the server
keeps serving. Customise runs in the ``Customiser``'s background worker; the page polls it.
"""

from __future__ import annotations

import functools
import html
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sketchgan.errors import SketchganError
from sketchgan.studio import core

POLL_S = 2.0
CANVAS_PX = 256


def _gradio():
    try:
        import gradio as gr
    except ImportError as exc:  # the optional extra
        raise SketchganError(
            "the studio needs Gradio: pip install -e '.[studio]' (or: make studio)"
        ) from exc
    return gr


class Studio:
    """State shared by every visitor: the loaded models and the one customisation queue."""

    def __init__(self, params: Mapping[str, Any], root: Path) -> None:
        self.params = dict(params)
        self.root = root
        self.settings = core.StudioSettings.from_params(params)
        self.size = int(params["prepare"]["size"])
        photosketch = core.resolve_model(params["checkpoints"]["photosketch"], params, root)
        self.customiser = core.Customiser(params, root, photosketch)
        self.customiser.keep_warm()
        self.default_model = str(params["checkpoints"]["generator"])

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one Studio per process
    def model(self, path: str, mtime: float) -> Any:
        del mtime  # part of the cache key: a rewritten file is reloaded
        return core.load_model(Path(path), self.size)

    def model_for(self, choice: str) -> Any:
        path = core.resolve_model(choice or self.default_model, self.params, self.root)
        return self.model(str(path), path.stat().st_mtime)

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def directions(self, path: str, mtime: float) -> Any:
        del mtime
        return core.directions_for(self.model(path, os.path.getmtime(path)), self.settings)

    def directions_for(self, choice: str) -> Any:
        path = core.resolve_model(choice or self.default_model, self.params, self.root)
        return self.directions(str(path), path.stat().st_mtime)

    def seeds(self, first: float) -> list[int]:
        return core.seeds_of(int(first), self.settings.grid_seeds)

    # -- callbacks (each returns values for the outputs; errors become messages) ------------

    def add_sketch(self, canvas: Any, sketches: list | None):
        sketches = list(sketches or [])
        try:
            if len(sketches) >= core.MAX_SKETCHES:
                raise SketchganError(f"sketches: at most {core.MAX_SKETCHES}")
            sketches.append(core.canvas_to_sketch(canvas, self.size, "canvas"))
            msg = f"{len(sketches)} sketch(es) ready"
        except SketchganError as exc:
            msg = f"⚠ {exc}"
        return sketches, core.preview(sketches), msg

    def upload(self, files: list | None, sketches: list | None):
        sketches = list(sketches or [])
        msgs = []
        for f in files or []:
            path = Path(getattr(f, "name", f))
            try:
                if len(sketches) >= core.MAX_SKETCHES:
                    raise SketchganError(f"sketches: at most {core.MAX_SKETCHES}")
                sketches.append(core.canvas_to_sketch(path, self.size, path.name))
            except SketchganError as exc:
                msgs.append(f"⚠ {exc}")
        msgs.append(f"{len(sketches)} sketch(es) ready")
        return sketches, core.preview(sketches), "  \n".join(msgs)

    def examples(self):
        sketches = core.example_sketches(self.params, 4)
        return sketches, core.preview(sketches), f"{len(sketches)} example sketch(es) ready"

    def clear(self):
        return [], None, "no sketches yet"

    def show_model(self, choice: str, first_seed: float):
        try:
            gen = self.model_for(choice)
            grid = core.side_by_side(gen, None, self.seeds(first_seed), 1.0)
            return grid, f"{choice}: {gen.size} px, style_dim {gen.style_dim}"
        except SketchganError as exc:
            return None, f"⚠ {exc}"

    def customise(self, sketches, choice, iters, l_image, augment, tune, g_lr):
        """A generator: queued position, then iteration/losses/ETA and the live grid."""
        try:
            path = core.resolve_model(choice or self.default_model, self.params, self.root)
            settings = core.RunSettings(
                int(iters),
                float(l_image),
                bool(augment),
                str(tune),
                None if g_lr in (None, "", 0) else float(g_lr),
            )
            job = self.customiser.submit(list(sketches or []), settings, path)
        except SketchganError as exc:
            yield _bar(0.0), f"⚠ {exc}", None, None, None
            return
        shown: list = [None]  # the grid file last sent: unchanged grids are not re-sent
        while not job.done.wait(POLL_S):
            yield self._progress(job, shown)
        yield self._progress(job, shown)

    def _progress(self, job: core.Job, shown: list):
        pos = self.customiser.position(job)
        label = f"queued: position {pos}" if pos else job.summary()
        if job.grid is not None and job.grid != shown[0]:
            grid = core.enlarged(job.grid)
            shown[0] = job.grid if grid is not None else None
        else:  # sending the same image every poll costs the browser and the trainer CPU
            grid = _gradio().skip()
        ckpt = (
            str(job.checkpoint)
            if job.checkpoint and job.finished and job.status != "failed"
            else None
        )
        run = f"MLflow run {job.run_id}" if job.run_id else ""
        text = f"{html.escape(label)}" + (f"  \n{run}" if run else "")
        if job.status == "failed":
            text = f"⚠ {html.escape(job.error or 'failed')}"
        return _bar(core.progress_fraction(job)), text, grid, job.id, ckpt

    def stop(self, job_id):
        job = self.customiser.jobs.get(int(job_id)) if job_id else None
        if job is None or job.finished:
            return "nothing is running"
        job.stop.set()
        return "stopping after the current iteration (the model so far is kept)"

    def explore(self, choice, ckpt, first_seed, truncation, alpha, *sigmas):
        try:
            original = self.model_for(choice)
            seeds = self.seeds(first_seed)
            tuned = self.model(str(ckpt), os.path.getmtime(ckpt)) if ckpt else None
            compare = core.side_by_side(original, tuned, seeds, float(truncation))
            target = original if tuned is None else None
            if tuned is not None:
                blend = core.interpolate_generators(original, tuned, float(alpha)).eval()
                target = blend
            edited = core.ganspace_view(
                target, self.directions_for(choice), sigmas, seeds, float(truncation)
            )
            return compare, edited, ""
        except SketchganError as exc:
            return None, None, f"⚠ {exc}"


def _bar(fraction: float) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        '<div id="progress-bar" style="width:100%;background:#eee;border-radius:4px">'
        f'<div style="width:{pct:.1f}%;background:#4a7;height:14px;border-radius:4px"></div>'
        f"</div><div>{pct:.0f} %</div>"
    )


def build(studio: Studio):
    """The Blocks app (not launched)."""
    gr = _gradio()
    st = studio.settings
    with gr.Blocks(title="sketchgan studio") as demo:
        gr.Markdown(
            "# sketchgan studio\nDraw a few sketches of the shape and pose you want, press "
            "**Customise**, and the pretrained GAN is fine-tuned (only its mapping network, the "
            "paper's method) to match them. Everything runs on this machine."
        )
        sketches = gr.State([])
        job_id = gr.State(None)
        ckpt = gr.State(None)
        with gr.Row():
            with gr.Column():
                gr.Markdown("## 1. Draw")
                canvas = gr.Sketchpad(
                    label="canvas (black pen on white)",
                    canvas_size=(CANVAS_PX, CANVAS_PX),
                    fixed_canvas=True,
                    brush=gr.Brush(colors=["#000000"], default_size=6, color_mode="fixed"),
                    eraser=gr.Eraser(default_size=20),
                    layers=False,
                    type="numpy",
                    elem_id="canvas",
                )
                with gr.Row():
                    add = gr.Button("Add sketch", elem_id="add-sketch")
                    example = gr.Button("Example sketches", elem_id="examples")
                    clear = gr.Button("Clear sketches", elem_id="clear-sketches")
                upload = gr.File(
                    label="or upload sketches", file_count="multiple", elem_id="upload"
                )
                preview = gr.Image(
                    label=f"as the model sees them ({studio.size} px, 1 channel)",
                    interactive=False,
                    elem_id="preview",
                )
                sketch_msg = gr.Markdown("no sketches yet", elem_id="sketch-msg")
            with gr.Column():
                gr.Markdown("## 2. Model")
                model = gr.Dropdown(
                    core.generator_choices(),
                    value=studio.default_model,
                    allow_custom_value=True,
                    label="generator (registry name or path)",
                    elem_id="model",
                )
                first_seed = gr.Number(0, precision=0, label="first seed", elem_id="seed")
                show = gr.Button("Show samples", elem_id="show-samples")
                original = gr.Image(label="original model", interactive=False, elem_id="original")
                model_msg = gr.Markdown("", elem_id="model-msg")
        gr.Markdown("## 3. Customise")
        with gr.Accordion("advanced", open=False):
            iters = gr.Slider(1, 5000, value=st.iters, step=1, label="iterations", elem_id="iters")
            l_image = gr.Slider(0, 2, value=st.l_image, label="l_image (image regulariser)")
            augment = gr.Checkbox(value=st.augment, label="translation augmentation")
            tune = gr.Radio(["mapping", "w_shift", "full"], value=st.tune, label="tune")
            g_lr = gr.Number(st.g_lr, label="G learning rate (empty: train.lr)")
        with gr.Row():
            go = gr.Button("Customise", variant="primary", elem_id="customise")
            stop = gr.Button("Stop", elem_id="stop")
        bar = gr.HTML(_bar(0.0), elem_id="progress")
        status = gr.Markdown("", elem_id="status")
        live = gr.Image(
            label="samples during training (fixed z; sketches below)",
            interactive=False,
            elem_id="live-grid",
        )
        gr.Markdown("## 4. Explore")
        with gr.Row():
            truncation = gr.Slider(0.1, 1.0, value=1.0, label="truncation", elem_id="truncation")
            alpha = gr.Slider(
                0.0, 1.0, value=1.0, label="original -> customised (weights)", elem_id="alpha"
            )
            new = gr.Button("New seeds", elem_id="new-seeds")
        sigmas = [
            gr.Slider(-3, 3, value=0, step=0.25, label=f"GANSpace component {i + 1} (sigma)")
            for i in range(st.ganspace_components)
        ]
        compare = gr.Image(
            label="original (top) vs customised (bottom), same z",
            interactive=False,
            elem_id="compare",
        )
        edited = gr.Image(label="blend + GANSpace edits", interactive=False, elem_id="edited")
        explore_msg = gr.Markdown("", elem_id="explore-msg")
        download = gr.DownloadButton("Download customised checkpoint", elem_id="download")

        add.click(studio.add_sketch, [canvas, sketches], [sketches, preview, sketch_msg])
        example.click(studio.examples, None, [sketches, preview, sketch_msg])
        clear.click(studio.clear, None, [sketches, preview, sketch_msg])
        upload.upload(studio.upload, [upload, sketches], [sketches, preview, sketch_msg])
        show.click(studio.show_model, [model, first_seed], [original, model_msg])
        demo.load(studio.show_model, [model, first_seed], [original, model_msg])
        run = go.click(
            studio.customise,
            [sketches, model, iters, l_image, augment, tune, g_lr],
            [bar, status, live, job_id, ckpt],
            concurrency_limit=None,  # the Customiser queues the jobs; polling runs for everyone
            show_progress="hidden",  # our own bar; the built-in timer animation costs CPU
        )
        explore_inputs = [model, ckpt, first_seed, truncation, alpha, *sigmas]
        explore_outputs = [compare, edited, explore_msg]
        run.then(studio.explore, explore_inputs, explore_outputs).then(
            lambda c: gr.update(value=c), ckpt, download
        )
        stop.click(studio.stop, job_id, status)
        new.click(lambda: int(np.random.default_rng().integers(0, 10**6)), None, first_seed).then(
            studio.explore, explore_inputs, explore_outputs
        )
        for widget in (truncation, alpha, *sigmas):
            widget.release(studio.explore, explore_inputs, explore_outputs)
    return demo


def serve(
    params: Mapping[str, Any], root: Path, host: str, port: int | None, block: bool = True
) -> Any:
    """Launch on ``host:port`` (127.0.0.1 unless the user asks otherwise)."""
    gr = _gradio()
    if host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(
            f"studio: serving on {host}: anyone who can reach it can run jobs on this machine",
            stacklevel=2,
        )
    studio = Studio(params, root)
    demo = build(studio)
    demo.queue(default_concurrency_limit=4)
    out = root / studio.settings.out_dir
    demo.launch(
        server_name=host,
        server_port=int(port or studio.settings.port),
        prevent_thread_lock=not block,
        allowed_paths=[str(out)],
        show_error=True,
        quiet=False,
        theme=gr.themes.Soft(),
    )
    return demo
