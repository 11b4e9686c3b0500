"""Throughput benchmarks that print ratios measured in one run (never absolute timings in tests)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from datagen.preset import Preset, find_presets, init_preset, read_vital, shared_presets_dir


def default_presets(folder: Path | None, count: int, *, seed: int = 0) -> tuple[list[Preset], str]:
    """`count` presets from a folder of .vital files (default: the shared real presets); random presets when
    there is none."""
    folder = folder or shared_presets_dir()
    paths = find_presets(folder) if folder.is_dir() else []
    if paths:
        return [read_vital(p) for p in paths[:count]], str(folder)
    rng = np.random.default_rng(seed)
    base = init_preset()
    presets = [base.with_values(**{k: float(rng.random()) for k in ("filter_1_cutoff", "osc_1_wave_frame",
                                                                       "env_1_decay", "osc_1_level")})
               for _ in range(count)]
    return presets, "random perturbations of the init preset"


def bench_render(presets: list[Preset], *, rounds: int = 3, note: int = 60) -> dict:
    """Renders/s of raw vita (`load_json` of a prepared JSON string + `render`) and of the engine
    (`Renderer.render(preset)`: JSON built from the Preset, loaded, rendered, mixed to mono), alternating
    rounds so machine noise hits both alike."""
    import vita

    from datagen.render import RenderConfig, Renderer

    config = RenderConfig()
    texts = [p.to_vital_text() for p in presets]
    synth = vita.Synth()
    engine = Renderer(config)
    raw_s = eng_s = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for text in texts:
            synth.load_json(text)
            synth.render(note, config.velocity, config.note_length, config.render_length)
        t1 = time.perf_counter()
        for p in presets:
            engine.render(p, note=note)
        t2 = time.perf_counter()
        raw_s += t1 - t0
        eng_s += t2 - t1
    n = rounds * len(presets)
    return {"renders": n, "raw_renders_per_s": n / raw_s, "engine_renders_per_s": n / eng_s,
            "ratio": raw_s / eng_s}
