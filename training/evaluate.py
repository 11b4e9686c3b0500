"""`python -m training evaluate`: how well a checkpoint recovers the presets of a data set split.

The report (a JSON-able dict, `write_report` saves it with a spectrogram figure):

- parameters, masked exactly as the loss masks them (`training.losses.masks`): continuous MSE and MAE in
  normalised units, overall and per registry module (`osc_1`, `filter_1`, `env_1`, `reverb`, ...);
  categorical argmax accuracy overall and per predicted parameter; wavetable accuracy over the oscillators
  that are on. Sums and counts are accumulated over batches (`MetricSums`), so the numbers are exactly those
  of one batch holding every item. A ratio whose count is 0 is None (JSON null).
- modulation: precision / recall of the presence head at sigmoid >= 0.5 and the mean |amount error| over
  true positives, from the counts of `training.losses.metrics` summed over batches.
- baseline: the same parameter metrics for a model that ignores the audio and predicts the masked mean of
  every continuous parameter and the masked mode of every categorical one (and of each oscillator's
  wavetable), fitted on the train split of the same files (the evaluated rows when there is none).
- spectral distance: for `n_render` items chosen with `seed`, the decoded prediction is rendered exactly as
  the data set's rows were (`datagen.generate.LabelRenderer`, at the row's note) and compared with the
  target audio by auraloss' multi-resolution STFT loss (spectral convergence + log magnitude, FFT sizes
  512/1024/2048, hop a quarter of each) on RMS-normalised signals (`datagen.distances.LinearSTFTDistance`).
  The target is the row's stored audio (int16; the renders are quantised the same way, so a perfect
  prediction scores exactly 0) or, for a data set made with --no-audio, the row's labels re-rendered. The
  init preset's distance is the floor reference: a model that has learnt anything sits well below it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from datagen.console import ConfigError
from datagen.distances import LinearSTFTDistance
from datagen.registry import OSCILLATORS

log = logging.getLogger(__name__)

SPLIT_ALL = "all"  # evaluate every row, whatever its split (tiny sets may have no val/test rows)
MAX_FIGURE_ITEMS = 4  # rendered items shown in spectrograms.png


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


class Report(dict):
    """The JSON-able report. `examples` (not part of the JSON) carries the log-mels of up to
    MAX_FIGURE_ITEMS rendered items for `write_report`'s figure: dicts with title, target, predicted
    ((n_mels, n_frames) float32 each)."""

    examples: list

    def __init__(self, *args, examples: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.examples = examples or []


# ---- parameter metrics -------------------------------------------------------------------------------

class MetricSums:
    """Masked sums and counts of every parameter metric, accumulated batch by batch.

    `update(outputs, batch)` takes the model's forward dict (or any dict shaped like it; "modulation" may be
    absent) and a batch from `training.data.collate`; `result()` divides. wavetable_map, when given, maps the
    model's wavetable classes to the data set's ((n_model_tables + 1,) int64, -1 = a table the data set's
    catalog does not have), see `wavetable_class_map`."""

    def __init__(self, *, registry, spec, predicted_categorical, wavetable_map: np.ndarray | None = None):
        self.spec = spec
        self.predicted = [int(i) for i in predicted_categorical]
        self.groups = [registry.by_name[name].module for name in spec.continuous_names]  # per continuous column
        self.wavetable_map = None if wavetable_map is None else np.asarray(wavetable_map, np.int64)
        self.osc_switch = [spec.categorical_names.index(f"{osc}_on") for osc in OSCILLATORS]
        n_cont, n_cat = len(spec.continuous_names), len(spec.categorical_names)
        self.sq_err = np.zeros(n_cont)  # float64 sums per continuous column
        self.abs_err = np.zeros(n_cont)
        self.cont_count = np.zeros(n_cont)
        self.correct = np.zeros(n_cat)  # per categorical column (only predicted ones move)
        self.cat_count = np.zeros(n_cat)
        self.wt_correct = np.zeros(3)  # per oscillator
        self.wt_count = np.zeros(3)
        self.mod = {"tp": 0.0, "fp": 0.0, "fn": 0.0, "amount_err": 0.0}
        self.n_items = 0

    def update(self, outputs: dict, batch: dict) -> None:
        import torch

        from training.losses import masks, metrics, routed_sources

        to_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
        m = masks(self.spec, batch["categorical"], routed_sources(batch["modulation"]))
        mc = m["continuous"].double()  # (B, n_cont)
        err = outputs["continuous"].double() - batch["continuous"].double()
        self.sq_err += to_np((mc * err * err).sum(0))
        self.abs_err += to_np((mc * err.abs()).sum(0))
        self.cont_count += to_np(mc.sum(0))
        if self.predicted:
            mk = m["categorical"][:, self.predicted].double()  # (B, n_cat')
            guess = torch.stack([z.argmax(dim=1) for z in outputs["categorical"]], dim=1)
            hit = (guess == batch["categorical"][:, self.predicted].to(guess.device)).double()
            self.correct[self.predicted] += to_np((mk * hit).sum(0))
            self.cat_count[self.predicted] += to_np(mk.sum(0))
        on = (batch["categorical"][:, self.osc_switch] == 1).double()  # (B, 3): the loss' wavetable mask
        guess = torch.stack([z.argmax(dim=1) for z in outputs["wavetable"]], dim=1).cpu()  # (B, 3)
        if self.wavetable_map is not None:
            guess = torch.from_numpy(self.wavetable_map)[guess]
        hit = (guess == batch["wavetable"].cpu()).double()
        self.wt_correct += to_np((on.cpu() * hit).sum(0))
        self.wt_count += to_np(on.sum(0))
        if "modulation" in outputs:
            mm = metrics(outputs, batch, self.spec, self.predicted)
            for key in ("tp", "fp", "fn"):
                self.mod[key] += mm[f"modulation_{key}"]
            self.mod["amount_err"] += mm["modulation_amount_mae"] * mm["modulation_tp"]
        self.n_items += len(batch["continuous"])

    def result(self) -> dict:
        ratio = lambda a, b: float(a / b) if b > 0 else None  # noqa: E731
        by_group: dict[str, list[float]] = {}
        for g, sq, ab, n in zip(self.groups, self.sq_err, self.abs_err, self.cont_count):
            s = by_group.setdefault(g, [0.0, 0.0, 0.0])
            s[0] += sq
            s[1] += ab
            s[2] += n
        groups = sorted(by_group)
        names = self.spec.categorical_names
        tp, fp, fn = (self.mod[k] for k in ("tp", "fp", "fn"))
        return {
            "n_items": self.n_items,
            "continuous_mse": ratio(self.sq_err.sum(), self.cont_count.sum()),
            "continuous_mae": ratio(self.abs_err.sum(), self.cont_count.sum()),
            "continuous_count": int(round(self.cont_count.sum())),
            "continuous_mse_by_group": {g: ratio(by_group[g][0], by_group[g][2]) for g in groups},
            "continuous_mae_by_group": {g: ratio(by_group[g][1], by_group[g][2]) for g in groups},
            "continuous_count_by_group": {g: int(round(by_group[g][2])) for g in groups},
            "categorical_accuracy": ratio(self.correct.sum(), self.cat_count.sum()),
            "categorical_count": int(round(self.cat_count.sum())),
            "categorical_accuracy_by_param": {names[i]: ratio(self.correct[i], self.cat_count[i])
                                              for i in self.predicted},
            "wavetable_accuracy": ratio(self.wt_correct.sum(), self.wt_count.sum()),
            "wavetable_count": int(round(self.wt_count.sum())),
            "modulation_precision": ratio(tp, tp + fp),
            "modulation_recall": ratio(tp, tp + fn),
            "modulation_amount_mae": ratio(self.mod["amount_err"], tp),
            "modulation_tp": int(round(tp)), "modulation_fp": int(round(fp)), "modulation_fn": int(round(fn)),
        }


def wavetable_class_map(model_catalog, data_catalog) -> np.ndarray:
    """(len(model_catalog) + 1,) int64: the data set's class for each model class, matched by table content
    (0 = init table for both; -1 = a table the data set's catalog does not have). Identity when the model
    was trained on this catalog; an ingested set extends the procedural catalog, so classes still line up."""
    by_hash: dict[str, int] = {}
    for j, t in enumerate(data_catalog):
        by_hash.setdefault(t.content_hash, j + 1)
    return np.array([0] + [by_hash.get(t.content_hash, -1) for t in model_catalog], np.int64)


# ---- spectral distance -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _distance():
    return LinearSTFTDistance()


def spectral_distance(predicted: np.ndarray, target: np.ndarray) -> float:
    """`datagen.distances.LinearSTFTDistance` between two mono clips (samples,): auraloss multi-resolution STFT
    loss after RMS-normalising each (so a gain difference costs nothing); the prediction is fitted to the
    target's length. 0 for equal clips; a silent prediction scores about 1 + the log-magnitude gap."""
    return _distance()(predicted, target)


def render_config(attrs: dict):
    """The GenerateConfig whose LabelRenderer renders like the data set's rows: `config_of` for generated
    sets; for ingested ones (whose manifest is not a GenerateConfig) one built from their notes and render
    settings. `wavetables_from` is dropped: renders take tables from the preset, and the folder may be gone."""
    from datagen.features import FeatureConfig
    from datagen.generate import GenerateConfig, config_of
    from datagen.render import RenderConfig

    try:
        config = config_of(attrs)
    except (KeyError, TypeError, ValueError):
        config = GenerateConfig(notes=tuple(json.loads(attrs["notes"])),
                                render=RenderConfig(**json.loads(attrs["render_config"])),
                                features=FeatureConfig.from_json(attrs["feature_config"]))
    return replace(config, wavetables_from=None)


class ItemAudio:
    """Target audio and renders for the items of a PresetDataset, as its rows were rendered.

    `target(i)`: (samples,) float32, the stored audio of item i, or its labels re-rendered when the data set
    has no audio. `render(preset, midi_note)`: (samples,) float32 through one LabelRenderer (rendering every
    note of the data set in one fork, as generation did, and keeping the row's). With stored audio, renders
    are quantised to its int16 grid, so identical presets give identical clips. Close it (or use `with`)."""

    def __init__(self, dataset):
        import h5py

        from datagen.dataset import PCM_SCALE, load_catalog
        from datagen.generate import LabelRenderer
        from datagen.registry import load_registry

        self.dataset = dataset
        self.registry = load_registry()
        self.catalog = load_catalog(dataset.attrs)
        config = render_config(dataset.attrs)
        self.notes = list(config.notes)
        self.scale = float(dataset.attrs.get("audio_scale", 1.0 / PCM_SCALE))
        self._files = [h5py.File(p, "r") for p in dataset.paths]
        self.stored = all("audio" in f for f in self._files)
        self._renderer = LabelRenderer(config)

    def midi_note(self, i: int) -> int:
        k, row = self.dataset.index[i]
        return int(self._files[k]["midi_note"][row])

    def target(self, i: int) -> np.ndarray:
        from datagen.dataset import preset_from_row

        k, row = self.dataset.index[i]
        f = self._files[k]
        if self.stored:
            return f["audio"][row].astype(np.float32) * np.float32(self.scale)
        labels = {name: f[name][row] for name in ("continuous", "categorical", "wavetable", "modulation")}
        return self.render(preset_from_row(labels, registry=self.registry, catalog=self.catalog),
                           int(f["midi_note"][row]))

    def render(self, preset, midi_note: int) -> np.ndarray:
        audio = self._renderer.render(preset)[self.notes.index(int(midi_note))]  # (samples,)
        if self.stored:  # the target's precision: round(x * 32767) as int16, back to float
            audio = np.round(np.clip(audio, -1.0, 1.0) / self.scale).astype(np.float32) * np.float32(self.scale)
        return audio.astype(np.float32)

    def close(self) -> None:
        self._renderer.close()
        for f in self._files:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- the evaluation ----------------------------------------------------------------------------------

def evaluate(config: EvaluateConfig, *, show_progress: bool = True) -> Report:
    """Evaluate a checkpoint on a data set split; returns the report (see the module docstring).

    Raises CheckpointError (missing, other format or registry, weights that do not fit), DatasetError
    (missing or other-registry data, an empty split, features other than the checkpoint's), ConfigError (bad
    config). Wavetables are matched by content, so a data set whose catalog extends the checkpoint's (an
    ingested one) is fine; tables it lacks are logged once and count as wrong."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from datagen.dataset import DatasetError, load_catalog
    from datagen.features import FeatureConfig, log_mel
    from datagen.preset import init_preset
    from datagen.registry import load_registry
    from datagen.wavetables import Catalog
    from training import checkpoint
    from training.data import PresetDataset, collate
    from training.decode import decode
    from training.baseline import baseline_outputs, fit_baseline
    from training.losses import build_mask_spec

    t_start = time.perf_counter()
    registry = load_registry()
    ckpt = checkpoint.load(Path(config.checkpoint))
    split = None if config.split == SPLIT_ALL else config.split
    dataset = PresetDataset(list(config.data), split=split)
    data_names = ", ".join(config.data)
    parts = checkpoint.contents(ckpt, Path(config.checkpoint))
    features, model_catalog = parts.features, parts.catalog
    data_features = FeatureConfig.from_json(dataset.info.feature_config)
    if features != data_features:
        diff = [f"{k} {getattr(data_features, k)} (checkpoint: {getattr(features, k)})"
                for k in features.__dataclass_fields__ if getattr(features, k) != getattr(data_features, k)]
        raise DatasetError(f"{data_names}: features differ from the checkpoint's: {', '.join(diff)}")
    data_catalog = load_catalog(dataset.attrs)
    wt_map = wavetable_class_map(model_catalog, data_catalog)
    missing = int((wt_map < 0).sum())
    if missing:
        log.warning("%d of the checkpoint's %d wavetables are not in the data set's catalog; predicting them "
                    "counts as wrong", missing, len(model_catalog))

    model = checkpoint.build_model(ckpt, config.checkpoint)
    model_config = model.config
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()

    n_items = len(dataset) if config.max_items is None else min(len(dataset), config.max_items)
    items = Subset(dataset, range(n_items))
    spec = build_mask_spec(registry, tier=dataset.info.tier)
    predicted = list(model_config.predicted_categorical)
    n_render = min(config.n_render, n_items)
    chosen = sorted(int(i) for i in np.random.default_rng(config.seed).choice(n_items, n_render, replace=False))
    t_setup = time.perf_counter()

    # the baseline is fitted on the train split of the same files, or on the evaluated rows without one
    fit_split = "train"
    fit = fit_baseline(dataset.paths, spec=spec, predicted_categorical=predicted,
                       n_wavetables=len(data_catalog) + 1, split=fit_split)
    if fit["n_rows"] == 0:
        fit_split = config.split
        fit = fit_baseline(dataset.paths, spec=spec, predicted_categorical=predicted,
                           n_wavetables=len(data_catalog) + 1, split=split)
    t_baseline = time.perf_counter()

    sums = MetricSums(registry=registry, spec=spec, predicted_categorical=predicted, wavetable_map=wt_map)
    base_sums = MetricSums(registry=registry, spec=spec, predicted_categorical=predicted)
    loader = DataLoader(items, batch_size=config.batch_size, shuffle=False, collate_fn=functools.partial(
        collate, n_sources=len(registry.sources), n_destinations=len(registry.destinations)))
    decoded: dict[int, object] = {}  # item -> predicted Preset, for the chosen items
    start = 0
    with torch.no_grad():
        for batch in tqdm(loader, desc="evaluate", disable=not show_progress, dynamic_ncols=True):
            b = len(batch["midi_note"])
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs = model(batch["mel"])
            outputs = {k: [t.float() for t in v] if isinstance(v, list) else v.float() for k, v in outputs.items()}
            sums.update(outputs, batch)
            base_sums.update(baseline_outputs(fit, batch_size=b, spec=spec, predicted_categorical=predicted,
                                              n_wavetables=len(data_catalog) + 1),
                             {k: v.cpu() for k, v in batch.items()})
            here = [i for i in chosen if start <= i < start + b]
            if here:
                rows = torch.tensor([i - start for i in here], device=device)
                picked = {k: [t[rows] for t in v] if isinstance(v, list) else v[rows] for k, v in outputs.items()}
                for i, d in zip(here, decode(picked, registry=registry, catalog=model_catalog,
                                             predicted_categorical=predicted)):
                    decoded[i] = d.preset
            start += b
    t_inference = time.perf_counter()

    rendered, examples = [], []
    if chosen:
        init = init_preset(registry)
        init_audio: dict[int, np.ndarray] = {}
        with ItemAudio(dataset) as audio:
            for i in tqdm(chosen, desc="render", disable=not show_progress, dynamic_ncols=True):
                k, row = (int(x) for x in dataset.index[i])
                note = audio.midi_note(i)
                entry = {"item": i, "file": k, "row": row, "midi_note": note, "distance": None,
                         "init_distance": None, "error": None}
                try:
                    target = audio.target(i)
                    if note not in init_audio:
                        init_audio[note] = audio.render(init, note)
                    entry["init_distance"] = spectral_distance(init_audio[note], target)
                    predicted_audio = audio.render(decoded[i], note)
                    entry["distance"] = spectral_distance(predicted_audio, target)
                except RuntimeError as e:  # WorkerCrash, or Vital refusing the decoded preset
                    entry["error"] = str(e).splitlines()[0]
                    log.warning("item %d: %s", i, entry["error"])
                else:
                    if len(examples) < MAX_FIGURE_ITEMS:
                        examples.append({"title": f"item {i} (note {note}), distance {entry['distance']:.3f}",
                                         "target": log_mel(target, features), "predicted": log_mel(
                                             predicted_audio, features)})
                rendered.append(entry)
            target_source = "stored audio" if audio.stored else "re-rendered labels"
    else:
        target_source = None
    t_render = time.perf_counter()

    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    good = [e for e in rendered if e["error"] is None]
    baseline = {k: v for k, v in base_sums.result().items() if not k.startswith("modulation_")}
    report = Report({
        "checkpoint": str(config.checkpoint),
        "data": list(config.data),
        "split": config.split,
        "n_items": n_items,
        "tier": dataset.info.tier,
        "checkpoint_tier": ckpt.get("tier"),
        "checkpoint_metrics": ckpt.get("metrics"),
        **sums.result(),
        "baseline": {"fitted_on": fit_split, "fit_rows": fit["n_rows"], **baseline},
        "spectral_distance": {
            "metric": f"auraloss MultiResolutionSTFTLoss, FFT {'/'.join(map(str, LinearSTFTDistance.FFT_SIZES))}, "
                      "RMS-normalised",
            "target": target_source, "n_render": len(rendered), "n_failed": len(rendered) - len(good),
            "mean": mean([e["distance"] for e in good]), "init_mean": mean([e["init_distance"] for e in good]),
            "items": rendered,
        },
        "timings": {"setup_s": t_setup - t_start, "baseline_s": t_baseline - t_setup,
                    "inference_s": t_inference - t_baseline, "render_s": t_render - t_inference,
                    "total_s": t_render - t_start,
                    "items_per_s": n_items / max(t_inference - t_baseline, 1e-9)},
        "device": str(device),
    }, examples=examples)
    return report


def write_report(report: dict, out_dir) -> dict[str, Path]:
    """Write report.json and, when the report has rendered examples, spectrograms.png (target vs predicted
    log-mel, one row per item). Returns {"report": path, "spectrograms": path (when written)}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.json"}
    tmp = paths["report"].with_name("report.json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(paths["report"])
    examples = getattr(report, "examples", [])
    if examples:
        paths["spectrograms"] = out / "spectrograms.png"
        _plot_examples(examples, paths["spectrograms"])
    return paths


def _plot_examples(examples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 2, figsize=(9, 2.6 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples):
        lo = float(min(ex["target"].min(), ex["predicted"].min()))
        hi = float(max(ex["target"].max(), ex["predicted"].max()))
        for ax, key in zip(row, ("target", "predicted")):
            ax.imshow(ex[key], origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(f"{key}: {ex['title']}", fontsize=8)
            ax.set_xlabel("frame")
            ax.set_ylabel("mel bin")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
