"""Model outputs -> presets: the one place that reads the network's heads as Vital settings.

Used by `training evaluate` (render predictions) and by inference (`Pipeline.predict`). Each head decodes its
own part of a sample (`Head.decode` in `training.heads`): continuous values clamped to [0, 1]; each predicted
categorical parameter's argmax with its softmax probability as confidence (the parameters the model does not
predict keep the base preset's value); per oscillator a wavetable class (0 keeps the init table, k is catalog
entry k - 1); the modulation cells whose presence probability is >= threshold (the logit corrected for the
pos_weight the model was trained with: `training.heads.modulation.presence_probability`), most confident first,
capped at Vital's 64 slots. A head missing from the outputs (the baseline has no modulation) leaves the base
preset's part.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from datagen.registry import MODULATION_SLOTS

if TYPE_CHECKING:
    from datagen.preset import Preset


@dataclass(frozen=True)
class Decoded:
    preset: Preset
    confidence: dict[str, float] = field(default_factory=dict)  # categorical name -> probability of the choice
    wavetable_confidence: tuple[float, ...] = ()  # per oscillator
    modulation_confidence: tuple[float, ...] = ()  # per connection, same order as preset.modulations
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Decoding:
    """What the heads' decoders need to know (their `ctx`): the arguments of `decode`."""

    registry: object
    catalog: object  # the checkpoint's wavetable Catalog
    predicted: tuple[int, ...]  # predicted categorical columns
    base: Preset  # supplies what the model does not predict
    rng: np.random.Generator | None  # draw choices from the softmax instead of the argmax
    jitter: float  # std of the N(0, jitter) moves of continuous values (with rng)
    threshold: float  # presence probability a modulation needs
    pos_weight: float  # the presence BCE's pos_weight in training (LossConfig.modulation_pos_weight)
    max_connections: int


def decode(outputs: dict, *, registry, catalog, predicted_categorical, threshold: float = 0.5,
           pos_weight: float = 1.0, max_connections: int = MODULATION_SLOTS, base=None,
           rng: np.random.Generator | None = None, jitter: float = 0.0) -> list[Decoded]:
    """outputs: the model's forward dict (torch tensors or numpy), batch of B; returns B `Decoded`.

    catalog: the checkpoint's wavetable Catalog; base: the preset supplying what the model does not predict
    (default: the init preset). pos_weight: the presence loss's pos_weight the model was trained with (the
    checkpoint's `training.checkpoint.Contents.loss`; 1 reads sigmoid(logit) as the probability). rng: draw each
    categorical choice and wavetable from the heads' softmax instead of taking the argmax, and move each
    continuous value by N(0, jitter) (proposals: `inference.proposals`)."""
    from datagen.preset import init_preset
    from training.heads import HEADS

    ctx = Decoding(registry=registry, catalog=catalog, predicted=tuple(predicted_categorical),
                   base=base or init_preset(registry), rng=rng, jitter=jitter, threshold=threshold,
                   pos_weight=pos_weight, max_connections=max_connections)
    # every head reads its whole batch first, then each sample is decoded head by head (the order rng draws in)
    rows = [head.decode(outputs[name], ctx) for name, head in HEADS.items() if name in outputs]
    out = []
    for b in range(_batch_size(outputs)):
        preset_fields, decoded_fields = {}, {}
        for row in rows:
            fields, confidence = row(b)
            preset_fields.update(fields)
            decoded_fields.update(confidence)
        out.append(Decoded(preset=replace(ctx.base, **preset_fields), **decoded_fields))
    return out


def _batch_size(outputs: dict) -> int:
    """B: the length of the first tensor of a forward dict (heads' outputs are tensors or lists of them)."""
    for value in outputs.values():
        first = value[0] if isinstance(value, (list, tuple)) and len(value) else value
        if not isinstance(first, (list, tuple)):
            return len(first)
    raise ValueError("no head output to decode")
