"""The audio of a data set's rows, for judging predictions by sound (`training evaluate`): each row's target
(its stored audio, or its labels re-rendered for a set made with --no-audio), renders of other presets exactly
as the rows were rendered (`datagen.generate.LabelRenderer`, at the row's note), and the spectral distance
between two clips (`datagen.distances.LinearSTFTDistance`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace

import numpy as np

from datagen.distances import LinearSTFTDistance


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
    settings. `wavetables_from` and `perturb_from` are dropped: renders take everything from the preset, and
    the folders may be gone."""
    from datagen.features import FeatureConfig
    from datagen.generate import GenerateConfig, config_of
    from datagen.render import RenderConfig

    try:
        config = config_of(attrs)
    except (KeyError, TypeError, ValueError):
        config = GenerateConfig(notes=tuple(json.loads(attrs["notes"])),
                                render=RenderConfig(**json.loads(attrs["render_config"])),
                                features=FeatureConfig.from_json(attrs["feature_config"]))
    return replace(config, wavetables_from=None, perturb_from=None)


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
