"""`datagen ingest`: real `.vital` presets -> a data set in `generate`'s HDF5 schema (one row per preset x note).

Labels come from the preset as `datagen.preset.read_vital` reads it: continuous and categorical controls,
modulations (at most 64; connections outside vita's allowlist are dropped and reported at INFO by the
reader), and per oscillator a wavetable index into a catalog that is the default procedural catalog extended
with every table found in the folder (`tables_from_presets`), so every readable table has an index and the
procedural indices mean what they mean in generated sets.

The audio is a render of that Preset (`Preset.to_vital`, with values rounded to the float32 the labels are
stored in), not of the raw file: what the reader dropped (unknown keys, unlisted modulations) is not heard
either, so labels and audio agree. Custom LFO shapes and samples (`Preset.extras`) are heard but are not
labels: `preset_from_row` puts the init preset's in their place.

Renders run in crash-isolated worker processes (`datagen.isolation.Worker`, forked per preset like
`generate`'s, so the audio is a pure function of the preset and the notes): a preset that segfaults Vital is
reported in one warning line and skipped. So are unreadable files, presets Vital refuses, non-finite output
and silent presets (peak below `min_peak` at every note). Audio above full scale is clipped to [-1, 1]
before it is stored and featurised (counted as "clipped"; `peak` keeps the unclipped value). All results are
held in memory until the file is written: ~0.7 MB per preset at 3 notes x 2 s.

Attributes follow `generate` (tier 0 = real presets; seed 0), plus `source_folder` and `preset_files` (the
path of every `.vital` file relative to the folder; `preset_index` indexes this list).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from datagen.console import ConfigError
from datagen.dataset import (TIER_REAL, DatasetError, Manifest, as_stored, from_pcm, labels_of, preset_rows,
                             to_pcm, write_h5)
from datagen.features import FeatureConfig
from datagen.generate import level
from datagen.render import RenderConfig

log = logging.getLogger(__name__)



def _handler(render: RenderConfig, features: FeatureConfig, min_peak: float):
    """Built once per worker process, then forked per request (as `generate` does: Vital's state depends on
    process history, so every preset renders from the same pristine state): (vital JSON text, notes) -> result
    dict."""
    import torch

    from datagen.features import clip_mels
    from datagen.render import Renderer

    torch.set_num_threads(1)  # log_mel beside vita's threads is 50x slower with torch's default pool
    renderer = Renderer(render)

    def handle(request: tuple[str, tuple[int, ...]]) -> dict:
        text, notes = request
        audio = renderer.render_notes(text, notes)  # (notes, samples) float32, history-free
        if not np.all(np.isfinite(audio)):
            return {"rejected": "non-finite"}
        lv = level(audio)
        peak, rms = lv["peak"], lv["rms"]
        if np.all(peak < min_peak):
            return {"rejected": "silent"}
        pcm = to_pcm(audio)  # (notes, samples) int16, clipped
        return {"audio": pcm, "mel": clip_mels(from_pcm(pcm), features).astype(np.float16),
                "rms": rms, "peak": peak, "clipped": bool(peak.max() > 1.0)}

    return handle


class _SkipFiles(logging.Filter):
    """Drops `tables_from_presets` warnings about files already reported (one warning line per file)."""

    def __init__(self, paths: set):
        super().__init__()
        self.paths = {str(p) for p in paths}

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.args and str(record.args[0]) in self.paths)


def _tables(folder: Path, reported: set) -> list:
    """`tables_from_presets(folder)`, without a second warning for the files in `reported`."""
    from datagen.wavetables import log as wavetable_log, tables_from_presets

    quiet = _SkipFiles(reported)
    wavetable_log.addFilter(quiet)
    try:
        return tables_from_presets(folder)
    finally:
        wavetable_log.removeFilter(quiet)


def ingest(folder: Path, output: Path, *, notes: tuple[int, ...] = (48, 60, 72),
           render: RenderConfig = RenderConfig(), features: FeatureConfig | None = None, store_audio: bool = True,
           workers: int = 1, min_peak: float = 1e-4, timeout: float = 300.0, show_progress: bool = False) -> dict:
    """Render and label every `.vital` file below `folder` into the data set `output` (which must not exist).

    features default to FeatureConfig(duration=render.render_length) at the render's sample rate.
    Returns: files, presets (kept), rows, skipped (reason -> count), clipped, catalog_size, real_tables,
    seconds, output. Raises DatasetError (no presets, nothing renderable, output exists), ConfigError (bad options).
    """
    from datagen.registry import load_registry
    from datagen.wavetables import default_catalog

    folder, output = Path(folder), Path(output)
    notes = tuple(int(n) for n in notes)
    features = _check_options(notes=notes, workers=workers, render=render, features=features)
    paths = _find_presets(folder, output)

    t0 = time.perf_counter()
    registry = load_registry()
    jobs, unreadable = _read(paths, registry)
    catalog = default_catalog().extend(_tables(folder, unreadable))
    results = _render_presets(jobs, folder=folder, registry=registry, notes=notes, render=render,
                              features=features, min_peak=min_peak, workers=workers, timeout=timeout,
                              show_progress=show_progress)
    skipped = Counter(["unreadable"] * len(unreadable) + [r["rejected"] for r in results if "rejected" in r])
    clipped = sum(r["clipped"] for r in results if "rejected" not in r)
    if clipped:
        log.warning("%d preset(s) exceed full scale; their audio was clipped to [-1, 1]", clipped)
    chunks = _rows(jobs, results, registry=registry, catalog=catalog, notes=notes, store_audio=store_audio)
    if not chunks:
        raise DatasetError(f"{folder}: none of {len(paths)} preset(s) could be rendered ({dict(skipped)})")

    n_presets = len(chunks)
    attrs = _attrs(folder, paths, registry=registry, catalog=catalog, notes=notes, render=render, features=features,
                   store_audio=store_audio, min_peak=min_peak, n_presets=n_presets, skipped=skipped)
    write_h5(output, iter(chunks), n_presets * len(notes), attrs)
    return {"files": len(paths), "presets": n_presets, "rows": n_presets * len(notes), "skipped": dict(skipped),
            "clipped": clipped, "catalog_size": len(catalog), "real_tables": len(catalog) - len(default_catalog()),
            "seconds": time.perf_counter() - t0, "output": str(output)}


def _check_options(*, notes: tuple[int, ...], workers: int, render: RenderConfig,
                   features: FeatureConfig | None) -> FeatureConfig:
    """ConfigError for a bad option; the features to use (default: the render's length and sample rate)."""
    if not notes or any(not 0 <= n <= 127 for n in notes):
        raise ConfigError(f"notes must be MIDI numbers 0..127, got {notes}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    features = features or FeatureConfig(sample_rate=render.sample_rate, duration=render.render_length)
    if features.sample_rate != render.sample_rate:
        raise ConfigError("render and feature sample rates differ")
    return features


def _find_presets(folder: Path, output: Path) -> list[Path]:
    """The `.vital` files below `folder` (sorted); DatasetError when there are none or `output` exists."""
    from datagen.preset import find_presets

    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    paths = find_presets(folder)
    if not paths:
        raise DatasetError(f"{folder}: no .vital presets in this folder")
    if output.exists():
        raise DatasetError(f"{output} exists; delete it or choose another output path")
    return paths


def _read(paths: list[Path], registry) -> tuple[list, set]:
    """(jobs: (file index, path, preset as stored) of every file `read_vital` reads, the paths it refused: one
    warning line each)."""
    from datagen.preset import PresetError, read_vital

    jobs, unreadable = [], set()
    for i, path in enumerate(paths):
        try:
            jobs.append((i, path, as_stored(read_vital(path, registry=registry))))
        except PresetError as e:
            log.warning("%s; skipped", e)
            unreadable.add(path)
    return jobs, unreadable


def _render_presets(jobs: list, *, folder: Path, registry, notes: tuple[int, ...], render: RenderConfig,
                    features: FeatureConfig, min_peak: float, workers: int, timeout: float,
                    show_progress: bool) -> list[dict]:
    """Every job's preset rendered at `notes` in crash-isolated worker processes, `workers` at a time: per job,
    `_handler`'s result dict, or {"rejected": "crash" | "refused" | "non-finite" | "silent"} with one warning line."""
    from tqdm import tqdm

    from datagen.isolation import ThreadWorkers, WorkerCrash

    isolated = ThreadWorkers(_handler, render, features, min_peak, timeout=timeout, fork=True)  # one per thread

    def one(job) -> dict | None:
        i, path, preset = job
        rel = path.relative_to(folder).as_posix()
        try:
            text = preset.to_vital_text(registry)
            result = isolated.call((text, notes), label=f"preset {rel!r}")
        except WorkerCrash as e:  # before RuntimeError: a crash is one too
            log.warning("%s; skipped", e)
            return {"rejected": "crash"}
        except (RuntimeError, ValueError) as e:  # Vital refused it (e.g. saved by a newer Vital); PresetError
            log.warning("preset %r: %s; skipped", rel, e)
            return {"rejected": "refused"}
        finally:
            bar.update(1)
        if "rejected" in result:
            log.warning("preset %r: %s output; skipped", rel, result["rejected"])
        return result

    with tqdm(total=len(jobs), unit="preset", disable=not show_progress, desc="ingest", dynamic_ncols=True) as bar:
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(one, jobs))
        finally:
            isolated.close()


def _rows(jobs: list, results: list[dict], *, registry, catalog, notes: tuple[int, ...], store_audio: bool) -> list:
    """The data set's rows of every rendered preset, in file order: one `preset_rows` chunk per preset."""
    return [preset_rows(i, labels_of(preset, registry, catalog), notes=notes, mel=result["mel"], rms=result["rms"],
                        peak=result["peak"], audio=result["audio"] if store_audio else None)
            for (i, path, preset), result in zip(jobs, results) if "rejected" not in result]


def _attrs(folder: Path, paths: list[Path], *, registry, catalog, notes: tuple[int, ...], render: RenderConfig,
           features: FeatureConfig, store_audio: bool, min_peak: float, n_presets: int, skipped: Counter) -> dict:
    """The data set's attributes: `generate`'s (tier 0 = real presets, seed 0), plus `source_folder` and
    `preset_files` (every `.vital` file's path relative to `folder`)."""
    config = {"notes": list(notes), "render": dataclasses.asdict(render), "features": dataclasses.asdict(features),
              "store_audio": store_audio, "min_peak": min_peak}
    return Manifest(
        registry=registry, catalog=catalog, config=config, render=render, features=features, notes=notes,
        tier=TIER_REAL, seed=0,
        sampled_params=tuple(sorted(p.name for p in registry.params)),  # a real preset sets them all
        sampled_modules=tuple(m.name for m in registry.modules), n_presets=n_presets, rejections=dict(skipped),
        source_folder=str(folder.resolve()),
        preset_files=tuple(p.relative_to(folder).as_posix() for p in paths)).attrs()
