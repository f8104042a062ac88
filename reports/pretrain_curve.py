"""efid-vs-kimg curves of the long pretraining runs -> reports/pretrain_curve.{md,png}.

Reads ``<run>/curve.jsonl`` (written by ``reports/pretrain_long.py``) and ``settings.json`` of
each run folder given, plots efid (log scale) against kimg, and writes the per-chunk table.

Usage:
    .venv/bin/python reports/pretrain_curve.py outputs/zoo/runA outputs/zoo/runC
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("it", "kimg", "ms_per_iter", "efid", "precision", "recall", "shape_star", "target_share")


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "curve.jsonl").read_text().splitlines() if x]


def main() -> None:
    runs = [Path(p) for p in sys.argv[1:]]
    fig, ax = plt.subplots(figsize=(7, 4))
    lines = [
        "# Long pretraining runs: efid against images seen",
        "",
        "Written by `reports/pretrain_curve.py` from the runs' `curve.jsonl`"
        " (`reports/pretrain_long.py`). After every chunk, g_ema (psi 1) is scored on 2,000"
        " samples against 2,000 fresh renders in world-evaluator features (efid; the same"
        " protocol at 10,000 vs 10,000 is the zoo's bar, in `src/sketchgan/zoo/zoo.yaml`)."
        " ms/it is wall time per iteration on one thread while two runs shared the 2 cores.",
        "",
        "![efid vs kimg](figures/pretrain_curve.png)",
        "",
    ]
    for run in runs:
        rows = _rows(run)
        settings = json.loads((run / "settings.json").read_text())
        label = f"{run.name}: {json.dumps(settings['over'])}"
        ax.plot([r["kimg"] for r in rows], [r["efid"] for r in rows], marker=".", label=label)
        lines += [f"## {run.name}", "", f"`{settings['command']}`", ""]
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---:|" * len(COLUMNS)]
        for r in rows:
            lines.append("| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |")
        lines.append("")
    ax.set_xlabel("kimg (thousands of real images shown to D)")
    ax.set_ylabel("efid (log)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    (ROOT / "reports/figures").mkdir(parents=True, exist_ok=True)
    fig.savefig(ROOT / "reports/figures/pretrain_curve.png", dpi=110)
    (ROOT / "reports/pretrain_curve.md").write_text("\n".join(lines))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return "—" if v is None else str(v)


if __name__ == "__main__":
    main()
