"""The learnability ladder's table (research/learnability.md) from `training evaluate` reports.

    python research/scripts/ladder_table.py research/bench/ladder/tier1 research/bench/ladder/tier2 ...
"""

import json
import sys
from pathlib import Path


def row(folder: Path) -> str:
    r = json.loads((folder / "report.json").read_text())
    b = r["baseline"]
    n_tables = 45  # 44 catalog tables + the init table
    cells = [folder.name, f"{r['n_items']}",
             f"{r['continuous_mae']:.4f} / {b['continuous_mae']:.4f} = **{r['continuous_mae'] / b['continuous_mae']:.3f}**",
             f"{r['categorical_accuracy']:.3f} / {b['categorical_accuracy']:.3f} "
             f"({100 * (r['categorical_accuracy'] - b['categorical_accuracy']):+.1f} pts)"]
    if r.get("wavetable_count") and b.get("wavetable_accuracy", 0) < 1.0:  # tier 1: every table is init
        cells.append(f"{r['wavetable_accuracy']:.3f} ({r['wavetable_accuracy'] * n_tables:.1f}x chance)")
    else:
        cells.append("-")
    p, rc = r.get("modulation_precision"), r.get("modulation_recall")
    cells.append("-" if not (r.get("modulation_tp", 0) + r.get("modulation_fn", 0)) else f"{p or 0:.3f} / {rc or 0:.3f}")
    sd = r.get("spectral_distance") or {}
    cells.append(f"{sd['mean']:.2f} vs init {sd['init_mean']:.2f}" if sd.get("mean") is not None else "-")
    return "| " + " | ".join(cells) + " |"


def modules(folder: Path, k: int = 6) -> str:
    r = json.loads((folder / "report.json").read_text())
    b = r["baseline"]["continuous_mae_by_group"]
    ratios = sorted((m / b[g], g) for g, m in r["continuous_mae_by_group"].items() if m is not None and b.get(g))
    return f"{folder.name}: " + ", ".join(f"{g} {x:.2f}" for x, g in ratios[:k]) + " ... " + \
        ", ".join(f"{g} {x:.2f}" for x, g in ratios[-3:])


if __name__ == "__main__":
    folders = [Path(a) for a in sys.argv[1:]]
    print("| run | test rows | audible continuous MAE: model / mean = ratio | categorical accuracy: model / mode | "
          "wavetable accuracy | modulation precision / recall | spectral distance (16 rows) |")
    print("|---|---|---|---|---|---|---|")
    for f in folders:
        print(row(f))
    print()
    for f in folders:
        print("- per-module MAE ratio (best ... worst): " + modules(f))
