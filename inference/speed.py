"""Speed of the main job, measured in one run so the ratios mean something on a noisy machine.

- load: `Pipeline.from_checkpoint` wall time; the CLI times importing torch + torchvision apart (`import_s`):
  a producer's cold start is the sum;
- predict: median latency of `Pipeline.predict` on a prepared 2 s clip, after a warm-up call;
- refine: renders/s of CMA-ES refinement with T threads against raw vita renders/s (one thread: a new Synth,
  `load_json`, `render` of the same preset in a loop, the same work per candidate) times T; also against a
  reused Synth (cheaper, but not repeatable); and the wall time of the whole refinement.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def raw_renders_per_s(preset_text: str, *, note: int, seconds: float, n: int, fresh: bool) -> float:
    """One thread, raw vita: (a new Synth when `fresh`) + load_json + render, n times. Refinement renders
    each candidate on a fresh Synth (a reused one carries control smoothing and reverb state over)."""
    import vita

    synth = None
    t0 = time.perf_counter()
    for _ in range(n):
        if fresh or synth is None:
            synth = vita.Synth()
            synth.set_sample_rate(44100.0)
        synth.load_json(preset_text)
        synth.render(note, 0.8, min(1.5, 0.75 * seconds), seconds)
    return n / (time.perf_counter() - t0)


def bench_speed(pipeline, clip, *, evals: int = 500, threads: int = 2, repeats: int = 10, load_seconds: float) -> dict:
    """clip: a path; returns the numbers research/benchmarks.md reports."""
    from datagen.render import deterministic
    from inference.audio import prepare
    from inference.refine import RefineConfig, refine

    target = prepare(clip, features=pipeline.features)
    pipeline.predict(target)  # warm-up
    latencies = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prediction = pipeline.predict(target)
        latencies.append(time.perf_counter() - t0)
    text = deterministic(prediction.preset).to_vital_text(pipeline.registry)
    raw = {fresh: raw_renders_per_s(text, note=target.note.midi, seconds=pipeline.features.duration, n=20,
                                    fresh=fresh) for fresh in (True, False)}
    r = refine(prediction.preset, target.audio, note=target.note.midi, sample_rate=target.sample_rate,
               importance=pipeline.importance, registry=pipeline.registry,
               config=RefineConfig(evals=evals, threads=threads), show_progress=False)
    return {
        "load_s": load_seconds, "predict_median_s": statistics.median(latencies), "predict_max_s": max(latencies),
        "raw_renders_per_s_1_thread": raw[True], "raw_reused_synth_renders_per_s_1_thread": raw[False],
        "threads": threads, "refine_renders_per_s": r.renders_per_s,
        "refine_ratio": r.renders_per_s / (raw[True] * threads),
        "refine_ratio_vs_reused_synth": r.renders_per_s / (raw[False] * threads), "refine_evaluations": r.evaluations,
        "refine_wall_s": r.seconds, "refine_initial_loss": r.initial_loss, "refine_final_loss": r.final_loss,
        "refine_params": len(r.params), "note": target.note.midi,
        "clip_seconds": float(np.round(target.duration, 3)),
    }
