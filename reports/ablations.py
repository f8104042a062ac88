"""The paper's ablations as DVC experiments, and the table ``reports/ablations.md``.

Each row is one ``dvc exp run -n abl-<name> -S ...`` on the committed embedded default (params
only), run one after the other in the workspace (params.yaml is restored from git and dvc.lock to
what `make demo` wrote between rows, so every row differs from the default in its own settings
only). After each run
``reports/evaluation.json`` is copied to ``reports/ablations/<name>.json``; the table is then built
from those files. The full method and the two baselines are also run at seeds 1 and 2 (the global
``seed``: new sketches, eval set, pools and training draws) for mean +/- sd.

Usage (from the project root, after `make demo` and a commit):
    .venv/bin/python reports/ablations.py run      # all rows (~5 minutes each on 2 CPU cores)
    .venv/bin/python reports/ablations.py run full,w_shift   # only these rows
    .venv/bin/python reports/ablations.py table    # rebuild reports/ablations.md from the JSON
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports/ablations"
DVC = str(ROOT / ".venv/bin/dvc")

#: name -> (settings, the paper's claim)
ROWS: dict[str, tuple[list[str], str]] = {
    "full": ([], "the method (mapping-only tuning, image regularisation, translation)"),
    "no_image_reg": (
        ["train.l_image=0"],
        "image regularisation is vital for quality (FID and diversity degrade without it)",
    ),
    "weight_reg": (
        ["train.l_image=0", "train.l_weight=0.7"],
        "weight regularisation works, slightly worse than image regularisation",
    ),
    "no_augment": (["train.augment=false"], "augmentation helps some sketch sets, not all"),
    "full_generator": (["train.tune=full"], "tuning the whole generator overfits, with artefacts"),
    "w_shift": (["train.tune=w_shift"], "a single w offset is a weaker customisation"),
    "single_sketch": (
        ["prepare.n_sketches=1", "train.batch=1"],
        "the method works from a single sketch",
    ),
    "budget_g_lr": (
        ["train.g_lr=0.15"],
        "(not the paper's: G's lr x75 so the mapping's total Adam steps match 75,001 iterations)",
    ),
}
SEEDS = (1, 2)
COLUMNS = (
    ("fid", "FID", "{:.1f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("chamfer", "sketch Chamfer", "{:.2f}"),
    ("shape_match", "shape match", "{:.1%}"),
    ("target_match", "target match", "{:.1%}"),
    ("colour_spread", "colour spread", "{:.3f}"),
)


def _sh(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    # the stages call the `sketchgan` CLI: the project's venv first on PATH, as `make` does
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)


#: dvc.lock as the default's `make demo` wrote it (the workspace's outputs): restoring this one,
#: not git's, between rows keeps the stage timing files it lists in step with the outputs, so a
#: row reruns only the stages its settings change
BASE_LOCK = ROOT / "outputs/ablations_base.dvc.lock"


def _restore() -> None:
    _sh("git", "checkout", "--", "params.yaml")
    if not BASE_LOCK.is_file():
        BASE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "dvc.lock", BASE_LOCK)
    shutil.copyfile(BASE_LOCK, ROOT / "dvc.lock")


def run_row(name: str, settings: list[str]) -> None:
    _restore()
    t0 = time.time()
    args = [DVC, "exp", "run", "-n", f"abl-{name}"]
    for s in settings:
        args += ["-S", s]
    _sh(*args)
    OUT.mkdir(parents=True, exist_ok=True)
    metrics = json.loads((ROOT / "reports/evaluation.json").read_text())
    metrics["ablation"] = {"settings": settings, "seconds": round(time.time() - t0)}
    (OUT / f"{name}.json").write_text(json.dumps(metrics, indent=1))


def _all_rows() -> dict[str, list[str]]:
    rows = {name: settings for name, (settings, _claim) in ROWS.items()}
    rows.update({f"seed{seed}": [f"seed={seed}"] for seed in SEEDS})
    return rows


def run_all(only: list[str] | None = None) -> None:
    """Every row not yet measured (or the ``only`` ones), then the default again."""
    rows = _all_rows()
    for name in only or list(rows):
        if not (OUT / f"{name}.json").exists():
            run_row(name, rows[name])
    _restore()
    _sh(DVC, "checkout", "-f")
    # the workspace shows the committed default again (its stage outputs come from the cache)
    if (OUT / "full.json").exists():
        shutil.copyfile(OUT / "full.json", ROOT / "reports/evaluation.json")


def _load(name: str) -> dict:
    return json.loads((OUT / f"{name}.json").read_text())


def _cell(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _mean_sd(values: list[float], fmt: str) -> str:
    if len(values) < 2:
        return _cell(values[0] if values else None, fmt)
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def table() -> str:
    lines = [
        "# Ablations of the embedded default (the paper's, reproduced)",
        "",
        "Made by `.venv/bin/python reports/ablations.py run` then `... table` on a commit whose",
        "`make demo` wrote the default results; each row is one `dvc exp run -S ...` "
        "(params only). 1,000 samples per row vs the 1,000 eval scenes, world-evaluator "
        "features, best-FID checkpoint. Definitions: *target match* = share of samples the "
        "world evaluator reads as the sketched shape in the sketched pose; *shape match* = share "
        "read as the sketched shape (any pose); *sketch Chamfer* = mean distance in pixels from "
        "each sample's sketch to the nearest user sketch; *colour spread* = std over samples of "
        "the mean colour (diversity of appearance).",
        "",
        "| row | settings | " + " | ".join(h for _, h, _ in COLUMNS) + " | paper's claim |",
        "|---|---|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for name, (settings, claim) in ROWS.items():
        if not (OUT / f"{name}.json").exists():
            continue
        m = _load(name)["methods"]["finetuned"]
        cells = " | ".join(_cell(m.get(k), f) for k, _, f in COLUMNS)
        lines.append(f"| {name} | {' '.join(settings) or 'default'} | {cells} | {claim} |")
    lines += ["", "## Three seeds (global `seed` 0, 1, 2): mean ± sd", ""]
    lines += [
        "| method | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    runs = [
        _load(n) for n in ("full", *(f"seed{s}" for s in SEEDS)) if (OUT / f"{n}.json").exists()
    ]
    for method in ("finetuned", "original", "chamfer", "sbir"):
        vals = [r["methods"][method] for r in runs]
        cells = " | ".join(
            _mean_sd([v[k] for v in vals if v.get(k) is not None], f) for k, _, f in COLUMNS
        )
        lines.append(f"| {runs[0]['methods'][method]['label']} (n={len(vals)}) | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "table"
    os.chdir(ROOT)
    if what == "run":
        run_all(sys.argv[2].split(",") if len(sys.argv) > 2 else None)
    text = table()
    md = ROOT / "reports/ablations.md"
    # the hand-written claim check below the marker survives a rebuild of the table
    kept = ""
    if md.exists() and CLAIMS_MARKER in md.read_text():
        kept = md.read_text().split(CLAIMS_MARKER, 1)[1]
    md.write_text(text + "\n" + CLAIMS_MARKER + kept)
    print(text)


CLAIMS_MARKER = "<!-- claim check (written by hand from the table above) -->"

if __name__ == "__main__":
    main()
