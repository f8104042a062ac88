"""The ``sketchgan`` command line: one command per DVC stage plus interactive tools.

Stage commands read ``params.yaml`` (the only place settings live) and call the thin modules in
``stages/``; ``dvc.yaml`` calls these commands, so ``dvc repro`` and a hand-run command do the
same thing. Heavy imports happen inside the commands to keep ``--help`` instant.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sketchgan.errors import SketchganError

app = typer.Typer(
    name="sketchgan",
    help="Customise a pretrained StyleGAN2 from a few sketches (Sketch Your Own GAN).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[
    Path, typer.Option("--params", "-p", help="Parameter file (every setting lives here).")
]
STAGE_HELP = {
    "prepare": "Render the embedded world (or import your data): pretrain, image_reg, eval sets "
    "and the user sketches under data/.",
    "pretrain": "Obtain the frozen networks: fetch the named StyleGAN2/PhotoSketch checkpoints, or "
    "train them (and the world evaluator) on the embedded world.",
    "photosketch": "Run the frozen image->sketch network over the eval set and over a pool of "
    "samples of the original generator (used by the baselines).",
    "train": "Fine-tune the generator on the user sketches (GANSketching); resumes after a kill.",
    "sample": "Sample the fine-tuned and the original generator; grids and interpolations.",
    "baselines": "Build the paper's baselines from the original model's pool: Chamfer matching "
    "and sketch-based image retrieval (SBIR).",
    "evaluate": "FID, KID, precision/recall, sketch Chamfer distance and target-match share of "
    "every method vs. the eval set -> reports/evaluation.json (+ its numbers in "
    "reports/metrics.json).",
    "report": "Write reports/benchmark.md and a self-contained reports/benchmark.html.",
}


#: what the user can do about an operating-system error the commands hit while writing
_OS_HINTS = {
    errno.EACCES: "check the permissions of the file and its folder",
    errno.EPERM: "check the permissions of the file and its folder",
    errno.EROFS: "the file system is read-only: write the project somewhere writable",
    errno.ENOSPC: "the disk is full: free space and rerun (training resumes)",
    errno.EFBIG: "the file is larger than this system allows (ulimit -f, or the file system)",
    errno.EDQUOT: "the disk quota is used up: free space and rerun",
}
#: errors that are the user's or the machine's, shown as one line (exit code 2)
USER_ERRORS = (SketchganError, OSError)


def shown_path(path: Any) -> str:
    """Relative to the cwd when inside it: messages name files the way the user does."""
    try:
        return str(Path(os.fsdecode(path)).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, TypeError):
        return str(path)


def describe_error(exc: BaseException) -> str:
    """One line for the user: OS errors with what to do, and every path inside the project
    as the user names it (relative), not as the library built it (absolute)."""
    if isinstance(exc, OSError) and not isinstance(exc, SketchganError):
        where = shown_path(exc.filename) if exc.filename else "I/O"
        hint = _OS_HINTS.get(exc.errno or 0)
        text = exc.strerror or str(exc)
        line = f"{where}: {text}" + (f" ({hint})" if hint else "")
    else:
        line = str(exc)
    for base in {str(Path.cwd()), str(Path.cwd().resolve())}:
        line = line.replace(base + os.sep, "")
    return " ".join(line.split("\n"))


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {describe_error(exc)}", err=True)
    raise typer.Exit(code=2)


def run_stage(
    name: str,
    params_path: Path,
    overrides: dict[str, dict[str, Any]] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Load params (``overrides``: section -> field -> value on top), then call
    ``stages.<name>.run``; user errors become one line, exit code 2."""
    from sketchgan.runtime import load_params

    try:
        params = load_params(params_path)
        for section_name, values in (overrides or {}).items():
            section = params.get(section_name)
            if not isinstance(section, dict):
                raise SketchganError(f"params: '{section_name}' section is missing")
            section.update({k: v for k, v in values.items() if v is not None})
        module = importlib.import_module(f"stages.{name}")
        return module.run(params, **kwargs)
    except USER_ERRORS as exc:
        _fail(exc)
    return {}


def _make_stage_command(name: str) -> None:
    def command(params: ParamsOpt = Path("params.yaml")) -> None:
        run_stage(name, params)

    command.__name__ = name
    command.__doc__ = STAGE_HELP[name]
    app.command(name=name, help=STAGE_HELP[name])(command)


for _stage in STAGE_HELP:
    if _stage != "train":
        _make_stage_command(_stage)


@app.command(help=STAGE_HELP["train"])
def train(
    params: ParamsOpt = Path("params.yaml"),
    iters: Annotated[
        int | None, typer.Option(min=1, help="Override train.iters (more iterations resume).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard this run's resumable state; start over.")
    ] = False,
) -> None:
    run_stage("train", params, {"train": {"iters": iters}}, fresh=fresh)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Output folder for PNG samples and grid.png.")],
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="Generator checkpoint (.pt/.pth, rosinality layout), or a registered model: "
            "models:/sketchgan-finetuned-generator@champion, models:/<name>/<version>."
        ),
    ] = None,
    n: Annotated[int, typer.Option(min=1, help="Number of samples.")] = 16,
    seeds: Annotated[
        str | None,
        typer.Option(help="Exactly these samples of the sequence, e.g. 0-15 or 3,7 (not --n)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the first sample; sample i uses z(seed+i).")
    ] = 0,
    truncation: Annotated[float, typer.Option(help="Truncation psi (1 = none).")] = 1.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    random_init: Annotated[
        bool, typer.Option(help="Use a randomly initialised generator (tests, smoke checks).")
    ] = False,
    size: Annotated[int, typer.Option(help="With --random-init: image size.")] = 32,
    style_dim: Annotated[int, typer.Option(help="With --random-init: style dimension.")] = 64,
    channel_max: Annotated[int, typer.Option(help="With --random-init: channel cap.")] = 64,
) -> None:
    """Sample a generator into a folder of PNGs plus a grid."""
    from sketchgan.generate import generate_samples

    try:
        if checkpoint is None and not random_init:
            raise SketchganError("generate: give --checkpoint PATH or --random-init")
        from sketchgan.generate import parse_seeds

        written = generate_samples(
            out=out,
            checkpoint=checkpoint,
            n=n,
            seeds=parse_seeds(seeds) if seeds is not None else None,
            seed=seed,
            truncation=truncation,
            device=device,
            random_config=(
                {"size": size, "style_dim": style_dim, "n_mlp": 8, "channel_max": channel_max}
                if random_init
                else None
            ),
        )
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"wrote {written} samples and grid.png to {out}")


@app.command()
def interpolate(
    original: Annotated[Path, typer.Option(help="Original generator checkpoint.")],
    finetuned: Annotated[Path, typer.Option(help="Fine-tuned generator checkpoint.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")] = Path("interpolation.png"),
    steps: Annotated[int, typer.Option(min=2, help="Columns from original to fine-tuned.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the latent codes.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
) -> None:
    """Interpolate between the original and the fine-tuned model (weight space and w space)."""
    from sketchgan.generate import interpolate_models

    try:
        interpolate_models(original, finetuned, out, steps=steps, seed=seed, device=device)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"wrote {out}")


@app.command("import-sketches")
def import_sketches_cmd(
    src: Annotated[Path, typer.Argument(help="Folder of your sketches (PNG/JPG/BMP/WebP).")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("data/sketches/images"),
    size: Annotated[int, typer.Option(min=8, help="Model resolution.")] = 32,
) -> None:
    """Normalise hand-drawn sketches: grey, dark strokes on white, square, model size."""
    from sketchgan.data.sketch_import import import_sketches

    try:
        written = import_sketches(src, out, size)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"imported {len(written)} sketches into {out}")


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Known checkpoint name, URL or path.")],
    cache_dir: Annotated[Path, typer.Option(help="Download cache.")] = Path("models/cache"),
) -> None:
    """Download a known checkpoint (SHA-256 checked, atomic) into the cache."""
    from sketchgan.checkpoints import resolve_checkpoint

    try:
        path = resolve_checkpoint(name, cache_dir)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(str(path))


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Bind address (loopback unless you mean it).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port.")] = 5000,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Browse the MLflow runs and registered models of this project."""
    from sketchgan.mlflow_ui import serve_ui
    from sketchgan.runtime import load_params

    uri = None
    if params.is_file():
        uri = (load_params(params).get("tracking") or {}).get("uri")
    try:
        serve_ui(host=host, port=port, uri=uri)
    except USER_ERRORS as exc:
        _fail(exc)


@app.command()
def studio(
    host: Annotated[
        str, typer.Option(help="Bind address; anything but loopback lets others run jobs here.")
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (default: studio.port).")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Draw sketches in the browser, customise the GAN, explore the result (Gradio app)."""
    from sketchgan.runtime import load_params, repo_root
    from sketchgan.studio.app import serve

    try:
        serve(load_params(params), repo_root(), host, port)
    except USER_ERRORS as exc:
        _fail(exc)


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # stages/ lives at the repo root; make it importable when run from a checkout
    from sketchgan.runtime import repo_root  # torch: imported only when a command runs

    root = str(repo_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    app()


if __name__ == "__main__":
    main()
