"""Learnability probe (issue 15): can a ridge regression on simple mel statistics beat predict-the-mean on a
data set's test split, parameter by parameter? If it can where the network cannot, the network is
under-trained; if neither can, the labels are not identifiable from the sound at this data size.

    python research/scripts/probe.py data/ladder/tier1_64.h5
    python research/scripts/probe.py data/ladder/tier1_v2_64.h5 --categorical   (ridge on one-hot classes)
"""

import sys

import h5py
import numpy as np
import torch

from datagen.dataset import SPLITS
from datagen.registry import load_registry
from training.data import routed_from_slots
from training.losses import build_mask_spec, masks


def features(mel: np.ndarray) -> np.ndarray:
    """(N, n_mels, T) log-mel -> (N, 6 * n_mels): mean and std over time, and the mean of 4 time quarters."""
    q = np.array_split(mel, 4, axis=2)
    return np.concatenate([mel.mean(2), mel.std(2)] + [x.mean(2) for x in q], axis=1)


def _load(path: str, registry) -> dict:
    """A data set's labels, masks (numpy), standardised probe features with a bias column (x), split masks."""
    with h5py.File(path, "r") as f:
        split = f["split"][:]
        mel = f["mel"][:].astype(np.float32)
        cont = f["continuous"][:].astype(np.float64)
        cat = f["categorical"][:].astype(np.int64)
        slots = f["modulation"][:]
        tier = int(f.attrs["tier"])
    spec = build_mask_spec(registry, tier=tier)
    m = masks(spec, torch.from_numpy(cat), routed_from_slots(slots, n_sources=spec.n_sources))
    x = features(mel)
    tr, te = split == SPLITS.index("train"), split == SPLITS.index("test")
    x = (x - x[tr].mean(0)) / (x[tr].std(0) + 1e-6)
    return {"continuous": cont, "categorical": cat, "spec": spec, "train": tr, "test": te,
            "masks": {k: v.numpy() for k, v in m.items()}, "x": np.c_[x, np.ones(len(x))]}


def main(path: str, alpha: float = 10.0) -> None:
    registry = load_registry()
    d = _load(path, registry)
    y, m, xt, tr, te = d["continuous"], d["masks"]["continuous"], d["x"], d["train"], d["test"]
    a = xt[tr]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y[tr])  # (features + 1, n_cont)
    pred = np.clip(xt[te] @ w, 0, 1)
    mean = (m[tr] * y[tr]).sum(0) / np.maximum(m[tr].sum(0), 1)
    mt = m[te]
    err_p = (mt * np.abs(pred - y[te])).sum(0)
    err_m = (mt * np.abs(mean - y[te])).sum(0)
    n = mt.sum(0)
    keep = n > 0
    print(f"{path}: {tr.sum()} train / {te.sum()} test rows, {int(keep.sum())} audible continuous parameters")
    print(f"audible continuous MAE: probe {err_p[keep].sum() / n[keep].sum():.4f}, "
          f"mean {err_m[keep].sum() / n[keep].sum():.4f}, ratio {err_p[keep].sum() / err_m[keep].sum():.3f}")
    ratio = np.where(keep, err_p / np.maximum(err_m, 1e-9), np.nan)
    names = [p.name for p in registry.continuous]
    order = np.argsort(np.where(keep, ratio, np.inf))
    print("best:", ", ".join(f"{names[i]} {ratio[i]:.2f}" for i in order[:12]))
    print("share of audible parameters with ratio < 0.9:", f"{np.mean(ratio[keep] < 0.9):.2f}")


def categorical(path: str, alpha: float = 10.0) -> None:
    """Per varied categorical control: accuracy of a ridge regression onto its one-hot classes (argmax), on
    the test rows where the control is audible, against the train split's masked mode."""
    registry = load_registry()
    d = _load(path, registry)
    cat, m, xt, tr, te, spec = d["categorical"], d["masks"]["categorical"], d["x"], d["train"], d["test"], d["spec"]
    gram = np.linalg.inv(xt[tr].T @ xt[tr] + alpha * np.eye(xt.shape[1]))
    rows = []
    for j, name in enumerate(spec.categorical_names):  # registry.categorical order: the data's columns
        y, mt, mtr = cat[:, j], m[te, j] > 0, m[tr, j] > 0
        if mt.sum() < 20 or len(np.unique(y[tr][mtr])) < 2:
            continue
        classes = np.unique(y[tr][mtr])
        onehot = (y[tr][:, None] == classes[None, :]).astype(np.float64) * mtr[:, None]
        w = gram @ (xt[tr].T @ onehot)
        pred = classes[(xt[te] @ w).argmax(1)]
        mode = classes[onehot.sum(0).argmax()]
        rows.append((name, float((pred == y[te])[mt].mean()), float((mode == y[te])[mt].mean()), int(mt.sum())))
    rows.sort(key=lambda r: r[2] - r[1])
    print(f"{path}: {len(rows)} categorical controls with >= 20 audible test rows; probe accuracy vs mode:")
    for name, acc, mode, n in rows[:12]:
        print(f"  {name:<32} {acc:.3f} vs {mode:.3f} ({n} rows)")
    print(f"mean over them: probe {np.mean([r[1] for r in rows]):.3f}, mode {np.mean([r[2] for r in rows]):.3f}")


if __name__ == "__main__":
    if "--categorical" in sys.argv:
        categorical(sys.argv[1])
    else:
        main(sys.argv[1])


def one_oscillator(path: str, alpha: float = 10.0) -> None:
    """The symmetry check: rows with exactly one oscillator on, its controls moved to one canonical slot.
    If these are learnable where osc_1's own are not, the three interchangeable slots are what hides them."""
    registry = load_registry()
    col = {p.name: i for i, p in enumerate(registry.categorical)}
    cont = {p.name: i for i, p in enumerate(registry.continuous)}
    with h5py.File(path, "r") as f:
        split, mel = f["split"][:], f["mel"][:].astype(np.float32)
        y, cat = f["continuous"][:].astype(np.float64), f["categorical"][:].astype(np.int64)
    on = np.stack([cat[:, col[f"osc_{i}_on"]] for i in (1, 2, 3)], 1)  # (N, 3)
    rows = np.flatnonzero(on.sum(1) == 1)
    which = on[rows].argmax(1) + 1
    suffixes = ["level", "tune", "unison_detune", "wave_frame", "pan", "distortion_amount", "spectral_morph_amount",
                "transpose"]  # the last is categorical (49 semitones): its class index, scaled to [0, 1]
    n_semis = registry.by_name["osc_1_transpose"].n_classes - 1

    def value(r: int, k: int, s: str) -> float:
        name = f"osc_{k}_{s}"
        return y[r, cont[name]] if name in cont else cat[r, col[name]] / n_semis

    target = np.array([[value(r, k, s) for s in suffixes] for r, k in zip(rows, which)])
    x = features(mel[rows])
    tr, te = split[rows] == SPLITS.index("train"), split[rows] == SPLITS.index("test")
    x = (x - x[tr].mean(0)) / (x[tr].std(0) + 1e-6)
    xt = np.c_[x, np.ones(len(x))]
    w = np.linalg.solve(xt[tr].T @ xt[tr] + alpha * np.eye(xt.shape[1]), xt[tr].T @ target[tr])
    pred = np.clip(xt[te] @ w, 0, 1)
    base = target[tr].mean(0)
    ratio = np.abs(pred - target[te]).mean(0) / np.abs(base - target[te]).mean(0)
    print(f"one oscillator on: {tr.sum()} train / {te.sum()} test rows; probe MAE / mean, per control of the "
          "oscillator that is on:")
    print(", ".join(f"{s} {r:.2f}" for s, r in zip(suffixes, ratio)))


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[2] == "--one-oscillator":
    one_oscillator(sys.argv[1])
