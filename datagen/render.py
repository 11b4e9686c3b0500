"""The render engine: a Preset (or `.vital` JSON) in, float32 audio out, through one reused `vita.Synth`.

Vital pitfalls this module is built around (each has a test in tests/test_render.py):
- `load_json` replaces the whole state and clears effect tails, so one Synth can be reused across presets
  and a render never hears the previous preset's reverb.
- `oversampling` only takes effect through the JSON (setting the control handle does nothing), which is one
  more reason to load everything through `load_json` and never poke control handles.
- Control handles from `get_controls()` outlive their Synth and segfault when used after it is gone: this
  module never hands one out.
- `connect_modulation` with an unlisted source/destination returns True and then segfaults: modulations are
  only ever written into the JSON, and `Preset.to_vital` refuses names outside vita's allowlist.
- Oscillators start at a random phase unless `osc_N_random_phase` is 0, so two renders of one preset differ
  sample by sample; compare renders by magnitude spectra, or zero the random phase (`deterministic()`).
- Vital's random generators (random LFOs, unison, noise, ...) depend on the process's history (renders and
  Synths created before), and neither `load_json` nor a new Synth resets them: the same preset can render
  differently in two processes (spectral distance up to ~1.5 on sampled presets). Data sets therefore render
  each preset in a fork of a pristine worker (`datagen.isolation.Worker(fork=True)`), which is exact.
- Some values segfault the process outright (out-of-range `chorus_voices`); `datagen.isolation` renders in a
  worker process for anything that did not come from our own `Preset` clamping.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import numpy as np

from datagen.console import ConfigError
from datagen.preset import Preset
from datagen.registry import OSCILLATORS, Registry


@dataclass(frozen=True)
class RenderConfig:
    sample_rate: int = 44100  # Hz
    velocity: float = 0.8  # [0, 1]
    note_length: float = 1.5  # seconds the key is held
    render_length: float = 2.0  # seconds of audio returned (release tail included)
    mono: bool = True  # average the two channels

    def __post_init__(self):
        if self.sample_rate <= 0 or not (0.0 <= self.velocity <= 1.0):
            raise ConfigError(f"bad render config: {self}")
        if self.note_length <= 0 or self.render_length <= 0:
            raise ConfigError(f"note and render lengths must be positive: {self}")

    @property
    def n_samples(self) -> int:
        return int(self.render_length * self.sample_rate)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RenderConfig":
        """The config a `to_json` (or a data set's `render_config` attribute) describes; TypeError / ValueError
        when it is not one."""
        return cls(**json.loads(text))

    def for_clip(self, *, seconds: float, key_held: float | None = None) -> "RenderConfig":
        """How a clip of `seconds` is rendered for comparison, at this config's sample rate and velocity (a
        checkpoint's: its training data's), in mono: the key held `key_held` seconds (the clip's own note length
        when known), else as this config holds it (training data: 1.5 s of 2 s), 3/4 of the clip at most."""
        held = key_held if key_held is not None else min(self.note_length, 0.75 * seconds)
        return replace(self, render_length=seconds, note_length=max(1e-3, min(held, seconds)), mono=True)


class RenderError(RuntimeError):
    """Vital refused a preset (malformed JSON, or one from a newer Vital)."""


class Renderer:
    """One Synth, reused. Not thread-safe by design: give each thread its own Renderer (vita releases the
    GIL while loading and rendering, so threads with their own Renderers scale)."""

    def __init__(self, config: RenderConfig = RenderConfig(), *, registry: Registry | None = None):
        import vita

        self.config = config
        self.registry = registry
        self._synth = vita.Synth()
        self._synth.set_sample_rate(float(config.sample_rate))

    def load(self, preset: Preset | str) -> None:
        """Load a Preset or a `.vital` JSON string into the Synth."""
        text = preset if isinstance(preset, str) else preset.to_vital_text(self.registry)
        if not self._synth.load_json(text):
            raise RenderError("Vital refused the preset (malformed, or saved by a newer Vital)")

    def render_loaded(self, note: int) -> np.ndarray:
        """Render the loaded preset at a MIDI note: (n_samples,) if mono else (2, n_samples), float32."""
        c = self.config
        if not 0 <= note <= 127:
            raise ValueError(f"MIDI note {note} is outside 0..127")
        audio = self._synth.render(int(note), c.velocity, c.note_length, c.render_length)
        return audio.mean(axis=0, dtype=np.float32) if c.mono else audio

    def render(self, preset: Preset | str, *, note: int = 60) -> np.ndarray:
        self.load(preset)
        return self.render_loaded(note)

    def render_notes(self, preset: Preset | str, notes: tuple[int, ...]) -> np.ndarray:
        """(len(notes), n_samples) (or (len(notes), 2, n_samples) in stereo), reloading before each note so
        no note hears the previous one's tail."""
        text = preset if isinstance(preset, str) else preset.to_vital_text(self.registry)
        return np.stack([self.render(text, note=n) for n in notes])


def deterministic(preset: Preset) -> Preset:
    """The same preset with every oscillator's random start phase off, so renders repeat exactly."""
    return preset.with_values(**{f"{osc}_random_phase": 0.0 for osc in OSCILLATORS})
