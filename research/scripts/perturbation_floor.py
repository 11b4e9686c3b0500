"""What knowing the bases is worth: the parameter metrics of an oracle that answers every perturbed preset with
the preset it was stepped from (`Perturber.base`: its base with the modules recombination took from others),
scored like `training evaluate` scores a model (the loss' masks, the shipped checkpoint's predicted categorical
columns and its predict-the-mean / mode baseline).

The oracle knows everything a network could learn about which real presets a sound was built from, and hears
none of the random steps (continuous N(0, sigma), redrawn discrete controls, octave moves). A network that
hears some steps can beat it; one that cannot must stay above it. `--octaves-known` also gives it the octave
moves, which the note input makes audible. A second oracle knows only each preset's main base (which of the
bases it started from, not the modules recombination swapped in).

    PYTHONPATH=. python research/scripts/perturbation_floor.py -n 4000 --seed 11 --recombine 0.2
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def population(n: int, *, seed: int, recombine: float) -> dict:
    """Label arrays of n perturbed presets, of the presets they were stepped from and of their main bases (before
    recombination), as data sets store them: {"target": {continuous (n, n_cont), categorical (n, n_cat),
    modulation slots (n, 64, 6)}, "base": same, "main": same}."""
    from tqdm import tqdm

    from datagen.dataset import labels_of
    from datagen.generate import GenerateConfig
    from datagen.perturb import PerturbConfig
    from datagen.preset import shared_presets_dir
    from datagen.registry import load_registry

    registry = load_registry()
    config = GenerateConfig(seed=seed, perturb_from=str(shared_presets_dir()), perturb=PerturbConfig(p_recombine=recombine))
    perturber = config.sampler(registry, None)  # what `generate --perturb-from --recombine --seed` draws from
    bases = [labels_of(b, registry) for b in perturber.bases]
    out = {"target": [], "base": [], "main": []}
    for i in tqdm(range(n), desc="presets", unit="preset"):
        out["target"].append(labels_of(perturber.sample(i), registry))
        out["base"].append(labels_of(perturber.base(i), registry))
        out["main"].append(bases[i % len(bases)])
    return {k: {name: np.stack([row[name] for row in rows]) for name in ("continuous", "categorical", "modulation")}
            for k, rows in out.items()}


def floor(n: int, *, seed: int, recombine: float, octaves_known: bool) -> dict:
    from datagen.registry import load_registry
    from inference.predict import default_checkpoint
    from research.scripts.base_probe import errors, targets
    from training import checkpoint

    registry = load_registry()
    ckpt = checkpoint.load(default_checkpoint())
    predicted = list(checkpoint.build_model(ckpt, default_checkpoint()).config.predicted_categorical)
    rows = population(n, seed=seed, recombine=recombine)
    t, b, main = rows["target"], rows["base"], rows["main"]
    truth = targets(t, predicted)
    mk = truth["categorical_mask"]  # (n, n_predicted)
    base_k, main_k = (r["categorical"][:, predicted].copy() for r in (b, main))
    if octaves_known:
        moved = [j for j, i in enumerate(predicted) if registry.categorical[i].name.endswith("_transpose")]
        base_k[:, moved] = main_k[:, moved] = truth["categorical"][:, moved]
    mean = np.asarray(ckpt["baseline"]["continuous"], np.float64)[None]  # (1, n_cont)
    mode = np.asarray(ckpt["baseline"]["categorical"], np.int64)[None]  # (1, n_predicted)
    constant, oracle, main_oracle = (errors(truth, c, k) for c, k in ((mean, mode), (b["continuous"], base_k),
                                                                       (main["continuous"], main_k)))
    by_param = {registry.categorical[i].name: round(float(((base_k[:, j] == truth["categorical"][:, j]) * mk[:, j])
                                                          .sum() / max(mk[:, j].sum(), 1)), 3)
                for j, i in enumerate(predicted) if mk[:, j].sum() > 0}
    result = {"presets": n, "seed": seed, "recombine": recombine, "octaves_known": octaves_known,
              "continuous_entries": int(truth["continuous_mask"].sum()), "categorical_entries": int(mk.sum()),
              "mean_mae": constant["mae"], "oracle_mae": oracle["mae"],
              "mode_accuracy": constant["accuracy"], "oracle_accuracy": oracle["accuracy"],
              "main_base_mae": main_oracle["mae"], "main_base_accuracy": main_oracle["accuracy"],
              "oracle_worst_categorical": dict(sorted(by_param.items(), key=lambda kv: kv[1])[:12])}
    result["oracle_mae_ratio"] = result["oracle_mae"] / result["mean_mae"]
    result["oracle_accuracy_gain_points"] = 100 * (result["oracle_accuracy"] - result["mode_accuracy"])
    result["main_base_mae_ratio"] = result["main_base_mae"] / result["mean_mae"]
    result["main_base_accuracy_gain_points"] = 100 * (result["main_base_accuracy"] - result["mode_accuracy"])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=4000, help="perturbed presets drawn (indices 0..n-1, first attempt)")
    ap.add_argument("--seed", type=int, default=11, help="the perturbation seed (the shipped model's data: 11)")
    ap.add_argument("--recombine", type=float, default=0.2)
    ap.add_argument("--octaves-known", action="store_true", help="the oracle also knows the octave moves")
    args = ap.parse_args()
    print(json.dumps(floor(args.n, seed=args.seed, recombine=args.recombine, octaves_known=args.octaves_known),
                     indent=1))


if __name__ == "__main__":
    main()
