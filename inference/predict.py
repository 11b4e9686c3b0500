"""Prediction: a checkpoint and a prepared clip -> a Vital preset, with confidences and the played note.

`Pipeline.from_checkpoint(path)` rebuilds everything from the checkpoint alone (model config, feature
config, wavetable catalog, importance weights) and refuses a checkpoint made for another registry
fingerprint (`training.checkpoint.load`, `torch.load(weights_only=True)`: a checkpoint is data, never code).
`Pipeline.predict(target)` runs the network once and decodes its heads through `training.decode`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "default.pt"


@dataclass(frozen=True)
class Prediction:
    preset: object  # datagen.preset.Preset, raw-value-ready (continuous normalised, categorical indices)
    note: object  # inference.pitch.Note: the MIDI note the clip plays (renders and refinement use it)
    confidence: dict[str, float]  # categorical parameter -> probability of the chosen option
    wavetable_confidence: tuple[float, ...]  # per oscillator
    modulation_confidence: tuple[float, ...]  # per connection, in preset.modulations order
    mel: np.ndarray = field(repr=False)  # (n_mels, frames) the network's input
    seconds: float = 0.0  # wall time of feature + forward + decode


class Pipeline:
    """A loaded model and everything needed to read its outputs. Thread-safe for `predict` calls."""

    def __init__(self, *, model, ckpt: dict, path: Path, device: str = "cpu"):
        from datagen.registry import load_registry
        from training.checkpoint import contents

        self.model, self.path, self.device = model, Path(path), device
        parts = contents(ckpt, self.path)  # CheckpointError when missing or corrupt
        self.features, self.catalog, self.tier = parts.features, parts.catalog, parts.tier
        self.registry = load_registry()  # equal to the checkpoint's: the fingerprint was checked on load
        self.predicted_categorical = tuple(model.config.predicted_categorical)
        n = len(self.registry.continuous)
        self.importance = np.asarray(ckpt.get("importance") or np.ones(n), np.float64)  # (n_continuous,)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, *, device: str = "cpu") -> "Pipeline":
        """Load a checkpoint (default: checkpoints/default.pt). Raises CheckpointError with one line."""
        from training import checkpoint

        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if path == DEFAULT_CHECKPOINT and not path.is_file():
            raise checkpoint.CheckpointError(
                f"no default checkpoint at {path}; pass one with -c (train one with `python -m training train`)")
        ckpt = checkpoint.load(path)
        model = checkpoint.build_model(ckpt, path).to(device)
        return cls(model=model, ckpt=ckpt, path=path, device=device)

    def samples(self, target, *, n: int, seed: int = 0, jitter: float = 0.05) -> list:
        """`n` presets drawn from the network's distributions for `target`: each categorical choice and
        wavetable from its head's softmax, each continuous value moved by N(0, jitter). One forward pass."""
        import torch

        from datagen.features import log_mel
        from training.decode import decode

        if n <= 0:
            return []
        mel = log_mel(np.asarray(target.audio, np.float32), self.features)
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(mel)[None, None].to(self.device))
        outputs = {k: [t.expand(n, *t.shape[1:]) for t in v] if isinstance(v, (list, tuple))
                   else v.expand(n, *v.shape[1:]) for k, v in outputs.items()}
        rng = np.random.default_rng(seed)
        return [d.preset for d in decode(outputs, registry=self.registry, catalog=self.catalog,
                                         predicted_categorical=self.predicted_categorical, rng=rng, jitter=jitter)]

    def predict(self, target, *, threshold: float = 0.5) -> Prediction:
        """target: an `inference.audio.Target` (mono audio at the model's rate, fitted, with its note)."""
        import torch

        from datagen.features import log_mel
        from training.decode import decode

        if target.sample_rate != self.features.sample_rate:
            raise ValueError(f"target is at {target.sample_rate} Hz, the model wants {self.features.sample_rate}")
        t0 = time.perf_counter()
        mel = log_mel(np.asarray(target.audio, np.float32), self.features)  # (n_mels, frames)
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(mel)[None, None].to(self.device))
        d = decode(outputs, registry=self.registry, catalog=self.catalog,
                   predicted_categorical=self.predicted_categorical, threshold=threshold)[0]
        return Prediction(preset=d.preset, note=target.note, confidence=d.confidence,
                          wavetable_confidence=d.wavetable_confidence, modulation_confidence=d.modulation_confidence,
                          mel=mel, seconds=time.perf_counter() - t0)
