"""Is a cheap evaluation safe? Rank correlation between the refinement loss on a short render (the first
`--cheap` seconds of clip and candidate) and the full 2 s loss, on real presets of the "score" split.

    python research/scripts/cheap_loss.py --presets 8 --candidates 40 --cheap 1.0

Per clip (a score preset rendered at MIDI 60, key held 1.5 s): candidates are half sampler draws (what random
search and proposals try) and half CMA-ES-like steps (sigma 0.1 on the audible parameters) around the first
draw. Prints Spearman's rho per clip and the mean, and the share of clips whose full-loss best candidate is
among the cheap loss's best 25%.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np


def main() -> None:
    from scipy.stats import spearmanr

    from datagen.preset import read_vital, shared_presets_dir
    from datagen.registry import load_registry
    from datagen.render import Renderer, RenderConfig
    from datagen.sampler import Sampler, SamplerConfig
    from inference.objective import Objective, render_pool
    from inference.search.space import audible_params
    from inference.speed import candidates

    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--cheap", type=float, default=1.0, help="seconds of the cheap render")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    reg = load_registry()
    readme = (shared_presets_dir() / "README.md").read_text()
    score = [line.split("`")[1] for line in readme.split("**score**")[1].splitlines() if line.strip().startswith("- `")]
    paths = [shared_presets_dir() / p for p in score][: args.presets]
    sampler = Sampler(SamplerConfig(tier=3, seed=7_000_011), registry=reg)
    render = RenderConfig()  # as training data renders: 44100 Hz, velocity 0.8, key held 1.5 s of 2 s
    rhos, hits = [], []
    with render_pool(None, sample_rate=render.sample_rate) as pool:
        for k, path in enumerate(paths):
            target = Renderer(render).render(read_vital(path, registry=reg), note=60)
            half = args.candidates // 2
            drawn = [sampler.sample(k * 1000 + i) for i in range(half)]
            names = audible_params(drawn[0], registry=reg, importance=np.ones(len(reg.continuous)), limit=48)
            cands = drawn + candidates(drawn[0], names=names, n=args.candidates - half, seed=k)
            full = Objective(target, note=60, render=render, key_held=render.note_length)
            n = int(args.cheap * render.sample_rate)
            cheap = Objective(target[:n], note=60, render=render, key_held=min(render.note_length, args.cheap))
            a = np.array([s for s, _ in full.scores(cands, pool=pool)])
            b = np.array([s for s, _ in cheap.scores(cands, pool=pool)])
            rho = spearmanr(a, b).statistic
            top = set(np.argsort(b)[: max(1, len(b) // 4)])
            rhos.append(rho)
            hits.append(int(np.argmin(a)) in top)
            print(f"{path.stem}: rho {rho:.3f}; full-best in cheap top 25%: {hits[-1]}", flush=True)
    print(f"mean rho {np.mean(rhos):.3f} (min {np.min(rhos):.3f}); full-best kept by a top-25% cheap screen on "
          f"{sum(hits)}/{len(hits)} clips; cheap render {args.cheap:g} s of 2 s")


if __name__ == "__main__":
    main()
