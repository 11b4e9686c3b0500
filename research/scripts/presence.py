"""Modulation presence by sound (issue 15): render a checkpoint's predictions for held-out test rows of a data
set with the presence logits read in several ways, and score each against the row's stored audio.

Variants: `raw 0.5` (sigmoid(logit) >= 0.5, the decoder before the pos_weight correction), `p >= T` (the
probability corrected for the loss's pos_weight, `training.heads.modulation.presence_probability`, at
threshold T), `none` (no modulation) and the checkpoint's predict-the-mean constant. Rows are a seeded sample of
the test split, never the "score" presets.

    python research/scripts/presence.py inference/assets/model.pt data/r15/realistic_64.h5 --rows 60
"""

import argparse
import json

import numpy as np
import torch

from inference.metrics import METRICS, score
from inference.predict import Pipeline
from training.audio import ItemAudio
from training.data import PresetDataset
from training.decode import decode

THRESHOLDS = (0.25, 0.5, 0.75)  # corrected presence probability


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("data")
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="per-row scores as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)

    pipe = Pipeline.from_checkpoint(args.checkpoint)
    ds = PresetDataset([args.data], split="test")
    rows = sorted(np.random.default_rng(args.seed).choice(len(ds), min(args.rows, len(ds)), replace=False).tolist())
    variants = {"raw 0.5": dict(pos_weight=1.0, threshold=0.5),
                **{f"p >= {t}": dict(pos_weight=pipe.pos_weight, threshold=t) for t in THRESHOLDS},
                "none": dict(pos_weight=1.0, threshold=2.0)}
    scores = {name: [] for name in (*variants, "mean")}
    routes = {name: [] for name in variants}
    with ItemAudio(ds) as audio:
        for i in rows:
            mel = torch.from_numpy(np.asarray(ds[i]["mel"], np.float32))[None, None]  # (1, 1, n_mels, frames)
            note, target = audio.midi_note(i), audio.target(i)
            with torch.inference_mode():
                outputs = pipe.model(mel, torch.tensor([note]))
            for name, kw in variants.items():
                preset = decode(outputs, registry=pipe.registry, catalog=pipe.catalog,
                                predicted_categorical=pipe.predicted_categorical, **kw)[0].preset
                routes[name].append(len(preset.modulations))
                scores[name].append(score(target, audio.render(preset, note)))
            scores["mean"].append(score(target, audio.render(pipe.mean_preset(), note)))
    print(f"{len(rows)} test rows of {args.data}, {args.checkpoint} (pos_weight {pipe.pos_weight:g})")
    print("| decoding | routes / row | " + " | ".join(METRICS) + " |")
    print("|---|---:|" + "---:|" * len(METRICS))
    for name, values in scores.items():
        n = f"{np.mean(routes[name]):.1f}" if name in routes else "0"
        print(f"| {name} | {n} | " + " | ".join(f"{np.mean([v[m] for v in values]):.3f}" for m in METRICS) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "scores": scores, "routes": routes}, f)


if __name__ == "__main__":
    main()
