"""Build the embedded model zoo shipped in the package: weights, sha256 pins and provenance.

Takes the generator of a long pretraining run (``reports/pretrain_long.py``), trains the sketch
net on world (scene, contour) pairs with the ``pretrain_sketch`` settings of params.yaml, takes
the world evaluator the run was scored with, scores the generator at the issue's bar (g_ema,
psi 1, 10,000 samples vs 10,000 fresh renders, evaluator features), and writes
``src/sketchgan/zoo/{world32-stylegan2,world32-photosketch,world32-evaluator}.pt`` plus
``src/sketchgan/zoo/zoo.yaml`` (the registry entries: kind, sha256, config, provenance).

Usage:
    .venv/bin/python reports/build_zoo.py --run outputs/zoo/runA --it 12000

``--deep GEN.pt --deep-log LOG`` replaces only the default generator: GEN is the shipped one
with the paper's 8-layer mapping regressed onto it (``reports/deep_mapping.py``, whose JSON line
is LOG). The 2-layer generator it came from stays in the zoo as ``world32-stylegan2-map2``
(same file, pin and provenance: the reports made with it stay reproducible by name), and the
sketch net and evaluator entries are kept as they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from sketchgan.checkpoints import load_discriminator, load_generator, save_generator_checkpoint
from sketchgan.data import world
from sketchgan.evaluation.evaluator import load_evaluator, save_evaluator
from sketchgan.evaluation.zoo_quality import generator_quality, real_vs_real_efid
from sketchgan.io import sha256_file
from sketchgan.training.pretrain import SketchNetConfig, train_sketch_net

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src/sketchgan/zoo"


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _curve(run: Path, upto: int) -> list[dict]:
    rows = [json.loads(x) for x in (run / "curve.jsonl").read_text().splitlines() if x]
    return [r for r in rows if r["it"] <= upto]


def _rounded(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def ship_generator(src: Path) -> tuple[dict, dict]:
    """Write ``src``'s g_ema, g and d as the default generator file (strictly reloaded) and
    score it at the zoo's bar; returns its config and quality figures."""
    g_ema, cfg = load_generator(src)
    g, _ = load_generator(src, key="g")
    d, _ = load_discriminator(src)
    save_generator_checkpoint(ZOO / "world32-stylegan2.pt", g_ema, g=g, d=d, config=cfg)
    evaluator = load_evaluator(ZOO / "world32-evaluator.pt")
    t0 = time.time()
    quality = generator_quality(g_ema, evaluator, n=10000, seed=0)
    quality["real_vs_real_efid"] = real_vs_real_efid(evaluator, n=10000)
    print(f"scored in {time.time() - t0:.0f} s: {json.dumps(_rounded(quality))}", flush=True)
    return cfg, quality


def build_generator(run: Path, it: int, cmd: str, commit: str) -> dict:
    cfg, quality = ship_generator(run / f"generator_{it:06d}.pt")
    dest = ZOO / "world32-stylegan2.pt"
    curve = _curve(run, it)
    settings = json.loads((run / "settings.json").read_text())
    return {
        "kind": "sketchgan_generator",
        "url": "package:zoo/world32-stylegan2.pt",
        "sha256": sha256_file(dest),
        "wrapper_key": "g_ema",
        "config": cfg,
        "download": "auto",
        "notes": "embedded world, 32 px StyleGAN2 (g_ema, g, d); the default generator",
        "provenance": {
            "command": cmd,
            "pretraining_command": settings["command"],
            "git_commit": commit,
            "training_data": (
                f"sketchgan.data.world.render_scenes({settings['scenes']}, 32, seed=0)"
            ),
            "settings": settings["over"],
            "iterations": it,
            "kimg": curve[-1]["kimg"],
            "train_wall_s": round(sum(r["chunk_train_s"] for r in curve)),
            "machine": f"{_cpu_model()}, {settings['threads']} thread(s), CPU, torch "
            f"{torch.__version__}",
            "quality": {
                "protocol": "g_ema psi 1, 10,000 samples vs 10,000 fresh renders, world-evaluator "
                "features (world32-evaluator), precision/recall k=3",
                **_rounded(quality),
            },
        },
    }


SHALLOW = "world32-stylegan2-map2"


def build_deep_generator(src: Path, log: Path, cmd: str, commit: str, old: dict) -> dict:
    """The registry entry of the deep-mapping generator; ``old`` is the 2-layer entry it was
    regressed onto (its provenance is carried inside the new one)."""
    cfg, quality = ship_generator(src)
    dest = ZOO / "world32-stylegan2.pt"
    distil = json.loads(log.read_text().strip().splitlines()[-1])
    steps, batch = distil["steps"], distil["batch"]
    return {
        **{k: old[k] for k in ("kind", "wrapper_key", "download")},
        "url": "package:zoo/world32-stylegan2.pt",
        "sha256": sha256_file(dest),
        "config": cfg,
        "notes": "embedded world, 32 px StyleGAN2 (g_ema, g, d) with the paper's 8-layer "
        f"mapping; the default generator (synthesis and D of {SHALLOW})",
        "provenance": {
            "command": cmd,
            "distil_command": f"python reports/deep_mapping.py models/pretrained/generator.pt "
            f"{src.name} --n-mlp {distil['n_mlp']} --steps {steps} --batch {batch} --lr "
            f"{distil['lr']} --seed {distil['seed']} (models/pretrained/generator.pt = {SHALLOW})",
            "git_commit": commit,
            "method": f"synthesis network, noise buffers and discriminator of {SHALLOW} copied; "
            f"a fresh {distil['n_mlp']}-layer mapping (StyleGAN2 init, seed {distil['seed']}) "
            f"regressed onto {SHALLOW}'s w for {steps} x {batch} fresh z (Adam, cosine lr)",
            "w_error": {
                "relative_mse_init": distil["w_error_init"],
                "relative_mse": distil["w_error"][-1][1],
            },
            "distil_wall_s": distil["wall_s"],
            "distilled_from": {"name": SHALLOW, "sha256": old["sha256"]},
            "machine": f"{_cpu_model()}, 1 thread, CPU, torch {torch.__version__}",
            "quality": {
                "protocol": "g_ema psi 1, 10,000 samples vs 10,000 fresh renders, world-evaluator "
                "features (world32-evaluator), precision/recall k=3",
                **_rounded(quality),
            },
        },
    }


def replace_default_generator(src: Path, log: Path, cmd: str, commit: str) -> dict:
    """zoo.yaml's entries with the deep generator as the default and the 2-layer one kept."""
    entries = yaml.safe_load((ZOO / "zoo.yaml").read_text())["checkpoints"]
    if SHALLOW in entries:
        # run twice, the copy below would ship the deep file as its own 2-layer parent
        raise SystemExit(f"zoo.yaml: {SHALLOW} is already there; the default is already deep")
    old = entries.pop("world32-stylegan2")
    shallow_file = ZOO / f"{SHALLOW}.pt"
    shutil.copyfile(ZOO / "world32-stylegan2.pt", shallow_file)
    if sha256_file(shallow_file) != old["sha256"]:
        raise SystemExit(f"{shallow_file}: does not match the pin of the entry it keeps")
    old = {**old, "url": f"package:zoo/{SHALLOW}.pt"}
    old["notes"] = (
        "embedded world, 32 px StyleGAN2 with a 2-layer mapping (the default until "
        "its 8-layer copy world32-stylegan2; reports/mapping_long_run.md ran on it)"
    )
    deep = build_deep_generator(src, log, cmd, commit, old)
    return {**entries, "world32-stylegan2": deep, SHALLOW: old}


def build_sketch_net(cmd: str, commit: str, reuse: bool = False) -> dict:
    """Train the sketch net (or, with ``reuse``, take the last one trained here as it is)."""
    work = ROOT / "outputs/zoo/sketch_net"
    if reuse and (work / "entry.json").is_file():
        entry = json.loads((work / "entry.json").read_text())
        (ZOO / "world32-photosketch.pt").write_bytes((work / "photosketch.pt").read_bytes())
        entry["sha256"] = sha256_file(ZOO / "world32-photosketch.pt")
        return entry
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = SketchNetConfig.from_dict({**params["pretrain_sketch"], "seed": 0, "device": "cpu"})
    images, contours, _ = world.render_scenes(10000, 32, seed=0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    t0 = time.time()
    info = train_sketch_net(x, torch.from_numpy(contours), cfg, work)
    wall = time.time() - t0
    dest = ZOO / "world32-photosketch.pt"
    dest.write_bytes((work / "photosketch.pt").read_bytes())
    entry = {
        "kind": "sketchgan_photosketch",
        "url": "package:zoo/world32-photosketch.pt",
        "sha256": sha256_file(dest),
        "wrapper_key": "state",
        "config": cfg.model_config(),
        "download": "auto",
        "notes": "embedded world, 32 px image->contour net (PhotoSketch ResNet architecture)",
        "provenance": {
            "command": cmd,
            "git_commit": commit,
            "training_data": "sketchgan.data.world.render_scenes(10000, 32, seed=0) contours",
            "settings": params["pretrain_sketch"],
            "iterations": cfg.iterations,
            "train_wall_s": round(wall, 1),
            "machine": f"{_cpu_model()}, {torch.get_num_threads()} thread(s), CPU",
            "quality": _rounded(
                {k: float(v) for k, v in info.items() if k.startswith("val") and _num(v)}
            ),
        },
    }
    (work / "entry.json").write_text(json.dumps(entry, indent=1))
    return entry


def _num(v) -> bool:
    return isinstance(v, int | float) or (isinstance(v, torch.Tensor) and v.numel() == 1)


def build_evaluator(src: Path, cmd: str, commit: str) -> dict:
    model = load_evaluator(src)
    dest = ZOO / "world32-evaluator.pt"
    save_evaluator(model, dest)
    return {
        "kind": "world_evaluator",
        "url": "package:zoo/world32-evaluator.pt",
        "sha256": sha256_file(dest),
        "wrapper_key": "state",
        "config": {"size": int(model.config["size"]), "width": int(model.config["width"])},
        "download": "auto",
        "notes": "embedded world attribute net: fallback FID features and target match",
        "provenance": {
            "command": cmd,
            "git_commit": commit,
            "training": "sketchgan.evaluation.evaluator.train_evaluator(32, n_train=10000, "
            "iters=1000, batch=64, seed=7) (params.yaml evaluator section, seed 0 + 7)",
            "machine": f"{_cpu_model()}, CPU",
        },
    }


def zoo_figure(path: Path, n: int = 10) -> None:
    """4x nearest-neighbour panel: rows of shipped-generator samples (psi 1) and real renders."""
    from sketchgan.report import comparison_panel

    g, _ = load_generator(ZOO / "world32-stylegan2.pt")
    z = torch.randn(3 * n, g.style_dim, generator=torch.Generator().manual_seed(2026))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fake = g.eval()([z])[0].clamp(-1, 1)
    real = world.render_scenes(n, 32, seed=99)[0]
    real_t = torch.from_numpy(real).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    rows = [(f"generator, psi 1 ({i + 1})", fake[i * n : (i + 1) * n]) for i in range(3)]
    comparison_panel([*rows, ("real renders", real_t)], path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--it", type=int, default=None)
    ap.add_argument("--deep", type=Path, default=None, help="the deep-mapping generator")
    ap.add_argument("--deep-log", type=Path, default=None, help="its deep_mapping.py JSON line")
    ap.add_argument("--evaluator", type=Path, default=ROOT / "outputs/zoo/evaluator.pt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse-sketch", action="store_true", help="keep the last trained sketch net")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ZOO.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(["python", "reports/build_zoo.py", *sys.argv[1:]])
    commit = _git_commit()
    if a.deep is not None:
        if a.deep_log is None:
            raise SystemExit("--deep needs --deep-log (the deep_mapping.py line)")
        entries = replace_default_generator(a.deep, a.deep_log, cmd, commit)
    elif a.run is None or a.it is None:
        raise SystemExit("give --run and --it (a pretraining run), or --deep and --deep-log")
    else:
        entries = {"world32-evaluator": build_evaluator(a.evaluator, cmd, commit)}
        entries["world32-photosketch"] = build_sketch_net(cmd, commit, reuse=a.reuse_sketch)
        entries["world32-stylegan2"] = build_generator(a.run, a.it, cmd, commit)
    header = (
        "# The embedded model zoo, shipped inside the package (written by reports/build_zoo.py;\n"
        f"# {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC). Resolved by name like\n"
        "# known_checkpoints.yaml; a file whose sha256 differs from its pin is refused.\n"
    )
    text = yaml.safe_dump({"checkpoints": entries}, sort_keys=False, width=100)
    (ZOO / "zoo.yaml").write_text(header + text)
    zoo_figure(ROOT / "reports/figures/zoo_samples.png")
    total = sum(os.path.getsize(ZOO / f"{n}.pt") for n in entries)
    print(f"zoo: {total / 1e6:.2f} MB in {len(entries)} files", flush=True)


if __name__ == "__main__":
    main()
