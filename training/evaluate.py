"""`python -m training evaluate`: how well a checkpoint recovers the presets of a data set split.

The report (a JSON-able `training.report.Report`; `write_report` saves it with a spectrogram figure):

- parameters: every head's metrics (`training.metrics`), masked exactly as the loss masks them: continuous
  MSE and MAE in normalised units, overall and per registry module (`osc_1`, `filter_1`, `env_1`, `reverb`,
  ...); categorical argmax accuracy overall and per predicted parameter; wavetable accuracy over the
  oscillators that are on; modulation precision / recall of the presence head at probability >= 0.5 (the
  logit read with the training pos_weight, `training.heads.modulation.presence_probability`) and the mean
  |amount error| over true positives. Sums and counts are accumulated over batches, so the numbers are exactly
  those of one batch holding every item. A ratio whose count is 0 is None (JSON null).
- baseline: the same metrics, for the heads that have one, of a model that ignores the audio and predicts the
  masked mean of every continuous parameter and the masked mode of every categorical one (and of each
  oscillator's wavetable), fitted on the train split of the same files (the evaluated rows when there is none).
- spectral distance: for `n_render` items chosen with `seed`, the decoded prediction is rendered exactly as
  the data set's rows were (`training.audio.ItemAudio`, at the row's note) and compared with the target audio
  by auraloss' multi-resolution STFT loss (spectral convergence + log magnitude, FFT sizes 512/1024/2048, hop
  a quarter of each) on RMS-normalised signals (`datagen.distances.LinearSTFTDistance`). The target is the
  row's stored audio (int16; the renders are quantised the same way, so a perfect prediction scores exactly 0)
  or, for a data set made with --no-audio, the row's labels re-rendered. The init preset's distance is the
  floor reference: a model that has learnt anything sits well below it.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen.console import ConfigError
from datagen.distances import LinearSTFTDistance
from training.report import MAX_FIGURE_ITEMS, Report

log = logging.getLogger(__name__)

SPLIT_ALL = "all"  # evaluate every row, whatever its split (tiny sets may have no val/test rows)


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    checkpoint: str
    data: tuple[str, ...]  # HDF5 files (one, shards, or a merged virtual set)
    split: str = "test"  # train, val, test, or "all"
    batch_size: int = 32
    device: str | None = None  # None: cuda if available, else cpu
    n_render: int = 16  # items whose predictions are rendered for the spectral distance (0 disables)
    seed: int = 0  # which items are rendered
    max_items: int | None = None  # evaluate only the first N items of the split

    def __post_init__(self):
        from datagen.dataset import SPLITS

        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        if not self.data:
            raise ConfigError("give at least one data set file")
        if self.split not in (*SPLITS, SPLIT_ALL):
            raise ConfigError(f"split must be one of {', '.join((*SPLITS, SPLIT_ALL))}, got {self.split!r}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch-size must be positive, got {self.batch_size}")
        if self.n_render < 0:
            raise ConfigError(f"n-render must be >= 0, got {self.n_render}")
        if self.max_items is not None and self.max_items <= 0:
            raise ConfigError(f"max-items must be positive, got {self.max_items}")


@dataclass(frozen=True)
class _Run:
    """What every step of one evaluation reads: set up once by `_setup`."""

    config: EvaluateConfig
    registry: object
    ckpt: dict
    dataset: object  # training.data.PresetDataset of the split
    features: object  # the checkpoint's FeatureConfig (the data set's are checked equal)
    model_catalog: object  # the checkpoint's wavetable Catalog: what its classes decode to
    n_data_tables: int  # wavetable classes of the data set: its catalog's size + 1
    wavetable_map: np.ndarray  # model class -> data set class (training.heads.wavetable.wavetable_class_map)
    model: object
    device: object
    n_items: int  # the first n_items of the split are evaluated
    spec: object  # the loss' MaskSpec at the data set's tier
    predicted: list[int]  # predicted categorical columns
    chosen: list[int]  # the items rendered, sorted
    pos_weight: float  # the presence loss's pos_weight in training: how presence logits read as probabilities


def evaluate(config: EvaluateConfig, *, show_progress: bool = True) -> Report:
    """Evaluate a checkpoint on a data set split; returns the report (see the module docstring).

    Raises CheckpointError (missing, other format or registry, weights that do not fit), DatasetError
    (missing or other-registry data, an empty split, features other than the checkpoint's), ConfigError (bad
    config). Wavetables are matched by content, so a data set whose catalog extends the checkpoint's (an
    ingested one) is fine; tables it lacks are logged once and count as wrong."""
    times = [time.perf_counter()]
    run = _setup(config)
    times.append(time.perf_counter())
    fit, fitted_on = _fit_baseline(run)
    times.append(time.perf_counter())
    scores = _score(run, fit, show_progress=show_progress)
    times.append(time.perf_counter())
    renders = _render(run, scores["decoded"], show_progress=show_progress)
    times.append(time.perf_counter())
    return _report(run, scores, renders, fit=fit, fitted_on=fitted_on, times=times)


def _setup(config: EvaluateConfig) -> _Run:
    """Load the checkpoint, its model and the data set split; check their features agree; match wavetables."""
    import torch

    from datagen.dataset import DatasetError, load_catalog
    from datagen.features import FeatureConfig
    from datagen.registry import load_registry
    from training import checkpoint
    from training.data import PresetDataset
    from training.heads.wavetable import wavetable_class_map
    from training.losses import build_mask_spec

    registry = load_registry()
    ckpt = checkpoint.load(Path(config.checkpoint))
    dataset = PresetDataset(list(config.data), split=None if config.split == SPLIT_ALL else config.split)
    parts = checkpoint.contents(ckpt, Path(config.checkpoint))
    data_features = FeatureConfig.from_json(dataset.info.feature_config)
    if parts.features != data_features:
        diff = [f"{k} {getattr(data_features, k)} (checkpoint: {getattr(parts.features, k)})"
                for k in parts.features.__dataclass_fields__
                if getattr(parts.features, k) != getattr(data_features, k)]
        raise DatasetError(f"{', '.join(config.data)}: features differ from the checkpoint's: {', '.join(diff)}")
    data_catalog = load_catalog(dataset.attrs)
    wt_map = wavetable_class_map(parts.catalog, data_catalog)
    missing = int((wt_map < 0).sum())
    if missing:
        log.warning("%d of the checkpoint's %d wavetables are not in the data set's catalog; predicting them "
                    "counts as wrong", missing, len(parts.catalog))

    model = checkpoint.build_model(ckpt, config.checkpoint)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    n_items = len(dataset) if config.max_items is None else min(len(dataset), config.max_items)
    n_render = min(config.n_render, n_items)
    chosen = sorted(int(i) for i in np.random.default_rng(config.seed).choice(n_items, n_render, replace=False))
    return _Run(config=config, registry=registry, ckpt=ckpt, dataset=dataset, features=parts.features,
                model_catalog=parts.catalog, n_data_tables=len(data_catalog) + 1, wavetable_map=wt_map, model=model,
                device=device, n_items=n_items, spec=build_mask_spec(registry, tier=dataset.info.tier),
                predicted=list(model.config.predicted_categorical), chosen=chosen,
                pos_weight=parts.loss.modulation_pos_weight)


def _fit_baseline(run: _Run) -> tuple[dict, str]:
    """The baseline, fitted on the train split of the same files, or on the evaluated rows without one;
    returns it and the split it was fitted on."""
    from training.baseline import fit_baseline

    fit = functools.partial(fit_baseline, run.dataset.paths, spec=run.spec, predicted_categorical=run.predicted,
                            n_wavetables=run.n_data_tables)
    train = fit(split="train")
    if train["n_rows"]:
        return train, "train"
    return fit(split=None if run.config.split == SPLIT_ALL else run.config.split), run.config.split


def _score(run: _Run, fit: dict, *, show_progress: bool) -> dict:
    """One pass over the items: the model's and the baseline's MetricSums, and the decoded predictions of the
    chosen items ({item: Preset})."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from training.baseline import baseline_outputs
    from training.data import collate
    from training.decode import decode
    from training.heads import HEADS
    from training.metrics import MetricSums

    registry, predicted = run.registry, run.predicted
    sums = MetricSums(registry=registry, spec=run.spec, predicted_categorical=predicted,
                      wavetable_map=run.wavetable_map, pos_weight=run.pos_weight)
    base_sums = MetricSums(registry=registry, spec=run.spec, predicted_categorical=predicted,
                           heads=[name for name, head in HEADS.items() if head.baseline is not None])
    loader = DataLoader(Subset(run.dataset, range(run.n_items)), batch_size=run.config.batch_size, shuffle=False,
                        collate_fn=functools.partial(collate, n_sources=len(registry.sources),
                                                     n_destinations=len(registry.destinations)))
    decoded: dict[int, object] = {}
    start = 0
    with torch.no_grad():
        for batch in tqdm(loader, desc="evaluate", disable=not show_progress, dynamic_ncols=True):
            b = len(batch["midi_note"])
            batch = {k: v.to(run.device) for k, v in batch.items()}
            outputs = _each(run.model(batch["mel"], batch["midi_note"]), lambda t: t.float())
            sums.update(outputs, batch)
            base_sums.update(baseline_outputs(fit, batch_size=b, spec=run.spec, predicted_categorical=predicted,
                                              n_wavetables=run.n_data_tables),
                             {k: v.cpu() for k, v in batch.items()})
            here = [i for i in run.chosen if start <= i < start + b]
            if here:
                rows = torch.tensor([i - start for i in here], device=run.device)
                picked = decode(_each(outputs, lambda t: t[rows]), registry=registry, catalog=run.model_catalog,
                                predicted_categorical=predicted, pos_weight=run.pos_weight)
                decoded.update((i, d.preset) for i, d in zip(here, picked))
            start += b
    return {"model": sums.result(), "baseline": base_sums.result(), "decoded": decoded}


def _each(outputs: dict, f) -> dict:
    """A forward dict with `f` applied to each tensor (a head's output is a tensor or a list of them)."""
    return {k: [f(t) for t in v] if isinstance(v, list) else f(v) for k, v in outputs.items()}


def _render(run: _Run, decoded: dict, *, show_progress: bool) -> dict:
    """Render the chosen items' predictions and the init preset at their notes; their spectral distances to the
    targets ("items": one entry per item), log-mels of the first few for the figure ("examples") and where the
    targets came from ("target")."""
    from tqdm import tqdm

    from datagen.features import log_mel
    from datagen.preset import init_preset
    from training.audio import ItemAudio, spectral_distance

    if not run.chosen:
        return {"items": [], "examples": [], "target": None}
    init = init_preset(run.registry)
    init_audio: dict[int, np.ndarray] = {}  # note -> the init preset's render
    items, examples = [], []
    with ItemAudio(run.dataset) as audio:
        for i in tqdm(run.chosen, desc="render", disable=not show_progress, dynamic_ncols=True):
            k, row = (int(x) for x in run.dataset.index[i])
            note = audio.midi_note(i)
            entry = {"item": i, "file": k, "row": row, "midi_note": note, "distance": None, "init_distance": None,
                     "error": None}
            try:
                target = audio.target(i)
                if note not in init_audio:
                    init_audio[note] = audio.render(init, i)
                entry["init_distance"] = spectral_distance(init_audio[note], target)
                predicted_audio = audio.render(decoded[i], i)
                entry["distance"] = spectral_distance(predicted_audio, target)
            except RuntimeError as e:  # WorkerCrash, or Vital refusing the decoded preset
                entry["error"] = str(e).splitlines()[0]
                log.warning("item %d: %s", i, entry["error"])
            else:
                if len(examples) < MAX_FIGURE_ITEMS:
                    examples.append({"title": f"item {i} (note {note}), distance {entry['distance']:.3f}",
                                     "target": log_mel(target, run.features),
                                     "predicted": log_mel(predicted_audio, run.features)})
            items.append(entry)
        target_source = "stored audio" if audio.stored else "re-rendered labels"
    return {"items": items, "examples": examples, "target": target_source}


def _report(run: _Run, scores: dict, renders: dict, *, fit: dict, fitted_on: str, times: list[float]) -> Report:
    """The report (see the module docstring). times: perf_counter at the start and after each step."""
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    rendered = renders["items"]
    good = [e for e in rendered if e["error"] is None]
    setup, baseline, inference, render = (b - a for a, b in zip(times, times[1:]))
    config = run.config
    return Report({
        "checkpoint": str(config.checkpoint),
        "data": list(config.data),
        "split": config.split,
        "n_items": run.n_items,
        "tier": run.dataset.info.tier,
        "checkpoint_tier": run.ckpt.get("tier"),
        "checkpoint_metrics": run.ckpt.get("metrics"),
        **scores["model"],
        "baseline": {"fitted_on": fitted_on, "fit_rows": fit["n_rows"], **scores["baseline"]},
        "spectral_distance": {
            "metric": f"auraloss MultiResolutionSTFTLoss, FFT {'/'.join(map(str, LinearSTFTDistance.FFT_SIZES))}, "
                      "RMS-normalised",
            "target": renders["target"], "n_render": len(rendered), "n_failed": len(rendered) - len(good),
            "mean": mean([e["distance"] for e in good]), "init_mean": mean([e["init_distance"] for e in good]),
            "items": rendered,
        },
        "timings": {"setup_s": setup, "baseline_s": baseline, "inference_s": inference, "render_s": render,
                    "total_s": times[-1] - times[0], "items_per_s": run.n_items / max(inference, 1e-9)},
        "device": str(run.device),
    }, examples=renders["examples"])
