"""The predict-the-mean baseline: the constant a model must beat.

It ignores the audio and predicts, head by head (`Head.baseline` in `training.heads`), the masked mean of every
continuous parameter and the masked mode of every categorical one and of each oscillator's wavetable (heads
without one, such as modulation, are left out: the constant routes nothing), fitted on a split of a data set
with the loss' masks. `training evaluate` scores it beside the model; the trainer stores it in every checkpoint,
so inference can decode the constant (the "mean" preset of `inference benchmark`) and a model is judged against
it by sound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK_ROWS = 4096  # rows read at a time when fitting the baseline


@dataclass(frozen=True)
class Sizes:
    """What the heads' baselines need to know (their `ctx`)."""

    spec: object  # training.losses.MaskSpec
    predicted: tuple[int, ...]  # predicted categorical columns
    n_wavetables: int  # wavetable classes: the catalog's size + 1


def _heads() -> dict:
    from training.heads import HEADS

    return {name: head for name, head in HEADS.items() if head.baseline is not None}


def fit_baseline(paths, *, spec, predicted_categorical, n_wavetables: int, split: str | None) -> dict:
    """Fit every head's baseline on the rows of `split` (None: every row) of `paths`. Returns, JSON-able (as
    checkpoints store it), one constant per head with a baseline: continuous (n_cont,) masked means, categorical
    the masked mode class per predicted column (predicted_categorical order), wavetable the masked mode class
    per oscillator (0 = init table); a column never unmasked falls back to its unmasked mean / mode. Also n_rows
    (0 when the split has no rows)."""
    sizes = Sizes(spec=spec, predicted=tuple(int(i) for i in predicted_categorical), n_wavetables=n_wavetables)
    fits = {name: head.baseline(sizes) for name, head in _heads().items()}
    n_rows = 0
    for rows, masks in _chunks(paths, spec=spec, split=split, columns=list(fits)):
        n_rows += len(rows["categorical"])
        for fit in fits.values():
            fit.update(rows, masks)
    return {**{name: fit.result() for name, fit in fits.items()}, "n_rows": n_rows}


def _chunks(paths, *, spec, split: str | None, columns: list[str]):
    """Yield (rows, masks) for the rows of `split` in `paths`, _CHUNK_ROWS at a time: rows holds the data
    set's `columns` and categorical (int64), masks the loss' masks of those rows (float64 numpy)."""
    import h5py
    import torch

    from datagen.dataset import SPLITS
    from training.data import routed_from_slots
    from training.losses import masks

    for path in paths:
        with h5py.File(path, "r") as f:
            total = len(f["midi_note"])
            for start in range(0, total, _CHUNK_ROWS):
                sl = slice(start, min(start + _CHUNK_ROWS, total))
                keep = np.ones(sl.stop - sl.start, bool) if split is None \
                    else f["split"][sl] == SPLITS.index(split)
                if not keep.any():
                    continue
                rows = {name: f[name][sl][keep] for name in columns}
                rows["categorical"] = f["categorical"][sl][keep].astype(np.int64)  # (n, n_cat)
                m = masks(spec, torch.from_numpy(rows["categorical"]), routed_from_slots(
                    f["modulation"][sl][keep], n_sources=spec.n_sources))
                yield rows, {k: v.double().numpy() for k, v in m.items()}


def baseline_outputs(fit: dict, *, batch_size: int, spec, predicted_categorical, n_wavetables: int) -> dict:
    """The baseline's constant "model outputs" for a batch of `batch_size`, one entry per head with a baseline
    (continuous (B, n_cont), one-hot categorical and wavetable logits; no modulation: the baseline predicts no
    connections). fit: `fit_baseline`'s result or a checkpoint's "baseline"."""
    sizes = Sizes(spec=spec, predicted=tuple(int(i) for i in predicted_categorical), n_wavetables=n_wavetables)
    return {name: head.baseline.outputs(fit[name], batch_size, sizes) for name, head in _heads().items()}
