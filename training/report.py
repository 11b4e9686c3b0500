"""Reports on disk: the evaluation's report.json and figure of target vs predicted log-mels, and the training run's
loss curves (loss.png)."""

from __future__ import annotations

import json
from pathlib import Path

MAX_FIGURE_ITEMS = 4  # rendered items shown in spectrograms.png


class Report(dict):
    """The JSON-able report of `training.evaluate.evaluate`. `examples` (not part of the JSON) carries the
    log-mels of up to MAX_FIGURE_ITEMS rendered items for `write_report`'s figure: dicts with title, target,
    predicted ((n_mels, n_frames) float32 each)."""

    examples: list

    def __init__(self, *args, examples: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.examples = examples or []


def write_report(report: dict, out_dir) -> dict[str, Path]:
    """Write report.json and, when the report has rendered examples, spectrograms.png (target vs predicted
    log-mel, one row per item). Returns {"report": path, "spectrograms": path (when written)}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.json"}
    tmp = paths["report"].with_name("report.json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(paths["report"])
    examples = getattr(report, "examples", [])
    if examples:
        paths["spectrograms"] = out / "spectrograms.png"
        _plot_examples(examples, paths["spectrograms"])
    return paths


def _plot_examples(examples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 2, figsize=(9, 2.6 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples):
        lo = float(min(ex["target"].min(), ex["predicted"].min()))
        hi = float(max(ex["target"].max(), ex["predicted"].max()))
        for ax, key in zip(row, ("target", "predicted")):
            ax.imshow(ex[key], origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(f"{key}: {ex['title']}", fontsize=8)
            ax.set_xlabel("frame")
            ax.set_ylabel("mel bin")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_history(history: list[dict], path: Path) -> None:
    """loss.png: train and validation curves of the total loss and of each head's part, one panel each (a
    head that overfits shows as its validation curve rising while the others fall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.heads import HEADS

    panels = ["loss", *(f"loss/{name}" for name in HEADS)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
    epochs = [r["epoch"] for r in history]
    for ax, key in zip(axes, panels):
        for split in ("train", "val"):
            values = [r.get(f"{split}/{key}") for r in history]
            if all(v is not None for v in values):
                ax.plot(epochs, values, label=split)
        ax.set_title(key.split("/")[-1] if "/" in key else "total")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
