"""The anytime curve: best objective loss against renders spent, per search method, on the same clips.

    python research/scripts/anytime.py --clips 4 --budget 300 -o research/anytime.png \
        --methods random,network+cma,proposals+evolve,proposals+portfolio

Clips: a seeded subset of the "score" presets at MIDI 48/60/72 (rendered like `inference benchmark` renders
them: 16-bit WAV, `prepare`). Methods: any `inference benchmark` search method (`<start>+<search>`, `random`),
proposals as the benchmark makes them. Each curve is the mean over clips of best-loss-so-far / the network's
loss (the network's prediction rendered once per clip), after each render.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datagen.preset import init_preset, shared_presets_dir
    from inference.benchmark import PROPOSED, parse_method
    from inference.clips import list_clips
    from inference.objective import Objective, render_pool
    from inference.predict import Pipeline
    from inference.proposals import load_bank, proposals
    from inference.refine import RefineConfig, refine

    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="random,network+cma,proposals+evolve,proposals+portfolio")
    ap.add_argument("-o", "--output", default="research/anytime.png")
    args = ap.parse_args()
    methods = {m: parse_method(m) for m in args.methods.split(",")}  # method -> (start, searcher)
    if any(search is None for _, search in methods.values()):
        ap.error("every method must search (<start>+<search> or random)")
    logging.disable(logging.WARNING)
    pipeline = Pipeline.from_checkpoint(None)
    bank = load_bank()
    clips = [c.build() for c in list_clips([shared_presets_dir()], features=pipeline.features,
                                           render=pipeline.render, split="score", max_clips=args.clips,
                                           seed=args.seed)]
    curves = {m: [] for m in methods}
    with render_pool(None, sample_rate=pipeline.render.sample_rate) as pool:
        for clip in [c for c in clips if c is not None]:
            prediction = pipeline.predict(clip.target)
            objective = Objective(clip.target.audio, note=clip.note, render=pipeline.render,
                                  key_held=clip.target.key_held)
            reference = objective.scores([prediction.preset], pool=pool)[0][0]
            for method, (start, search) in methods.items():
                if start in PROPOSED:
                    starts = proposals(clip.target, pipeline, n=RefineConfig.proposals, prediction=prediction,
                                       bank=bank, seed=args.seed, sources=PROPOSED[start])
                else:
                    starts = {"none": [], "init": [init_preset(pipeline.registry)],
                              "network": [prediction.preset]}[start]
                r = refine(starts, clip.target.audio, note=clip.note, render=pipeline.render,
                           key_held=clip.target.key_held, importance=pipeline.importance, registry=pipeline.registry,
                           catalog=pipeline.catalog, tier=pipeline.draw_tier, pool=pool, show_progress=False,
                           config=RefineConfig(evals=args.budget, search=search, seed=args.seed))
                curves[method].append(np.array(r.history) / reference)
            print(clip.name, {m: round(float(c[-1][-1]), 3) for m, c in curves.items()}, flush=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    x = np.arange(1, args.budget + 1)
    summary = {}
    for method, cs in curves.items():
        mean = np.mean(np.stack(cs), axis=0)
        summary[method] = {str(b): round(float(mean[b - 1]), 4) for b in (1, 32, 100, 200, args.budget)}
        ax.plot(x, mean, label=method)
    ax.set_xlabel("renders spent")
    ax.set_ylabel("best objective loss / the network's")
    ax.set_title(f"anytime curve, mean of {len(next(iter(curves.values())))} score clips")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
