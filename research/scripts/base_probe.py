"""Does the network hear which real preset a sound was built from? On a perturbed data set (`generate
--perturb-from`), score on the same rows: the network's heads, the predict-the-mean / mode baseline, the two
oracles of perturbation_floor.py (the preset each row was stepped from; its main base only), and a linear probe
(multinomial logistic regression on the network's pooled 512 features) that names the main base, fitted on 70%
of the presets and scored on the rest, also as a decoder: answer a row with the named base's values.

If the probe names the base far more often than the heads' values reflect, the features know it and the heads
do not use it; if it cannot, the features do not hold it.

    PYTHONPATH=. python research/scripts/base_probe.py data/diag/onenote_64.h5

The perturbation is rebuilt from the data set's own manifest (`datagen.generate.config_of`), so a row's preset
and the preset it was stepped from are found by its index and hash.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def rows_of(path: str) -> dict:
    """The data set's rows, its catalog and the GenerateConfig it was made with ("config")."""
    import h5py

    from datagen.dataset import load_catalog
    from datagen.generate import config_of

    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        return {**{k: f[k][:] for k in ("mel", "midi_note", "continuous", "categorical", "modulation",
                                         "preset_index", "preset_hash")},
                "catalog": load_catalog(attrs), "config": config_of(attrs)}


def targets(rows: dict, predicted: list[int]) -> dict:
    """What answers are scored against, as `training evaluate` scores them: the continuous targets (N, n_cont)
    and the predicted categorical columns' (N, n_predicted), and the loss' masks of both (float64 0/1)."""
    import torch

    from datagen.registry import load_registry
    from training.data import routed_from_slots
    from training.losses import build_mask_spec, masks

    spec = build_mask_spec(load_registry(), tier=0)  # the realistic tier: every control is a target
    m = masks(spec, torch.from_numpy(rows["categorical"].astype(np.int64)),
              routed_from_slots(rows["modulation"], n_sources=spec.n_sources))
    return {"continuous": rows["continuous"].astype(np.float64), "categorical": rows["categorical"][:, predicted],
            "continuous_mask": m["continuous"].double().numpy(),
            "categorical_mask": m["categorical"].double().numpy()[:, predicted]}


def errors(t: dict, continuous: np.ndarray, categorical: np.ndarray, *, rows: np.ndarray | None = None) -> dict:
    """Masked continuous MAE and categorical accuracy of one answer ((N or 1, n_cont), (N or 1, n_predicted))
    against `targets` t, over `rows` ((N,) bool; None: every row)."""
    sel = 1.0 if rows is None else rows[:, None]
    mc, mk = t["continuous_mask"] * sel, t["categorical_mask"] * sel
    return {"mae": float((np.abs(t["continuous"] - continuous) * mc).sum() / mc.sum()),
            "accuracy": float(((categorical == t["categorical"]) * mk).sum() / mk.sum())}


def network(ckpt_path, rows: dict, *, model=None, batch: int = 64) -> dict:
    """The network's pooled features (N, 512), continuous outputs (N, n_cont) and categorical argmax
    (N, n_predicted) for every row; `model` (a PresetEstimator) instead of the checkpoint's weights when given."""
    import torch

    from training import checkpoint

    ckpt = checkpoint.load(ckpt_path)
    model = (model or checkpoint.build_model(ckpt, ckpt_path)).eval()
    feats, cont, cat = [], [], []
    with torch.no_grad():
        for s in range(0, len(rows["mel"]), batch):
            mel = torch.from_numpy(rows["mel"][s:s + batch].astype(np.float32))
            note = torch.from_numpy(rows["midi_note"][s:s + batch].astype(np.int64))
            f = model.features(mel, note)
            feats.append(f.numpy())
            cont.append(model.continuous(f).numpy())
            cat.append(torch.stack([z.argmax(1) for z in model.categorical(f)], 1).numpy())
    return {"ckpt": ckpt, "predicted": list(model.config.predicted_categorical), "features": np.concatenate(feats),
            "continuous": np.concatenate(cont), "categorical": np.concatenate(cat)}


def stepped_from(rows: dict) -> dict:
    """The labels, as data sets store them, of the preset every row was stepped from (the attempt whose sample
    has the row's hash): "base", one per row; and of each build preset: "bases"."""
    from datagen.dataset import labels_of
    from datagen.registry import load_registry

    registry = load_registry()
    perturber = rows["config"].sampler(registry, rows["catalog"])  # the data set's own Perturber
    labels = lambda preset: labels_of(preset, registry, rows["catalog"])  # noqa: E731
    base = []
    for index, digest in zip(rows["preset_index"], rows["preset_hash"]):
        attempt = next(a for a in range(50) if labels(perturber.sample(int(index), a))["hash"].encode() == digest)
        base.append(labels(perturber.base(int(index), attempt)))
    return {"base": base, "bases": [labels(b) for b in perturber.bases]}


def probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, *, n_classes: int, weight_decay: float = 0.1,
          steps: int = 500) -> np.ndarray:
    """Multinomial logistic regression on standardised x, fitted on the `train` rows (full-batch L-BFGS);
    returns the predicted class of every row. weight_decay 0.1: the best held-out accuracy of 1e-3..0.3 on the
    shipped model's features (0.56 at 1e-3, 0.62 at 0.1 and 0.3)."""
    import torch

    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    lin = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    tr = torch.from_numpy(train)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt[tr]), yt[tr]) + weight_decay * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return lin(xt).argmax(1).numpy()


def score(rows: dict, net: dict, known: dict) -> dict:
    """Every answer's masked MAE and accuracy on the probe's held-out rows, and the probe's accuracy."""
    predicted = net["predicted"]
    t = targets(rows, predicted)
    stack = lambda labels, name: np.stack([r[name] for r in labels])  # noqa: E731
    n_bases = len(known["bases"])
    main_base = rows["preset_index"] % n_bases  # (N,) which build preset each row started from
    held_out = np.random.default_rng(0).random(len(main_base)) >= 0.7  # one note per preset: rows are presets
    named = probe(net["features"], main_base, ~held_out, n_classes=n_bases)
    bases_c, bases_k = stack(known["bases"], "continuous"), stack(known["bases"], "categorical")[:, predicted]
    answers = {
        "mean / mode": (np.asarray(net["ckpt"]["baseline"]["continuous"])[None],
                        np.asarray(net["ckpt"]["baseline"]["categorical"])[None]),
        "network": (net["continuous"], net["categorical"]),
        "oracle: main base": (bases_c[main_base], bases_k[main_base]),
        "oracle: stepped from": (stack(known["base"], "continuous"), stack(known["base"], "categorical")[:, predicted]),
        "probe-named main base": (bases_c[named], bases_k[named]),
    }
    out = {"rows": len(main_base), "held_out": int(held_out.sum()),
           "probe_accuracy_held_out": float((named == main_base)[held_out].mean()),
           "probe_accuracy_train": float((named == main_base)[~held_out].mean()),
           "chance": float(np.bincount(main_base).max() / len(main_base))}
    for name, (c, k) in answers.items():
        out[name] = errors(t, c, k, rows=held_out)
    ref = out["mean / mode"]
    for name in answers:
        out[name]["mae_ratio"] = out[name]["mae"] / ref["mae"]
        out[name]["accuracy_points"] = 100 * (out[name]["accuracy"] - ref["accuracy"])
    return out


def main() -> None:
    import torch

    from inference.predict import default_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a 64-mel perturbed data set (the shipped model's features)")
    ap.add_argument("-c", "--checkpoint", default=None, help="default: the shipped model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = rows_of(args.data)
    print(json.dumps(score(rows, network(args.checkpoint or default_checkpoint(), rows), stepped_from(rows)),
                     indent=1))


if __name__ == "__main__":
    main()
