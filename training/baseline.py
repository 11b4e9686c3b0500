"""The predict-the-mean baseline: the constant a model must beat.

It ignores the audio and predicts the masked mean of every continuous parameter and the masked mode of every
categorical one (and of each oscillator's wavetable), fitted on a split of a data set with the loss' masks.
`training evaluate` scores it beside the model; the trainer stores it in every checkpoint, so inference can
decode the constant (the "mean" preset of `inference benchmark`) and a model is judged against it by sound.
"""

from __future__ import annotations

import numpy as np

from datagen.registry import N_OSCILLATORS, OSCILLATORS

_CHUNK_ROWS = 4096  # rows read at a time when fitting the baseline


def fit_baseline(paths, *, spec, predicted_categorical, n_wavetables: int, split: str | None) -> dict:
    """Masked mean of each continuous column, masked mode of each predicted categorical column and of each
    oscillator's wavetable class (0 = init table), over the rows of `split` (None: every row) of `paths`.
    A column never unmasked falls back to its unmasked mean / mode. Returns continuous (n_cont,) float32,
    categorical {column: class}, wavetable (3,) int64, n_rows (0 when the split has no rows)."""
    import h5py
    import torch

    from datagen.dataset import SPLITS
    from training.data import routed_from_slots
    from training.losses import masks

    n_cont = len(spec.continuous_names)
    predicted = [int(i) for i in predicted_categorical]
    osc_switch = [spec.categorical_names.index(f"{osc}_on") for osc in OSCILLATORS]
    sums = np.zeros((2, n_cont))  # masked, unmasked
    counts = np.zeros((2, n_cont))
    votes = {i: np.zeros((2, spec.categorical_classes[i])) for i in predicted}
    wt_votes = np.zeros((2, N_OSCILLATORS, n_wavetables))
    n_rows = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            total = len(f["midi_note"])
            for start in range(0, total, _CHUNK_ROWS):
                sl = slice(start, min(start + _CHUNK_ROWS, total))
                keep = np.ones(sl.stop - sl.start, bool) if split is None \
                    else f["split"][sl] == SPLITS.index(split)
                if not keep.any():
                    continue
                cont = f["continuous"][sl][keep].astype(np.float64)  # (n, n_cont)
                cat = f["categorical"][sl][keep].astype(np.int64)  # (n, n_cat)
                wt = f["wavetable"][sl][keep].astype(np.int64) + 1  # (n, 3) classes
                m = masks(spec, torch.from_numpy(cat), routed_from_slots(
                    f["modulation"][sl][keep], n_sources=spec.n_sources))
                mc = m["continuous"].double().numpy()
                mk = m["categorical"].double().numpy()
                n_rows += len(cont)
                sums += [(mc * cont).sum(0), cont.sum(0)]
                counts += [mc.sum(0), np.full(n_cont, float(len(cont)))]
                for i in predicted:
                    k = spec.categorical_classes[i]
                    votes[i] += [np.bincount(cat[:, i], weights=mk[:, i], minlength=k)[:k],
                                 np.bincount(cat[:, i], minlength=k)[:k]]
                on = (cat[:, osc_switch] == 1).astype(np.float64)
                for o in range(N_OSCILLATORS):
                    wt_votes[:, o] += [np.bincount(wt[:, o], weights=on[:, o], minlength=n_wavetables)[:n_wavetables],
                                       np.bincount(wt[:, o], minlength=n_wavetables)[:n_wavetables]]
    pick = lambda v: 0 if v[0].sum() > 0 else 1  # noqa: E731  masked statistics unless nothing was unmasked
    mean = np.where(counts[0] > 0, sums[0] / np.maximum(counts[0], 1), sums[1] / np.maximum(counts[1], 1))
    return {
        "continuous": mean.astype(np.float32),
        "categorical": {i: int(v[pick(v)].argmax()) for i, v in votes.items()},
        "wavetable": np.array([int(wt_votes[pick(wt_votes[:, o]), o].argmax()) for o in range(N_OSCILLATORS)],
                              np.int64),
        "n_rows": n_rows,
    }


def baseline_outputs(fit: dict, *, batch_size: int, spec, predicted_categorical, n_wavetables: int) -> dict:
    """The baseline's constant "model outputs" for a batch: continuous (B, n_cont), one-hot categorical and
    wavetable logits (no modulation head: the baseline predicts no connections)."""
    import torch

    def one_hot(k: int, n: int) -> torch.Tensor:
        z = torch.zeros(batch_size, n)
        z[:, k] = 1.0
        return z

    return {
        "continuous": torch.from_numpy(fit["continuous"]).expand(batch_size, -1),
        "categorical": [one_hot(fit["categorical"][i], spec.categorical_classes[i]) for i in predicted_categorical],
        "wavetable": [one_hot(int(k), n_wavetables) for k in fit["wavetable"]],
    }
