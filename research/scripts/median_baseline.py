"""The best constant under MAE: each continuous column's masked median over the train split, scored like
`training evaluate` scores predict-the-mean (the same masks, every unmasked test entry counted once).

A model trained with an absolute error learns a conditional median, so its MAE is also read against this
stronger constant, not only against the mean the issue names.

    PYTHONPATH=. python research/scripts/median_baseline.py data/r15/realistic_64.h5
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def columns(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, masks), each (rows, n_cont): the continuous targets of `split` and the loss' masks."""
    import h5py

    from datagen.registry import load_registry
    from training.baseline import _chunks
    from training.losses import build_mask_spec

    with h5py.File(path, "r") as f:
        tier = int(f.attrs["tier"])
    spec = build_mask_spec(load_registry(), tier=tier)
    parts = list(_chunks([path], spec=spec, split=split, columns=["continuous"]))
    return (np.concatenate([r["continuous"] for r, _ in parts]).astype(np.float64),
            np.concatenate([m["continuous"] for _, m in parts]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    args = ap.parse_args()
    train, train_mask = columns(args.data, "train")
    test, test_mask = columns(args.data, "test")
    constants = {}
    for name, fit in (("mean", lambda v: v.mean()), ("median", np.median)):
        c = np.array([fit(train[train_mask[:, j] > 0, j]) if (train_mask[:, j] > 0).any() else train[:, j].mean()
                      for j in range(train.shape[1])])
        constants[name] = float((np.abs(test - c) * test_mask).sum() / test_mask.sum())
    print(json.dumps({"test_entries": int(test_mask.sum()), **{f"{k}_mae": v for k, v in constants.items()}}))


if __name__ == "__main__":
    main()
