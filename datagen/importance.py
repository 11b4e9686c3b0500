"""Per-parameter importance of the continuous controls, measured by perturbation (loss weights for training).

For K presets of the train split (rebuilt from their labels with `preset_from_row`), each continuous control
is moved by +delta (or -delta where +delta would leave [0, 1]) and rendered at the preset's middle note with
`Renderer.render_notes` (the data set's RenderConfig). The importance of a control for one preset is the mean
absolute difference between the `log_mel` (the data set's FeatureConfig, so loudness-normalised: a pure level
change of the only sound source weighs little) of the base render and of the perturbed render, minus the
preset's noise floor: the same difference between two renders of the unchanged preset (0 when renders are
exact, as they are in forked workers; a safety net, logged when it is not). Importance is averaged over presets,
floored at `FLOOR` x its mean (a control with no audible effect keeps a small weight), and normalised to mean 1
over the measured controls.

Renders run in `workers` threads, each driving its own crash-isolated worker process with one Renderer
(`datagen.isolation.ThreadWorkers(fork=True)`): every render happens in a fresh fork of that pristine worker, as
`generate` renders, because Vital's state depends on process history (a render in a process that rendered
other presets before differs, up to 0.9 peak on the init preset, and in-process threads would make the
measurement depend on scheduling). So a control with no effect measures exactly 0. The result is stored in
the data set: `importance_continuous` (n_continuous,) float32 in registry.continuous order, with attrs
`importance_presets`, `importance_delta` and `importance_params` ("all" or the JSON list measured; unmeasured
controls get weight 1).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from datagen.console import ConfigError
from datagen.dataset import DatasetError

log = logging.getLogger(__name__)

DATASET = "importance_continuous"
FLOOR = 1e-3  # zero-effect controls get FLOOR x the mean raw importance before normalising


def _handler(render, features):
    """Built once per worker process (then forked per request): (vital JSON text, MIDI note) -> (n_mels,
    n_frames) float32 log-mel of `Renderer.render_notes` at that note."""
    import torch

    from datagen.features import log_mel
    from datagen.render import Renderer

    torch.set_num_threads(1)  # beside vita's render threads torch's default pool makes log_mel 50x slower
    renderer = Renderer(render)
    return lambda request: log_mel(renderer.render_notes(request[0], (request[1],))[0], features)


def perturb(x: float, delta: float) -> float:
    """x + delta, or x - delta when x + delta would leave [0, 1]."""
    return x + delta if x + delta <= 1.0 else x - delta


def normalise(raw: np.ndarray, *, floor: float = FLOOR) -> np.ndarray:
    """Floor at `floor` x mean (all-zero input: all ones), then scale to mean 1."""
    raw = np.asarray(raw, np.float64)
    mean = raw.mean() if raw.size else 0.0
    if not mean > 0:
        return np.ones_like(raw)
    clipped = np.maximum(raw, floor * mean)
    return clipped / clipped.mean()


def _train_rows(path: Path, count: int) -> list[int]:
    """The middle row (by stored order) of each of the first `count` train-split presets."""
    import h5py

    with h5py.File(path, "r") as f:
        split = f["split"][:]
        index = f["preset_index"][:]
    chosen: dict[int, list[int]] = {}
    for r in np.flatnonzero(split == 0):
        i = int(index[r])
        if i not in chosen:
            if len(chosen) == count:
                break
            chosen[i] = []
        chosen[i].append(int(r))
    return [rows[len(rows) // 2] for rows in chosen.values()]


def compute_weights(path: Path, *, presets: int = 8, delta: float = 0.1, workers: int = 1,
                    params: list[str] | None = None, show_progress: bool = False, store: bool = True) -> np.ndarray:
    """Measure, store (unless store=False) and return the (n_continuous,) float32 importance weights.

    params: names of continuous controls to measure (default: all); the others get weight 1.
    Raises DatasetError for an unusable data set, ConfigError for bad arguments.
    """
    import h5py
    from tqdm import tqdm

    from datagen.dataset import load_catalog, preset_from_row
    from datagen.features import FeatureConfig
    from datagen.summary import LABELS, open_checked
    from datagen.isolation import ThreadWorkers
    from datagen.registry import load_registry
    from datagen.render import RenderConfig

    if presets < 1:
        raise ConfigError(f"presets must be >= 1, got {presets}")
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    path = Path(path)
    attrs = open_checked(path, need=("split", "preset_index", "midi_note", *LABELS))
    registry = load_registry()
    if attrs.get("registry_fingerprint") != registry.fingerprint:
        raise DatasetError(f"{path}: labels are for registry {attrs.get('registry_fingerprint')}, the installed "
                           f"vita has {registry.fingerprint}")
    names = [p.name for p in registry.continuous]
    if params is None:
        measured = list(range(len(names)))
    else:
        unknown = [p for p in params if p not in names]
        if unknown:
            raise ConfigError(f"not continuous controls: {', '.join(unknown)}")
        measured = sorted({names.index(p) for p in params})
    rows = _train_rows(path, presets)
    if not rows:
        raise DatasetError(f"{path}: no presets in the train split")
    catalog = load_catalog(attrs)
    with h5py.File(path, "r") as f:
        labels = [{k: f[k][r] for k in LABELS} for r in rows]
        notes = [int(f["midi_note"][r]) for r in rows]
    base = [preset_from_row(lab, registry=registry, catalog=catalog) for lab in labels]
    render_config = RenderConfig(**json.loads(attrs["render_config"]))
    features = FeatureConfig.from_json(attrs["feature_config"])
    isolated = ThreadWorkers(_handler, render_config, features, timeout=300.0, fork=True)  # one per thread

    def mel(k: int, j: int | None) -> np.ndarray:
        """(n_mels, n_frames) float32 log-mel of preset k with control j perturbed (None: unchanged)."""
        preset = base[k]
        if j is not None:
            preset = preset.with_values(**{names[j]: perturb(preset.continuous[names[j]], delta)})
        what = f"row {rows[k]}" + ("" if j is None else f" with {names[j]} perturbed")
        try:
            return isolated.call((preset.to_vital_text(registry), notes[k]), label=what)
        except RuntimeError as e:  # WorkerCrash, or Vital refused the preset
            raise DatasetError(f"{path}: {what}: {e}") from None

    n_presets = len(base)
    raw = np.zeros((n_presets, len(measured)))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with tqdm(total=n_presets * (2 + len(measured)), unit="render", disable=not show_progress,
                  desc="importance", dynamic_ncols=True) as bar:
            def run(k, j):
                out = mel(k, j)
                bar.update(1)
                return out

            pairs = [[pool.submit(run, k, None) for _ in range(2)] for k in range(n_presets)]
            base_mels = [[f.result() for f in pair] for pair in pairs]
            noise = [float(np.mean(np.abs(a - b))) for a, b in base_mels]
            for k, level in enumerate(noise):
                if level > 0:
                    log.info("%s row %d: two renders of one preset differ (mean |d log-mel| %.3g); subtracted as "
                             "its noise floor", path.name, rows[k], level)
            futures = {(k, m): pool.submit(run, k, j) for k in range(n_presets) for m, j in enumerate(measured)}
            for (k, m), f in futures.items():
                raw[k, m] = max(float(np.mean(np.abs(f.result() - base_mels[k][0]))) - noise[k], 0.0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error: drop what has not started
        isolated.close()

    weights = np.ones(len(names), np.float32)
    weights[measured] = normalise(raw.mean(0)).astype(np.float32)
    if store:
        _store(path, weights, presets=n_presets, delta=delta,
               measured="all" if params is None else json.dumps([names[j] for j in measured]))
    return weights


def _store(path: Path, weights: np.ndarray, *, presets: int, delta: float, measured: str) -> None:
    import h5py

    try:
        with h5py.File(path, "a") as f:
            if DATASET in f:
                del f[DATASET]
            f.create_dataset(DATASET, data=weights)
            f.attrs["importance_presets"] = presets
            f.attrs["importance_delta"] = delta
            f.attrs["importance_params"] = measured
    except OSError as e:
        raise DatasetError(f"{path}: cannot write the weights into it ({e})") from None


def read_weights(path: Path) -> np.ndarray | None:
    """The stored (n_continuous,) float32 importance weights, or None when none were computed."""
    import h5py

    from datagen.summary import open_checked

    path = Path(path)
    attrs = open_checked(path, need=())
    with h5py.File(path, "r") as f:
        if DATASET not in f:
            return None
        weights = f[DATASET][:]
    n = len(json.loads(attrs["continuous_names"]))
    if weights.shape != (n,):
        raise DatasetError(f"{path}: {DATASET} has shape {weights.shape}, expected ({n},)")
    return weights
