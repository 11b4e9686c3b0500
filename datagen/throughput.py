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


def bench_generate(*, n_presets: int = 24, tiers: tuple[int, ...] = (1, 2, 3), workdir: Path) -> dict:
    """Generation throughput as a ratio to raw vita in the same run, scaling from 1 to 2 workers, bytes per
    row with and without audio, and rejection rate per tier.

    raw vita: one Synth, `load_json` + `render` of each note of the very attempts the generator renders
    (rejected ones too), in one thread, timing only the vita calls. Rates count attempts x notes.
    """
    import vita

    from datagen.generate import MAX_ATTEMPTS, GenerateConfig, generate, rejection
    from datagen.sampler import Sampler, SamplerConfig

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"n_presets": n_presets, "tiers": {}}
    for tier in tiers:
        config = GenerateConfig(tier=tier, n_presets=n_presets, seed=1)
        sampler = Sampler(SamplerConfig(tier=tier, seed=1))
        synth = vita.Synth()
        r = config.render
        vita_seconds, renders = 0.0, 0
        for i in range(n_presets):
            for attempt in range(MAX_ATTEMPTS):
                text = sampler.sample(i, attempt).to_vital_text()
                t0 = time.perf_counter()
                audio = []
                for note in config.notes:
                    synth.load_json(text)
                    audio.append(synth.render(note, r.velocity, r.note_length, r.render_length))
                vita_seconds += time.perf_counter() - t0
                renders += len(config.notes)
                if rejection(np.stack(audio).mean(axis=1), config) is None:
                    break
        raw_rate = renders / vita_seconds
        row = {"raw_renders_per_s": raw_rate}
        for workers in (1, 2):
            path = workdir / f"tier{tier}_w{workers}.h5"
            stats = generate(path, config, workers=workers, show_progress=False)
            attempts = stats["generated"] + sum(stats["rejected"].values())
            rate = attempts * len(config.notes) / stats["seconds"]
            row[f"renders_per_s_{workers}w"] = rate
            row[f"presets_per_s_{workers}w"] = stats["generated"] / stats["seconds"]
            row["rejection_rate"] = stats["rejection_rate"]
            row["rejected"] = stats["rejected"]
            row["bytes_per_row"] = path.stat().st_size / stats["rows"]
        row["ratio_per_worker"] = row["renders_per_s_1w"] / raw_rate
        row["scaling_2w"] = row["renders_per_s_2w"] / row["renders_per_s_1w"]
        path = workdir / f"tier{tier}_noaudio.h5"
        stats = generate(path, GenerateConfig(tier=tier, n_presets=n_presets, seed=1, store_audio=False),
                         workers=2, show_progress=False)
        row["bytes_per_row_no_audio"] = path.stat().st_size / stats["rows"]
        out["tiers"][tier] = row
    return out
