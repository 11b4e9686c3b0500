"""The benchmark's report: a run's `clips.jsonl` read back, summarised, and written as a table and a plot.

A run's output folder (`inference.benchmark.run`): `clips.jsonl` (one line per clip, its records for every
method x budget, appended as each clip finishes: `read_lines`), `summary.json` (`summarise`: means with
bootstrap 95% intervals of every metric of `inference.metrics.METRICS` per method x budget, the noise floor, the
goals of issue 7 as ratios of means), `results.md` (`markdown`) and `results.png` (`plot`); `write_report`
writes the last three.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def write_report(clips: list[dict], out_dir: Path) -> dict:
    """clips: run_clip's dicts -> `summary.json`, `results.md` and `results.png` in out_dir; returns the summary."""
    from datagen.atomic import write_text

    out_dir = Path(out_dir)
    summary = summarise(clips)
    write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text(out_dir / "results.md", markdown(summary))
    plot(summary, out_dir / "results.png")
    return summary


def read_lines(path: Path) -> list[dict]:
    """The clips of a clips.jsonl; a last line cut short by an interruption is dropped."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: dropped an unfinished line", path)
    return records


def summarise(clips: list[dict]) -> dict:
    """clips: run_clip's dicts. Per (method, budget): mean and bootstrap 95% interval of each metric and of
    the seconds; the noise floor (over the clips that have one); the goals of issue 7 as ratios of means."""
    from inference.metrics import METRICS, bootstrap_ci

    rows = {}
    for c in clips:
        for r in c["records"]:
            rows.setdefault((r["method"], r["budget"]), []).append(r)
    table = []
    order = list(dict.fromkeys(r["method"] for c in clips for r in c["records"]))  # as the run listed them
    for (method, budget), rs in sorted(rows.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        entry = {"method": method, "budget": budget, "clips": len(rs),
                 "failed": sum(r["metrics"] is None for r in rs),
                 "seconds": bootstrap_ci([r["seconds"] for r in rs])}
        for m in METRICS:
            entry[m] = bootstrap_ci([r["metrics"][m] if r["metrics"] else np.nan for r in rs])
        table.append(entry)
    floors = [c["floor"] for c in clips if c["floor"]]
    floor = {m: bootstrap_ci([f[m] for f in floors]) for m in METRICS} if floors else None
    mss = {(e["method"], e["budget"]): e["mss"]["mean"] for e in table}
    goals = {}
    if ("network", 0) in mss and ("init", 0) in mss:
        goals["network_vs_init_mss"] = mss[("network", 0)] / mss[("init", 0)]
    if ("network", 0) in mss and ("mean", 0) in mss:
        goals["network_vs_mean_mss"] = mss[("network", 0)] / mss[("mean", 0)]
    if ("network+cma", 500) in mss and ("cma-init", 500) in mss:
        goals["network_cma_vs_cma_init_500_mss"] = mss[("network+cma", 500)] / mss[("cma-init", 500)]
    return {"clips": len(clips), "table": table, "noise_floor": floor, "goals": goals}


def _ci(c: dict, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(c["mean"]) else \
        f"{c['mean']:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def markdown(summary: dict) -> str:
    from inference.metrics import METRICS

    lines = [f"Clips: {summary['clips']}. Means with bootstrap 95% intervals; lower is better.", "",
             "| method | budget | " + " | ".join(METRICS) + " | seconds / clip |",
             "|---|---:|" + "---|" * (len(METRICS) + 1)]
    for e in summary["table"]:
        failed = f" ({e['failed']} failed)" if e["failed"] else ""
        lines.append(f"| {e['method']}{failed} | {e['budget']} | " + " | ".join(_ci(e[m]) for m in METRICS)
                     + f" | {_ci(e['seconds'], 2)} |")
    if summary["noise_floor"]:
        lines.append("| *noise floor* (target vs itself) | | "
                     + " | ".join(_ci(summary["noise_floor"][m]) for m in METRICS) + " | |")
    goals = summary["goals"]
    lines.append("")
    if "network_vs_init_mss" in goals:
        lines.append(f"- network alone / init preset, multi-scale spectral distance: "
                     f"{goals['network_vs_init_mss']:.3f} (below 1: the network is better)")
    if "network_vs_mean_mss" in goals:
        g = goals["network_vs_mean_mss"]
        lines.append(f"- network alone / its predict-the-mean constant, multi-scale spectral distance: {g:.3f} "
                     f"({(1 - g) * 100:.1f}% lower; goal >= 15%)")
    if "network_cma_vs_cma_init_500_mss" in goals:
        g = goals["network_cma_vs_cma_init_500_mss"]
        lines.append(f"- network+cma / cma-init at 500 evaluations: {g:.3f} ({(1 - g) * 100:.1f}% lower; goal >= 25%)")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> Path:
    """Multi-scale spectral distance against the budget, one line per method, 95% intervals as bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datagen.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for method in dict.fromkeys(e["method"] for e in summary["table"]):
        es = [e for e in summary["table"] if e["method"] == method]
        x = [max(e["budget"], 1) for e in es]  # budget 0 drawn at 1 on the log axis
        y = [e["mss"]["mean"] for e in es]
        lo, hi = [e["mss"]["low"] for e in es], [e["mss"]["high"] for e in es]
        ax.errorbar(x, y, yerr=[np.subtract(y, lo), np.subtract(hi, y)], marker="o", capsize=3, label=method)
    if summary["noise_floor"]:
        ax.axhline(summary["noise_floor"]["mss"]["mean"], color="grey", ls="--", label="noise floor")
    ax.set_xscale("log")
    ax.set_xlabel("renders spent (budget; 0 drawn at 1)")
    ax.set_ylabel("multi-scale spectral distance")
    ax.set_title(f"{summary['clips']} clips, means with 95% intervals")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
