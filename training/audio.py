"""The audio of a data set's rows, for judging predictions by sound (`training evaluate`): each row's target
(its stored audio, or its labels re-rendered for a set made with --no-audio), renders of other presets exactly
as the rows were rendered (`datagen.generate.LabelRenderer`, at the row's note), and the spectral distance
between two clips (`datagen.distances.LinearSTFTDistance`).
"""

from __future__ import annotations

import functools

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


class ItemAudio:
    """Target audio and renders for the items of a PresetDataset, as its rows were rendered.

    `target(i)`: (samples,) float32, the stored audio of item i, or its labels re-rendered when the data set
    has no audio. `render(preset, i)`: (samples,) float32, the preset at item i's note, through one
    LabelRenderer (rendering every note item i's preset was rendered at in one fork, as generation did, and
    keeping the row's). With stored audio, renders are quantised to its int16 grid, so identical presets give
    identical clips. Close it (or use `with`)."""

    def __init__(self, dataset):
        import h5py

        from datagen.dataset import PCM_SCALE, load_catalog
        from datagen.generate import LabelRenderer, label_config
        from datagen.registry import load_registry

        self.dataset = dataset
        self.registry = load_registry()
        self.catalog = load_catalog(dataset.attrs)
        self.config = label_config(dataset.attrs)
        self.scale = float(dataset.attrs.get("audio_scale", 1.0 / PCM_SCALE))
        self._files = [h5py.File(p, "r") for p in dataset.paths]
        self.stored = all("audio" in f for f in self._files)
        self._renderer = LabelRenderer(self.config)

    def midi_note(self, i: int) -> int:
        k, row = self.dataset.index[i]
        return int(self._files[k]["midi_note"][row])

    def notes(self, i: int) -> tuple[int, ...]:
        """The notes item i's preset was rendered at, in order (`GenerateConfig.notes_of` its preset index); just
        the item's note when its set does not say (a merged or hand-made set)."""
        k, row = self.dataset.index[i]
        notes = self.config.notes_of(int(self._files[k]["preset_index"][row]))
        note = self.midi_note(i)
        return notes if note in notes else (note,)

    def target(self, i: int) -> np.ndarray:
        from datagen.dataset import preset_from_row

        k, row = self.dataset.index[i]
        f = self._files[k]
        if self.stored:
            return f["audio"][row].astype(np.float32) * np.float32(self.scale)
        labels = {name: f[name][row] for name in ("continuous", "categorical", "wavetable", "modulation")}
        return self.render(preset_from_row(labels, registry=self.registry, catalog=self.catalog), i)

    def render(self, preset, i: int) -> np.ndarray:
        notes = self.notes(i)
        audio = self._renderer.render(preset, notes)[notes.index(self.midi_note(i))]  # (samples,)
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
