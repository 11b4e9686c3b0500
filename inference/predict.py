"""Prediction: a checkpoint and a prepared clip -> a Vital preset, with confidences and the played note.

`Pipeline.from_checkpoint(path)` rebuilds everything from the checkpoint alone (model config, feature
config, render config, wavetable catalog, importance weights) and refuses a checkpoint made for another
registry fingerprint (`training.checkpoint.load`, `torch.load(weights_only=True)`: a checkpoint is data, never
code).
`Pipeline.predict(target)` runs the network once and decodes its heads through `training.decode`.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datagen.preset import Preset
    from inference.pitch import Note

log = logging.getLogger(__name__)

DEFAULT_MODEL = "assets/model.pt"  # inside the inference package (package data), made by `training export`


def default_checkpoint() -> Path:
    """Where the shipped model is in this install (a wheel or the source tree), found with importlib.resources
    so `pip install .` works from any folder."""
    from importlib import resources

    return Path(str(resources.files("inference").joinpath(DEFAULT_MODEL)))


@dataclass(frozen=True)
class Prediction:
    preset: Preset  # raw-value-ready (continuous normalised, categorical indices)
    note: Note  # the MIDI note the clip plays (renders and refinement use it)
    confidence: dict[str, float]  # categorical parameter -> probability of the chosen option
    wavetable_confidence: tuple[float, ...]  # per oscillator
    modulation_confidence: tuple[float, ...]  # per connection, in preset.modulations order
    mel: np.ndarray = field(repr=False)  # (n_mels, frames) the network's input
    seconds: float = 0.0  # wall time of feature + forward + decode


class Pipeline:
    """A loaded model and everything needed to read its outputs. Thread-safe for `predict` calls."""

    def __init__(self, *, model, ckpt: dict, path: Path, device: str = "cpu"):
        from datagen.registry import load_registry
        from datagen.sampler import draw_tier
        from training.checkpoint import contents

        self.model, self.path, self.device = model, Path(path), device
        parts = contents(ckpt, self.path)  # CheckpointError when missing or corrupt
        self.features, self.catalog, self.tier = parts.features, parts.catalog, parts.tier
        self.draw_tier = draw_tier(parts.tier)  # what random draws and sampler proposals use
        self.render = parts.render  # datagen.render.RenderConfig: how its training data was rendered; every
        #                             render of a candidate takes its sample rate and velocity (`for_clip`)
        self.registry = load_registry()  # equal to the checkpoint's: the fingerprint was checked on load
        self.predicted_categorical = tuple(model.config.predicted_categorical)
        n = len(self.registry.continuous)
        self.importance = np.asarray(ckpt.get("importance") or np.ones(n), np.float64)  # (n_continuous,)
        self.pos_weight = parts.loss.modulation_pos_weight  # how decoding reads the presence logits
        self.baseline = ckpt.get("baseline")  # training.baseline's constant, as the trainer stored it (or None)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, *, device: str = "cpu") -> "Pipeline":
        """Load a checkpoint (default: the model shipped in the package). Raises CheckpointError with one line."""
        from training import checkpoint

        if path is None:
            path = default_checkpoint()
            if not path.is_file():
                raise checkpoint.CheckpointError(f"no default model in this install ({path}); pass a checkpoint "
                                                 "with -c (train one with `python -m training train`)")
        ckpt = checkpoint.load(path)
        model = checkpoint.build_model(ckpt, path).to(device)
        return cls(model=model, ckpt=ckpt, path=path, device=device)

    def _outputs(self, mel: np.ndarray, target) -> dict:
        """The heads' outputs (batch of 1) for a (n_mels, frames) log-mel of `target`, played at its note."""
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(mel)[None, None].to(self.device),
                              torch.tensor([target.note.midi], device=self.device))

    def samples(self, target, *, n: int, seed: int = 0, jitter: float = 0.05) -> list:
        """`n` presets drawn from the network's distributions for `target`: each categorical choice and
        wavetable from its head's softmax, each continuous value moved by N(0, jitter). One forward pass."""
        from datagen.features import log_mel
        from training.decode import decode

        if n <= 0:
            return []
        outputs = self._outputs(log_mel(np.asarray(target.audio, np.float32), self.features), target)
        outputs = {k: [t.expand(n, *t.shape[1:]) for t in v] if isinstance(v, (list, tuple))
                   else v.expand(n, *v.shape[1:]) for k, v in outputs.items()}
        rng = np.random.default_rng(seed)
        return [d.preset for d in decode(outputs, registry=self.registry, catalog=self.catalog,
                                         predicted_categorical=self.predicted_categorical,
                                         pos_weight=self.pos_weight, rng=rng, jitter=jitter)]

    def mean_preset(self):
        """The constant the network must beat: the predict-the-mean outputs of its training data
        (`training.baseline`, stored by the trainer) decoded like a prediction, with no modulation. None for
        a checkpoint trained before the trainer stored it. Decoded once per Pipeline (a Preset is immutable)."""
        return self._mean_preset

    @functools.cached_property
    def _mean_preset(self):
        from training.baseline import baseline_outputs
        from training.decode import decode
        from training.losses import build_mask_spec

        if self.baseline is None:
            return None
        outputs = baseline_outputs(self.baseline, batch_size=1, spec=build_mask_spec(self.registry, tier=self.tier),
                                   predicted_categorical=self.predicted_categorical,
                                   n_wavetables=self.model.config.n_wavetables)
        # no modulation output: the decoded preset keeps the init preset's (no routes)
        return decode(outputs, registry=self.registry, catalog=self.catalog,
                      predicted_categorical=self.predicted_categorical)[0].preset

    def predict(self, target, *, threshold: float = 0.5) -> Prediction:
        """target: an `inference.audio.Target` (mono audio at the model's rate, fitted, with its note)."""
        from datagen.features import log_mel
        from training.decode import decode

        if target.sample_rate != self.features.sample_rate:
            raise ValueError(f"target is at {target.sample_rate} Hz, the model wants {self.features.sample_rate}")
        t0 = time.perf_counter()
        mel = log_mel(np.asarray(target.audio, np.float32), self.features)  # (n_mels, frames)
        outputs = self._outputs(mel, target)
        d = decode(outputs, registry=self.registry, catalog=self.catalog,
                   predicted_categorical=self.predicted_categorical, threshold=threshold,
                   pos_weight=self.pos_weight)[0]
        return Prediction(preset=d.preset, note=target.note, confidence=d.confidence,
                          wavetable_confidence=d.wavetable_confidence, modulation_confidence=d.modulation_confidence,
                          mel=mel, seconds=time.perf_counter() - t0)
