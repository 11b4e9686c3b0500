"""Speed of the main job, measured in one run so the ratios mean something on a noisy machine.

- load: `Pipeline.from_checkpoint` wall time; the CLI times importing torch + torchvision apart (`import_s`):
  a producer's cold start is the sum;
- predict: median latency of `Pipeline.predict` on a prepared clip, after a warm-up call;
- renders: the same `candidates` (CMA-ES-like steps around the prediction: sigma 0.1 on the audible
  parameters) rendered by
  - raw vita, one reused Synth per worker thread (`load_json` + `render` only: the ceiling, not repeatable),
  - the old design, a fresh Synth per render in threads (repeatable in one process, ~70 ms more per render),
  - the render pool (`datagen.pool.RenderPool`, forks of pristine workers: repeatable everywhere, crash-proof),
    with the prediction as its base (what refinement does) and without (every candidate loaded whole);
  each as renders/s and as a ratio to raw vita, all at the clip's note and key-held time (the pool's rates
  include computing each candidate's loss, raw vita's do not);
- objective: the search distance's time per candidate (single-threaded torch) and its share of a candidate's cost;
- refine: a whole `refine` at the default budget: wall time (pool start-up included) and renders/s.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def raw_renders_per_s(texts: list[str], *, note: int, config, threads: int, fresh: bool) -> float:
    """Raw vita on `threads` threads, each with its own Synth (a new one per render when `fresh`):
    load_json + render of every text once."""
    import vita

    def work(chunk: list[str]) -> None:
        synth = None
        for text in chunk:
            if fresh or synth is None:
                synth = vita.Synth()
                synth.set_sample_rate(float(config.sample_rate))
            synth.load_json(text)
            synth.render(note, config.velocity, config.note_length, config.render_length)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(work, [texts[k::threads] for k in range(threads)]))
    return len(texts) / (time.perf_counter() - t0)


def candidates(preset, *, names: list[str], n: int, sigma: float = 0.1, seed: int = 0) -> list:
    """`n` presets a CMA-ES step of `sigma` around `preset` would ask for, on the parameters `names`."""
    rng = np.random.default_rng(seed)
    x0 = np.array([preset.continuous[k] for k in names])
    return [preset.with_values(**dict(zip(names, np.clip(x0 + rng.normal(0, sigma, len(x0)), 0, 1).tolist())))
            for _ in range(n)]


def bench_speed(pipeline, clip, *, evals: int = 500, threads: int = 2, repeats: int = 10, n_candidates: int = 24,
                load_seconds: float) -> dict:
    """clip: a path; returns the numbers research/benchmarks.md reports."""
    from datagen.render import deterministic
    from inference.audio import prepare
    from inference.objective import Objective, render_pool
    from inference.refine import RefineConfig, refine
    from inference.search.space import audible_params

    target = prepare(clip, features=pipeline.features)
    pipeline.predict(target)  # warm-up
    latencies = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prediction = pipeline.predict(target)
        latencies.append(time.perf_counter() - t0)
    start = deterministic(prediction.preset)
    key_held = target.key_held
    objective = Objective(target.audio, note=target.note.midi, render=pipeline.render, key_held=key_held)
    names = audible_params(start, registry=pipeline.registry, importance=pipeline.importance,
                           limit=RefineConfig.max_params)
    cands = candidates(start, names=names, n=n_candidates)
    texts = [c.to_vital_text(pipeline.registry) for c in cands]
    note, config = target.note.midi, objective.render_config
    out = {"load_s": load_seconds, "predict_median_s": statistics.median(latencies), "predict_max_s": max(latencies),
           "threads": threads, "candidates": n_candidates, "note": note, "key_held_s": config.note_length,
           "clip_seconds": float(np.round(target.duration, 3))}
    with render_pool(threads, sample_rate=pipeline.render.sample_rate) as pool:
        objective.scores(cands[:threads], pool=pool, base=start)  # start the workers (spawn ~1 s, not timed)
        for _round in range(2):  # alternate, so a slow moment of the machine hits every design alike
            for name, fn in [
                ("raw_reused", lambda: raw_renders_per_s(texts, note=note, config=config, threads=threads, fresh=False)),
                ("threads_fresh", lambda: raw_renders_per_s(texts, note=note, config=config, threads=threads, fresh=True)),
                ("pool_base", lambda: _pool_rate(objective, cands, pool=pool, base=start)),
                ("pool_whole", lambda: _pool_rate(objective, cands, pool=pool, base=None)),
            ]:
                out.setdefault(f"{name}_renders_per_s", []).append(fn())
        audio = objective.renders([start], pool=pool)[0].audio
    for key in [k for k in out if k.endswith("_renders_per_s")]:
        out[key] = float(np.median(out[key]))
    raw = out["raw_reused_renders_per_s"]
    for name in ("threads_fresh", "pool_base", "pool_whole"):
        out[f"{name}_ratio"] = out[f"{name}_renders_per_s"] / raw
    t0 = time.perf_counter()
    for _ in range(10):
        objective.distance(audio)
    distance_s = (time.perf_counter() - t0) / 10
    per_candidate_cpu = threads / out["pool_base_renders_per_s"]  # core-seconds per candidate, all included
    out.update({"objective_ms": 1000 * distance_s, "objective_share": distance_s / per_candidate_cpu})
    r = refine(prediction.preset, target.audio, note=note, render=pipeline.render, key_held=key_held,
               importance=pipeline.importance, registry=pipeline.registry,
               config=RefineConfig(evals=evals, threads=threads), show_progress=False)
    out.update({"refine_evaluations": r.evaluations, "refine_wall_s": r.seconds,
                "refine_renders_per_s": r.renders_per_s, "refine_initial_loss": r.initial_loss,
                "refine_final_loss": r.final_loss, "refine_params": len(r.params)})
    return out


def _pool_rate(objective, cands: list, *, pool, base) -> float:
    t0 = time.perf_counter()
    objective.scores(cands, pool=pool, base=base)
    return len(cands) / (time.perf_counter() - t0)
